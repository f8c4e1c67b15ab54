package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"mime"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
)

// Media types of the CloudEvents JSON event format.
const (
	// ContentTypeCloudEvent is one event in structured mode.
	ContentTypeCloudEvent = "application/cloudevents+json"
	// ContentTypeCloudEventBatch is a JSON array of events.
	ContentTypeCloudEventBatch = "application/cloudevents-batch+json"
	// CloudEventsSpecVersion is the only version written and accepted.
	CloudEventsSpecVersion = "1.0"
	// CloudEventsDefaultSource is the source of an event whose envelope names
	// no service; CloudEvents requires a non-empty source.
	CloudEventsDefaultSource = "txoutbox"
)

// cloudEvent is the JSON shape of a CloudEvent as decoded. Extension
// attributes this package does not know are ignored.
type cloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject"`
	Time            string          `json:"time"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	DataBase64      string          `json:"data_base64"`
	ActorID         string          `json:"actorid"`
	ActorType       string          `json:"actortype"`
	JobID           string          `json:"jobid"`
	PartitionKey    string          `json:"partitionkey"`
	Traceparent     string          `json:"traceparent"`
	Tenant          string          `json:"tenant"`
	CausationID     string          `json:"causationid"`
	DedupeKey       string          `json:"dedupekey"`
	// The target's levels (see CloudEvents extension naming: lower-case
	// letters and digits, at most 20 characters).
	TargetCollection string `json:"targetcollection"`
	TargetProject    string `json:"targetproject"`
	TargetLayout     string `json:"targetlayout"`
}

// AppendCloudEvent appends e as one CloudEvent in the JSON event format:
// specversion, id, source, type (the topic), subject and partitionkey (the
// ordering key), time, datacontenttype application/json, the actorid,
// actortype and jobid extensions, traceparent, tenant, causationid,
// dedupekey and the target's targetcollection, targetproject and
// targetlayout when set, and data inline. Data is checked to be JSON unless
// e.DataValid says it is known to be.
func AppendCloudEvent(buf []byte, e *Event) ([]byte, error) {
	if e.ID == "" || e.Topic == "" {
		return buf, fmt.Errorf("%w: event %q: id and topic are required", ErrInvalidEvent, e.ID)
	}
	if len(e.Data) == 0 || (!e.DataValid && !json.Valid(e.Data)) {
		return buf, fmt.Errorf("%w: event %s: data is not JSON", ErrInvalidEvent, e.ID)
	}
	buf = append(buf, `{"specversion":"1.0","id":`...)
	buf = appendString(buf, e.ID)
	buf = append(buf, `,"source":`...)
	buf = appendString(buf, cmpOr(e.Source, CloudEventsDefaultSource))
	buf = append(buf, `,"type":`...)
	buf = appendString(buf, e.Topic)
	buf = appendField(buf, "subject", e.Key)
	if !e.Time.IsZero() {
		buf = append(buf, `,"time":"`...)
		buf = e.Time.UTC().AppendFormat(buf, time.RFC3339Nano)
		buf = append(buf, '"')
	}
	buf = append(buf, `,"datacontenttype":"application/json"`...)
	buf = appendField(buf, "actorid", e.ActorID)
	buf = appendField(buf, "actortype", e.ActorType)
	buf = appendField(buf, "jobid", e.JobID)
	buf = appendField(buf, "partitionkey", e.Key)
	buf = appendField(buf, "traceparent", e.Traceparent)
	buf = appendField(buf, "tenant", e.Tenant)
	buf = appendField(buf, "causationid", e.CausationID)
	buf = appendField(buf, "dedupekey", e.DedupeKey)
	buf = appendField(buf, "targetcollection", e.Target.Collection)
	buf = appendField(buf, "targetproject", e.Target.Project)
	buf = appendField(buf, "targetlayout", e.Target.Layout)
	buf = append(buf, `,"data":`...)
	buf = appendOneLine(buf, e.Data)
	return append(buf, '}'), nil
}

// AppendCloudEventBatch appends events as a CloudEvents JSON batch.
func AppendCloudEventBatch(buf []byte, events []Event) ([]byte, error) {
	buf = append(buf, '[')
	for i := range events {
		if i > 0 {
			buf = append(buf, ',')
		}
		var err error
		if buf, err = AppendCloudEvent(buf, &events[i]); err != nil {
			return buf, err
		}
	}
	return append(buf, ']'), nil
}

func appendField(buf []byte, name, v string) []byte {
	if v == "" {
		return buf
	}
	buf = append(buf, ',', '"')
	buf = append(buf, name...)
	buf = append(buf, '"', ':')
	return appendString(buf, v)
}

// appendOneLine appends the JSON value data so that each event stays on one
// line of the body: data with a line break is compacted, anything else,
// spaces included, is copied as is. In valid JSON a raw CR or LF can only be
// insignificant whitespace (inside a string it must be escaped), so a value
// that Compact refuses, which a trusted Data never is, still loses its line
// breaks to spaces.
func appendOneLine(buf, data []byte) []byte {
	if bytes.IndexByte(data, '\n') < 0 && bytes.IndexByte(data, '\r') < 0 {
		return append(buf, data...)
	}
	b := bytes.NewBuffer(buf)
	if json.Compact(b, data) == nil {
		return b.Bytes()
	}
	start := len(buf)
	buf = append(buf, data...)
	for i, c := range buf[start:] {
		if c == '\n' || c == '\r' {
			buf[start+i] = ' '
		}
	}
	return buf
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// IsCloudEventsContentType reports whether a Content-Type header names the
// CloudEvents batch format (batch true) or the single-event structured format.
func IsCloudEventsContentType(contentType string) (ok, batch bool) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false, false
	}
	switch mt {
	case ContentTypeCloudEventBatch:
		return true, true
	case ContentTypeCloudEvent:
		return true, false
	}
	return false, false
}

// DecodeCloudEvent decodes one CloudEvent in the JSON event format.
func DecodeCloudEvent(body []byte) (Event, error) {
	var ce cloudEvent
	if err := decodeJSON(body, &ce); err != nil {
		return Event{}, err
	}
	return ce.event()
}

// DecodeCloudEventBatch decodes a CloudEvents JSON batch. An empty array is
// a valid, empty batch.
func DecodeCloudEventBatch(body []byte) ([]Event, error) {
	var ces []cloudEvent
	if err := decodeJSON(body, &ces); err != nil {
		return nil, err
	}
	if ces == nil {
		return nil, fmt.Errorf("%w: batch is not an array", ErrInvalidEvent)
	}
	events := make([]Event, len(ces))
	for i := range ces {
		ev, err := ces[i].event()
		if err != nil {
			return nil, fmt.Errorf("event %d: %w", i, err)
		}
		events[i] = ev
	}
	return events, nil
}

func (ce *cloudEvent) event() (Event, error) {
	switch {
	case ce.SpecVersion != CloudEventsSpecVersion:
		return Event{}, fmt.Errorf("%w: specversion %q, want %q", ErrInvalidEvent, ce.SpecVersion, CloudEventsSpecVersion)
	case ce.ID == "" || ce.Source == "" || ce.Type == "":
		return Event{}, fmt.Errorf("%w: id, source and type are required", ErrInvalidEvent)
	}
	if ce.DataContentType != "" {
		mt, _, err := mime.ParseMediaType(ce.DataContentType)
		if err != nil || (mt != "application/json" && !hasJSONSuffix(mt)) {
			return Event{}, fmt.Errorf("%w: event %s: datacontenttype %q is not JSON", ErrInvalidEvent, ce.ID, ce.DataContentType)
		}
	}
	data := ce.Data
	if ce.DataBase64 != "" {
		if len(data) > 0 {
			return Event{}, fmt.Errorf("%w: event %s: both data and data_base64", ErrInvalidEvent, ce.ID)
		}
		raw, err := base64.StdEncoding.DecodeString(ce.DataBase64)
		if err != nil || !json.Valid(raw) {
			return Event{}, fmt.Errorf("%w: event %s: data_base64 is not base64 of JSON", ErrInvalidEvent, ce.ID)
		}
		data = raw
	}
	if len(data) == 0 || string(data) == "null" {
		return Event{}, fmt.Errorf("%w: event %s: no data", ErrInvalidEvent, ce.ID)
	}
	ev := Event{
		ID:          ce.ID,
		Topic:       ce.Type,
		Data:        data,
		ActorID:     ce.ActorID,
		ActorType:   ce.ActorType,
		JobID:       ce.JobID,
		Source:      ce.Source,
		Key:         cmpOr(ce.Subject, ce.PartitionKey),
		Traceparent: ce.Traceparent,
		Tenant:      ce.Tenant,
		CausationID: ce.CausationID,
		DedupeKey:   ce.DedupeKey,
		Target:      outbox.Target{Collection: ce.TargetCollection, Project: ce.TargetProject, Layout: ce.TargetLayout},
	}
	if ce.Time != "" {
		t, err := time.Parse(time.RFC3339Nano, ce.Time)
		if err != nil {
			return Event{}, fmt.Errorf("%w: event %s: time: %w", ErrInvalidEvent, ce.ID, err)
		}
		ev.Time = t
	}
	return ev, nil
}

func hasJSONSuffix(mt string) bool {
	return len(mt) > 5 && mt[len(mt)-5:] == "+json"
}

// decodeJSON decodes a whole body, telling malformed JSON (ErrSyntax) from
// JSON of the wrong shape (ErrInvalidEvent).
func decodeJSON(body []byte, v any) error {
	if !json.Valid(body) {
		return fmt.Errorf("%w: body is not valid JSON", ErrSyntax)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	return nil
}
