package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/txoutbox/txoutbox/internal/envelope"
	"github.com/txoutbox/txoutbox/outbox"
)

// Paths and headers of the bc-events API.
const (
	// BritePathSingle is appended to the API's base URL to post one event.
	BritePathSingle = "/events"
	// BritePathBulk is appended to the API's base URL to post up to
	// BriteBulkMax events; the trailing slash is part of the route.
	BritePathBulk = "/events/bulk/"
	// BriteBulkMax is the most events the API accepts in one bulk request.
	BriteBulkMax = 250

	// HeaderJobID carries the job (correlation) id of every event in the
	// request; the body has no field for it.
	HeaderJobID = "X-Britecore-Job-Id"
	// HeaderIdempotencyKey carries the event id of a single post, or a digest
	// of the event ids of a bulk post (see [BulkIdempotencyKey]). It is the
	// same on every attempt to send the same events.
	HeaderIdempotencyKey = "Idempotency-Key"
	// HeaderEventIDs lists the event ids of a bulk post in body order, comma
	// separated, split over several header lines of at most
	// eventIDsPerHeaderLine ids each so that no line outgrows the 8 KiB a
	// common proxy allows one header line.
	HeaderEventIDs = "X-Txoutbox-Event-Ids"
	// HeaderTraceparent carries the W3C trace context the events were
	// published with, as every W3C-aware server reads it; the body has no
	// field for it.
	HeaderTraceparent = "Traceparent"
	// HeaderTenant carries the events' tenant; the body has no field for
	// it either.
	HeaderTenant = "X-Txoutbox-Tenant"
	// HeaderDedupeKeys carries the dedupe keys of the events of a post that
	// have one, single or bulk: comma separated entries "<event id>=<key>",
	// the key query-escaped (so that it holds no comma, equals sign or
	// space), split over header lines as HeaderEventIDs is. An event id
	// names the event: the Idempotency-Key of a single post, an id of
	// HeaderEventIDs in a bulk post. Events without a dedupe key are left
	// out, and so is the header when none has one.
	HeaderDedupeKeys = "X-Txoutbox-Dedupe-Keys"
	// HeaderTarget carries the target of the events of a post (see
	// outbox.Target), which they share as they share a tenant:
	// "collection=<c>; project=<p>; layout=<l>", the levels named from the
	// top, each value query-escaped, a level not named left out. Posts of
	// events without a target carry none. See [TargetHeader].
	HeaderTarget = "X-Txoutbox-Target"

	eventIDsPerHeaderLine = 50
	// headerLineBytes bounds one line of a list header well inside the
	// 8 KiB a common proxy allows.
	headerLineBytes = 4000
)

// Retryable record error codes of a bulk answer. The API fronts a stream, and
// these two mean the stream was busy or failed; bc-events resent the records
// that carried them and gave up on any other code. A single post answering
// 400 with one of them in errorType is retryable too.
const (
	BriteErrThroughputExceeded = "ProvisionedThroughputExceededException"
	BriteErrInternalFailure    = "InternalFailureException"
	// BriteRecordSuccess marks a record of a bulk answer that was accepted.
	BriteRecordSuccess = "Success"
)

// IsRetryableBriteError reports whether a record error code or errorType of
// the bc-events API names a condition that passes with time.
func IsRetryableBriteError(code string) bool {
	return code == BriteErrThroughputExceeded || code == BriteErrInternalFailure
}

// BriteEvent is the body of a single post and one element of a bulk post.
// The API rejects any field not listed here.
type BriteEvent struct {
	Category string          `json:"category"`
	Entity   string          `json:"entity"`
	Action   string          `json:"action"`
	Data     json.RawMessage `json:"data"`
	Actor    BriteActor      `json:"actor"`
}

// BriteActor says who caused the event; Type is user, service or third-party.
// The API allows other fields inside actor; a decoded body drops them.
type BriteActor struct {
	ID   string `json:"id"`
	Type string `json:"type"`
}

// UnmarshalJSON decodes an actor, ignoring fields besides id and type even
// when the enclosing decoder disallows unknown fields: EVENT_SCHEMA allows
// them inside actor, and only there.
func (a *BriteActor) UnmarshalJSON(b []byte) error {
	type actor BriteActor // without the method, so as not to recurse
	var v actor
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*a = BriteActor(v)
	return nil
}

// BriteCreated is the answer to a successful single post (HTTP 201).
type BriteCreated struct {
	EventID string `json:"eventId"`
	JobID   string `json:"jobId"`
}

// BriteBulkResult is the answer to a bulk post. Records has one element per
// posted event, in body order: BriteRecordSuccess or an error code. The API
// this mirrors has also been seen answering with objects (the stream's own
// {"ErrorCode": ...} records, or the posted events), which
// [BriteBulkResult.RecordErrors] reads as well.
type BriteBulkResult struct {
	FailedRecords int               `json:"failedRecords"`
	Records       []json.RawMessage `json:"records"`
}

// BriteError is the body of an error answer of the bc-events API.
type BriteError struct {
	ErrorType    string `json:"errorType"`
	ErrorMessage string `json:"errorMessage,omitempty"`
}

// ErrAmbiguousBulkResult is returned by [BriteBulkResult.RecordErrors] when
// the answer does not say which records failed: the safe reading is that none
// of them was accepted.
var ErrAmbiguousBulkResult = errors.New("bulk answer does not say which records failed")

// RecordErrors returns, for each of n posted records, the error code it
// failed with, or "" when it was accepted. It trusts FailedRecords: when that
// is 0 every record was accepted whatever Records holds; when it is not, the
// records must number n and name at least that many failures, else the
// result is ErrAmbiguousBulkResult.
func (r *BriteBulkResult) RecordErrors(n int) ([]string, error) {
	codes := make([]string, n)
	if r.FailedRecords <= 0 {
		return codes, nil
	}
	if len(r.Records) != n {
		return nil, fmt.Errorf("%w: %d failed, %d records for %d events", ErrAmbiguousBulkResult, r.FailedRecords, len(r.Records), n)
	}
	failed := 0
	for i, raw := range r.Records {
		codes[i] = recordErrorCode(raw)
		if codes[i] != "" {
			failed++
		}
	}
	if failed < r.FailedRecords {
		return nil, fmt.Errorf("%w: %d failed, %d error codes found", ErrAmbiguousBulkResult, r.FailedRecords, failed)
	}
	return codes, nil
}

// recordErrorCode reads one record of a bulk answer: a string is
// BriteRecordSuccess or an error code; an object is a failure only when it
// carries an error code field; anything else (null, a posted event echoed
// back) counts as accepted, as bc-events read it.
func recordErrorCode(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) != nil || s == BriteRecordSuccess || s == "" {
			return ""
		}
		return s
	case '{':
		var o map[string]json.RawMessage
		if json.Unmarshal(raw, &o) != nil {
			return ""
		}
		for _, k := range []string{"ErrorCode", "errorCode", "errorType", "error"} {
			var s string
			if v, ok := o[k]; ok && json.Unmarshal(v, &s) == nil && s != "" {
				return s
			}
		}
	}
	return ""
}

// ToBrite returns the bc-events body of the event. The category, entity,
// action and actor are required; the API would reject the body without them.
func ToBrite(e *Event) (BriteEvent, error) {
	switch {
	case e.Category == "" || e.Entity == "" || e.Action == "":
		return BriteEvent{}, fmt.Errorf("%w: event %s: category, entity and action are required", ErrInvalidEvent, e.ID)
	case e.ActorID == "" || e.ActorType == "":
		return BriteEvent{}, fmt.Errorf("%w: event %s: actor id and type are required", ErrInvalidEvent, e.ID)
	}
	return BriteEvent{
		Category: e.Category,
		Entity:   e.Entity,
		Action:   e.Action,
		Data:     e.Data,
		Actor:    BriteActor{ID: e.ActorID, Type: e.ActorType},
	}, nil
}

// EncodeBrite returns the body of a single post of e.
func EncodeBrite(e *Event) ([]byte, error) {
	b, err := ToBrite(e)
	if err != nil {
		return nil, err
	}
	return json.Marshal(b)
}

// EncodeBriteBulk returns the body of a bulk post of events: a JSON array of
// bodies. It refuses more than BriteBulkMax events.
func EncodeBriteBulk(events []Event) ([]byte, error) {
	if len(events) > BriteBulkMax {
		return nil, fmt.Errorf("%w: %d events in one bulk post, at most %d", ErrInvalidEvent, len(events), BriteBulkMax)
	}
	bodies := make([]BriteEvent, len(events))
	for i := range events {
		b, err := ToBrite(&events[i])
		if err != nil {
			return nil, err
		}
		bodies[i] = b
	}
	return json.Marshal(bodies)
}

// BriteHeaders sets the headers of a post of events, which must share one job
// id, tenant, traceparent and target (see BriteRequestKey): the job id, the
// traceparent, tenant and target when set, the idempotency key and id list
// described on HeaderIdempotencyKey and HeaderEventIDs, and the dedupe keys
// (HeaderDedupeKeys). bulk says the events go to the bulk route even when
// there is only one.
func BriteHeaders(h http.Header, events []Event, bulk bool) {
	if len(events) == 0 {
		return
	}
	h.Set(HeaderJobID, events[0].JobID)
	if tp := events[0].Traceparent; tp != "" {
		h.Set(HeaderTraceparent, tp)
	}
	if tenant := events[0].Tenant; tenant != "" {
		h.Set(HeaderTenant, tenant)
	}
	if t := events[0].Target; !t.IsZero() {
		h.Set(HeaderTarget, TargetHeader(t))
	}
	var dedupe []string
	for i := range events {
		if k := events[i].DedupeKey; k != "" {
			dedupe = append(dedupe, events[i].ID+"="+url.QueryEscape(k))
		}
	}
	setList(h, HeaderDedupeKeys, dedupe)
	if !bulk {
		h.Set(HeaderIdempotencyKey, events[0].ID)
		return
	}
	ids := make([]string, len(events))
	for i := range events {
		ids[i] = events[i].ID
	}
	h.Set(HeaderIdempotencyKey, BulkIdempotencyKey(ids))
	setList(h, HeaderEventIDs, ids)
}

// setList sets the list header name to values, comma separated, over as
// many lines as keep each within eventIDsPerHeaderLine values and
// headerLineBytes bytes.
func setList(h http.Header, name string, values []string) {
	h.Del(name)
	start, size := 0, 0
	for i, v := range values {
		if i > start && (i-start == eventIDsPerHeaderLine || size+1+len(v) > headerLineBytes) {
			h.Add(name, strings.Join(values[start:i], ","))
			start, size = i, 0
		}
		size += 1 + len(v)
	}
	if start < len(values) {
		h.Add(name, strings.Join(values[start:], ","))
	}
}

// BriteRequestKey is what the events of one bc-events request share: the
// job id, the tenant, the traceparent and the target, which travel in
// headers.
func BriteRequestKey(ev *Event) string {
	t := &ev.Target
	return ev.JobID + "\x00" + ev.Tenant + "\x00" + ev.Traceparent + "\x00" + t.Collection + "\x00" + t.Project + "\x00" + t.Layout
}

// targetLevels are the names of a target's levels in HeaderTarget, from
// the top.
var targetLevels = [...]string{envelope.TargetCollection, envelope.TargetProject, envelope.TargetLayout}

// TargetHeader is the value of HeaderTarget for t, e.g.
// "collection=c1; project=p%3B2" (its levels from the top, query-escaped,
// those not named left out); "" for the zero Target.
func TargetHeader(t outbox.Target) string {
	var b strings.Builder
	for i, v := range [...]string{t.Collection, t.Project, t.Layout} {
		if v == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		b.WriteString(targetLevels[i])
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(v))
	}
	return b.String()
}

// TargetFromHeader reads HeaderTarget: the zero Target when the header is
// absent. A header given twice, an entry that is not <level>=<query-escaped
// value>, an unknown or repeated level, or an empty value is an error
// wrapping ErrInvalidEvent. It does not check that the levels are named
// from the top: that is the receiver's rule (a receiver may fill in upper
// levels).
func TargetFromHeader(h http.Header) (outbox.Target, error) {
	var t outbox.Target
	lines := h.Values(HeaderTarget)
	switch {
	case len(lines) == 0:
		return t, nil
	case len(lines) > 1:
		return t, fmt.Errorf("%w: %s given %d times, once is expected", ErrInvalidEvent, HeaderTarget, len(lines))
	}
	levels := [...]*string{&t.Collection, &t.Project, &t.Layout}
	for entry := range strings.SplitSeq(lines[0], ";") {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		name, raw, ok := strings.Cut(entry, "=")
		i := slices.Index(targetLevels[:], strings.TrimSpace(name))
		if !ok || i < 0 {
			return outbox.Target{}, fmt.Errorf("%w: %s: entry %q is not collection=, project= or layout=<query-escaped id>", ErrInvalidEvent, HeaderTarget, entry)
		}
		v, err := url.QueryUnescape(strings.TrimSpace(raw))
		switch {
		case err != nil:
			return outbox.Target{}, fmt.Errorf("%w: %s: %s is not query-escaped: %w", ErrInvalidEvent, HeaderTarget, targetLevels[i], err)
		case v == "":
			return outbox.Target{}, fmt.Errorf("%w: %s: empty %s", ErrInvalidEvent, HeaderTarget, targetLevels[i])
		case *levels[i] != "":
			return outbox.Target{}, fmt.Errorf("%w: %s: %s given twice", ErrInvalidEvent, HeaderTarget, targetLevels[i])
		}
		*levels[i] = v
	}
	if t.IsZero() {
		return t, fmt.Errorf("%w: %s names no level", ErrInvalidEvent, HeaderTarget)
	}
	return t, nil
}

// BulkIdempotencyKey is the Idempotency-Key of a bulk post of the given event
// ids: "sha256:" and the hex SHA-256 of the ids joined by commas, in body
// order. A retry of the same post sends the same key; a resend of only the
// records that failed is a different request and gets a different key.
func BulkIdempotencyKey(ids []string) string {
	n := len(ids)
	for _, id := range ids {
		n += len(id)
	}
	// Joined first and hashed at once: writing each id to a hash.Hash
	// costs an allocation per id.
	b := make([]byte, 0, n)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, id...)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// EventIDsFromHeader returns the ids listed in HeaderEventIDs, joining the
// header's lines as HTTP list fields are joined.
func EventIDsFromHeader(h http.Header) []string {
	var ids []string
	for _, line := range h.Values(HeaderEventIDs) {
		for _, id := range strings.Split(line, ",") {
			if id = strings.TrimSpace(id); id != "" {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// DedupeKeysFromHeader returns the dedupe keys listed in HeaderDedupeKeys,
// by event id. An entry that is not "<event id>=<query-escaped key>", or a
// second entry for one id, is an error wrapping ErrInvalidEvent.
func DedupeKeysFromHeader(h http.Header) (map[string]string, error) {
	var keys map[string]string
	for _, line := range h.Values(HeaderDedupeKeys) {
		for entry := range strings.SplitSeq(line, ",") {
			if entry = strings.TrimSpace(entry); entry == "" {
				continue
			}
			i := strings.LastIndexByte(entry, '=')
			if i <= 0 {
				return nil, fmt.Errorf("%w: %s: entry %q is not <event id>=<key>", ErrInvalidEvent, HeaderDedupeKeys, entry)
			}
			id := entry[:i]
			key, err := url.QueryUnescape(entry[i+1:])
			switch {
			case err != nil:
				return nil, fmt.Errorf("%w: %s: event %s: key is not query-escaped: %w", ErrInvalidEvent, HeaderDedupeKeys, id, err)
			case key == "":
				return nil, fmt.Errorf("%w: %s: event %s: empty key", ErrInvalidEvent, HeaderDedupeKeys, id)
			}
			if keys == nil {
				keys = make(map[string]string)
			}
			if _, dup := keys[id]; dup {
				return nil, fmt.Errorf("%w: %s: event %s listed twice", ErrInvalidEvent, HeaderDedupeKeys, id)
			}
			keys[id] = key
		}
	}
	return keys, nil
}

// DecodeBrite decodes the body of a single post strictly, as the API does:
// unknown fields, a missing field or trailing data are errors.
func DecodeBrite(body []byte) (BriteEvent, error) {
	var b BriteEvent
	if err := decodeStrict(body, &b); err != nil {
		return BriteEvent{}, err
	}
	if err := b.check(); err != nil {
		return BriteEvent{}, err
	}
	return b, nil
}

// DecodeBriteBulk decodes the body of a bulk post strictly, record by
// record: an error in a record, malformed JSON included, names its index.
func DecodeBriteBulk(body []byte) ([]BriteEvent, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	if tok != json.Delim('[') {
		return nil, fmt.Errorf("%w: bulk body is not an array", ErrInvalidEvent)
	}
	bs := []BriteEvent{}
	for dec.More() {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("record %d: %w: %w", len(bs), ErrSyntax, err)
		}
		b, err := DecodeBrite(raw)
		if err != nil {
			return nil, fmt.Errorf("record %d: %w", len(bs), err)
		}
		bs = append(bs, b)
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: after record %d: %w", ErrSyntax, len(bs)-1, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the JSON value", ErrSyntax)
	}
	return bs, nil
}

func (b *BriteEvent) check() error {
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"category", b.Category}, {"entity", b.Entity}, {"action", b.Action},
		{"actor.id", b.Actor.ID}, {"actor.type", b.Actor.Type},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(b.Data) == 0 || string(b.Data) == "null" {
		missing = append(missing, "data")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", ErrInvalidEvent, strings.Join(missing, ", "))
	}
	return nil
}

// The rules of EVENT_SCHEMA, the JSON Schema of a body in the bc-events
// client (bc_events/constants.py), on the values of its fields.
var (
	briteCategoryRE = regexp.MustCompile(`^[a-z]+$`)
	briteEntityRE   = regexp.MustCompile(`^([A-Z][a-z]+)+$`)
	briteActionRE   = regexp.MustCompile(`^[A-Z][a-z]+$`)
)

// Validate reports what in a decoded body breaks the rules of the bc-events
// API's EVENT_SCHEMA on values, which the API enforces: category matches
// ^[a-z]+$, entity ^([A-Z][a-z]+)+$ (StudlyCaps), action ^[A-Z][a-z]+$ (a
// capitalised past-tense verb); data is an object with at least one
// property; actor.id has at least 5 characters and actor.type is user,
// service or third-party. The decoders check the fields present and of the
// right JSON types. Names must match exactly: the API does not look topics
// up in other spellings. The error wraps ErrInvalidEvent and lists every
// rule broken.
func (b *BriteEvent) Validate() error {
	var problems []string
	for _, f := range []struct {
		name, v, want string
		re            *regexp.Regexp
	}{
		{"category", b.Category, "lower case letters", briteCategoryRE},
		{"entity", b.Entity, "StudlyCaps letters, e.g. LineItem", briteEntityRE},
		{"action", b.Action, "a capitalised past-tense verb, e.g. Created", briteActionRE},
	} {
		if !f.re.MatchString(f.v) {
			problems = append(problems, fmt.Sprintf("%s %q does not match %s (%s)", f.name, f.v, f.re, f.want))
		}
	}
	if !nonEmptyObject(b.Data) {
		problems = append(problems, "data is not an object with at least one property")
	}
	if err := envelope.CheckActorID(b.Actor.ID); err != nil {
		problems = append(problems, "actor.id "+err.Error())
	}
	switch b.Actor.Type {
	case outbox.ActorUser, outbox.ActorService, outbox.ActorThirdParty:
	default:
		problems = append(problems, fmt.Sprintf("actor.type %q is not %s, %s or %s", b.Actor.Type, outbox.ActorUser, outbox.ActorService, outbox.ActorThirdParty))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalidEvent, strings.Join(problems, "; "))
	}
	return nil
}

// nonEmptyObject reports whether raw, one JSON value, is an object with at
// least one property.
func nonEmptyObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) < 2 || raw[0] != '{' {
		return false
	}
	rest := bytes.TrimSpace(raw[1:])
	return len(rest) > 0 && rest[0] != '}'
}

// Event returns the envelope of a decoded body; the id, job id and the rest
// come from headers or the receiver, so they are left for the caller to set.
func (b *BriteEvent) Event() Event {
	return Event{
		Topic:     TopicName(b.Category, b.Entity, b.Action),
		Category:  b.Category,
		Entity:    b.Entity,
		Action:    b.Action,
		Data:      b.Data,
		ActorID:   b.Actor.ID,
		ActorType: b.Actor.Type,
	}
}

// ErrSyntax is wrapped by decode errors caused by a body that is not JSON, as
// opposed to JSON that breaks the format's rules (ErrInvalidEvent).
var ErrSyntax = errors.New("malformed JSON")

func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("%w: %w", ErrSyntax, err)
		}
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: data after the JSON value", ErrSyntax)
	}
	return nil
}
