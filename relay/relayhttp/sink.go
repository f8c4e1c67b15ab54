package relayhttp

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// Format is a wire format of the events API, for [Config.Format].
type Format string

// Wire formats of the events API.
const (
	// FormatCloudEvents posts CloudEvents 1.0 JSON batches
	// (application/cloudevents-batch+json) to the sink's URL.
	FormatCloudEvents = Format(wire.FormatCloudEvents)
	// FormatBriteEvents speaks the bc-events API: one event to {URL}/events,
	// several to {URL}/events/bulk/, with the job id in x-britecore-job-id.
	FormatBriteEvents = Format(wire.FormatBriteEvents)
)

// Defaults of [Config].
const (
	// TimeoutDefault bounds one HTTP request, body included.
	TimeoutDefault = 10 * time.Second
	// MaxBatchDefault is the most CloudEvents posted in one request. It is
	// the relay's BatchSizeDefault, so that a batch goes out in one request:
	// one round trip instead of several, one after the other.
	MaxBatchDefault = relay.BatchSizeDefault
	// BriteMaxBatchDefault is the most events in one bc-events bulk post.
	// The API takes up to 250, but every event id of a bulk post also rides
	// in a header (see Config.Format), and 100 ids keep the headers under
	// 4 KiB, inside any proxy's limits.
	BriteMaxBatchDefault = 100
	// MaxParallelDefault is the most requests of one batch in flight at
	// once.
	MaxParallelDefault = 1

	maxResponse = 1 << 20
	errorBody   = 256
	maxWait     = 24 * time.Hour
)

// Config configures a [Sink]. Only URL is required.
type Config struct {
	// URL of the events API. For FormatCloudEvents, the URL batches are
	// posted to. For FormatBriteEvents, the API's base URL: events go to
	// URL + "/events" and URL + "/events/bulk/".
	URL string

	// Format is FormatCloudEvents or FormatBriteEvents. Defaults to
	// FormatCloudEvents.
	//
	// FormatBriteEvents sends the body the bc-events API validates and nothing
	// more; the envelope fields it has no place for travel in headers: the
	// job id in x-britecore-job-id, the trace context in traceparent (W3C)
	// and the tenant in X-Txoutbox-Tenant. A request carries one of each, so
	// a batch is split into one request per job id, tenant and trace,
	// keeping each key's events in order. A single post carries the event
	// id in Idempotency-Key; a bulk post carries "sha256:" and a digest of
	// its event ids there, and the ids themselves, in body order, in
	// X-Txoutbox-Event-Ids. The dedupe keys of the events that have one
	// travel in X-Txoutbox-Dedupe-Keys, by event id (in CloudEvents, in the
	// dedupekey extension attribute).
	Format Format

	// BearerToken, when set, is sent as "Authorization: Bearer <token>".
	BearerToken string
	// APIKeyHeader and APIKey, when both set, send the key in that header,
	// e.g. X-Api-Key. Credentials never appear in logs, errors or String.
	APIKeyHeader string
	APIKey       string

	// Client sends the requests. Defaults to a client of the sink's own,
	// built from TLSConfig and InsecureSkipVerify; when Client is set those
	// two must be left empty and TLS is the client's business.
	Client *http.Client
	// TLSConfig is the TLS configuration of the default client, e.g. a
	// RootCAs pool for a private CA or client certificates. Certificates are
	// verified unless InsecureSkipVerify is set. Defaults to Go's defaults.
	TLSConfig *tls.Config
	// InsecureSkipVerify turns off certificate verification, for a sink with
	// a self-signed certificate in development. New logs a warning.
	InsecureSkipVerify bool

	// Timeout bounds each HTTP request, reading the answer included; a
	// request that runs out is retried. Defaults to TimeoutDefault.
	Timeout time.Duration
	// MaxBatch is the most events sent in one request; a larger batch is
	// sent in several, in order (or in lanes, see MaxParallel). Defaults to
	// MaxBatchDefault for CloudEvents and BriteMaxBatchDefault for
	// bc-events, whose bulk route takes at most 250.
	MaxBatch int
	// MaxParallel is the most requests of one batch in flight at once. A
	// batch of more than MaxBatch events is split into up to MaxParallel
	// lanes that share no key, sent side by side, each lane's requests one
	// after the other, so each key's events still arrive in order. It pays
	// when a batch takes several requests to an API some way off, as with
	// the bc-events bulk route; on one machine it only adds work. Defaults
	// to MaxParallelDefault: one request after the other.
	MaxParallel int

	// Logger receives warnings: a bulk answer that could not be read, the
	// InsecureSkipVerify warning. Defaults to slog.Default().
	Logger *slog.Logger
}

// validate checks a config whose Format has its default. Its errors wrap
// relay.ErrInvalidConfig and name the field.
func (c *Config) validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		err = errors.New("URL: required")
	case err != nil:
		// url.Error quotes the whole URL, credentials included: keep only
		// what is wrong with it.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		err = fmt.Errorf("URL: does not parse: %w", err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		err = fmt.Errorf("URL: %q is not an http or https URL", redactURL(u))
	case c.Format != FormatCloudEvents && c.Format != FormatBriteEvents:
		err = fmt.Errorf("Format: %q is not %q or %q", c.Format, FormatCloudEvents, FormatBriteEvents)
	case c.Timeout < 0:
		err = fmt.Errorf("Timeout: %s is negative", c.Timeout)
	case c.MaxBatch < 0:
		err = fmt.Errorf("MaxBatch: %d is negative", c.MaxBatch)
	case c.MaxParallel < 0:
		err = fmt.Errorf("MaxParallel: %d is negative", c.MaxParallel)
	case c.Format == FormatBriteEvents && c.MaxBatch > wire.BriteBulkMax:
		err = fmt.Errorf("MaxBatch: %d is above the %d the bc-events bulk route takes", c.MaxBatch, wire.BriteBulkMax)
	case (c.APIKeyHeader == "") != (c.APIKey == ""):
		err = errors.New("APIKeyHeader, APIKey: set both or neither")
	case c.APIKeyHeader != "" && !validHeaderName(c.APIKeyHeader):
		err = fmt.Errorf("APIKeyHeader: %q is not a header name", c.APIKeyHeader)
	case c.Client != nil && (c.TLSConfig != nil || c.InsecureSkipVerify):
		err = errors.New("TLSConfig, InsecureSkipVerify: configure the TLS of the Client given instead")
	}
	if err != nil {
		return fmt.Errorf("%w: relayhttp.Config.%w", relay.ErrInvalidConfig, err)
	}
	return nil
}

func validHeaderName(s string) bool {
	for _, r := range s {
		if r > unicode.MaxASCII || !(r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return false
		}
	}
	return s != ""
}

// Sink delivers the relay's events to an events API over HTTP(S). It is a
// [relay.Sink], safe for concurrent use.
//
// What an answer means:
//   - 2xx: delivered; 409 Conflict: the API has the event already, delivered.
//   - 408, 429, 5xx, timeouts and connection errors: retryable; a Retry-After
//     header (seconds or an HTTP date) becomes [relay.RetryAfter].
//   - 401, 403, 404, 405 and 407 say the sink is misconfigured (credentials,
//     URL), not that the event is bad: retryable, so that an expired token
//     does not dead-letter the backlog.
//   - any other 4xx: [relay.Permanent]. When a request of several events gets one,
//     each of them is sent again on its own, so that one bad event does not
//     take the rest of its batch down with it.
//   - a bc-events bulk answer listing failed records: a [*relay.BatchError] naming
//     those events only (retryable or permanent by the record's error code).
//     An unreadable 2xx bulk answer counts as delivered and is logged; one
//     that says records failed without saying which fails the whole request,
//     to be retried.
//
// A batch of more than MaxBatch events is split into lanes that share no
// key, up to MaxParallel of them, sent side by side; a lane's requests go
// one after the other, its events in the batch's order. Once an event has
// failed, later events with the same key in the same call are held back
// ([relay.ErrNotSent]) so that a key's events are never delivered out of order
// across requests; within one bulk request the API decides, and a partially
// failed bulk post may deliver a key's later event before the earlier one
// is retried. After a retryable failure of a whole request the rest of its
// lane is not sent (ErrNotSent), unless the API answered 408 or a 5xx
// other than 503, without Retry-After, and the request before did not fail
// too: one failed request of a flaky API does not hold up the batch, while
// an API that is down, or asks for a pause, gets at most two requests.
type Sink struct {
	url         *url.URL
	format      wire.Format
	client      *http.Client
	ownClient   bool
	timeout     time.Duration
	maxBatch    int
	maxParallel int
	bearerToken string
	apiKeyName  string
	apiKey      string
	logger      *slog.Logger
}

var _ relay.Sink = (*Sink)(nil)

// New returns a sink posting to cfg.URL. It sends nothing until the first
// Send. Its errors wrap relay.ErrInvalidConfig and name the field.
func New(cfg *Config) (*Sink, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	c := *cfg
	c.Format = cmp.Or(Format(strings.ToLower(strings.TrimSpace(string(c.Format)))), FormatCloudEvents)
	if err := c.validate(); err != nil {
		return nil, err
	}
	u, _ := url.Parse(c.URL)
	s := &Sink{
		url:         u,
		format:      wire.Format(c.Format),
		client:      c.Client,
		timeout:     cmp.Or(c.Timeout, TimeoutDefault),
		maxBatch:    c.MaxBatch,
		maxParallel: cmp.Or(c.MaxParallel, MaxParallelDefault),
		bearerToken: c.BearerToken,
		apiKeyName:  c.APIKeyHeader,
		apiKey:      c.APIKey,
		logger:      cmp.Or(c.Logger, slog.Default()),
	}
	if s.maxBatch == 0 {
		s.maxBatch = MaxBatchDefault
		if s.format == wire.FormatBriteEvents {
			s.maxBatch = BriteMaxBatchDefault
		}
	}
	if s.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 16
		tr.TLSClientConfig = &tls.Config{}
		if c.TLSConfig != nil {
			tr.TLSClientConfig = c.TLSConfig.Clone()
		}
		if c.InsecureSkipVerify {
			tr.TLSClientConfig.InsecureSkipVerify = true
			s.logger.Warn("http sink: TLS certificate verification is off; use this only in development", "sink", s.String())
		}
		s.client = &http.Client{Transport: tr}
		s.ownClient = true
	}
	return s, nil
}

// String names the sink for logs: the format and the URL without
// credentials or query.
func (s *Sink) String() string {
	return "relayhttp.Sink(" + string(s.format) + ", " + redactURL(s.url) + ")"
}

// Close releases idle connections of the sink's own client. Send does not
// buffer, so there is nothing to flush.
func (s *Sink) Close() error {
	if s.ownClient {
		s.client.CloseIdleConnections()
	}
	return nil
}

// StatusError is an answer of the events API that was not a success: the
// status and the start of the body, for the event's last error.
type StatusError struct {
	StatusCode int
	// Body is the start of the answer's body, with control characters
	// removed, for diagnosis.
	Body string
	URL  string // without credentials or query
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s answered %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Send delivers a batch of the relay's events, in as few requests as
// MaxBatch allows, whatever their topics; it answers as [relay.Sink] says,
// with failures keyed by event id.
//
// The events' data is not parsed: it was read from the outbox table's json
// column, so it is JSON. Only data with a line break is rewritten, so that
// each event of a CloudEvents batch stays on one line. Should an event's
// data somehow not be JSON, the events API refuses the request and the
// event is found and failed as any poison event is.
func (s *Sink) Send(ctx context.Context, events []*outbox.Event) error {
	if len(events) == 0 {
		return nil
	}
	o := relay.NewOutcome(events)
	items := make([]item, 0, len(events))
	for _, e := range events {
		w, err := wire.FromOutbox(e)
		if err != nil {
			o.Fail(relay.Permanent(err), e)
			continue
		}
		items = append(items, item{ev: e, w: w})
	}
	ls := lanes(items, min(s.maxParallel, (len(items)+s.maxBatch-1)/s.maxBatch))
	if len(ls) <= 1 {
		s.sendLane(ctx, items, o)
		return o.Err()
	}
	var wg sync.WaitGroup
	for _, lane := range ls {
		wg.Go(func() { s.sendLane(ctx, lane, o) })
	}
	wg.Wait()
	return o.Err()
}

// item is one event to send: the outbox event, for its outcome, and its
// wire form.
type item struct {
	ev *outbox.Event
	w  wire.Event
}

func outboxEvents(items []item) []*outbox.Event {
	evs := make([]*outbox.Event, len(items))
	for i := range items {
		evs[i] = items[i].ev
	}
	return evs
}

// sendable returns the items of req that o lets go now (see
// relay.Outcome.Sendable).
func sendable(o *relay.Outcome, req []item) []item {
	evs := o.Sendable(outboxEvents(req))
	if len(evs) == len(req) {
		return req
	}
	send := make([]item, 0, len(evs))
	for _, it := range req {
		if len(send) < len(evs) && evs[len(send)] == it.ev {
			send = append(send, it)
		}
	}
	return send
}

// sendLane sends items request by request, in order, recording outcomes in
// o, which holds back the later events of a key that failed. After a
// retryable failure of a whole request the rest of the lane is not sent,
// unless the API answered it with an error that speaks of that request
// alone (see goOnAfter) and the request before it did not fail too: one
// failed request of a flaky API does not hold up the rest of the batch,
// while an API that is down or asks for a pause gets no more than two
// requests.
func (s *Sink) sendLane(ctx context.Context, items []item, o *relay.Outcome) {
	plan := s.plan(items)
	lastFailed := false
	for i, req := range plan {
		send := sendable(o, req)
		if len(send) == 0 {
			continue
		}
		if err := relay.SendCut(ctx); err != nil {
			o.NotSent(outboxEvents(slices.Concat(plan[i:]...)), err)
			return
		}
		stop := s.deliver(ctx, send, o)
		if stop != nil && (lastFailed || !goOnAfter(stop)) {
			o.NotSent(outboxEvents(slices.Concat(plan[i+1:]...)), stop)
			return
		}
		lastFailed = stop != nil
	}
}

// goOnAfter reports whether a lane goes on after a request failed with err:
// when the API answered 408 or a 5xx other than 503, without a Retry-After.
// No answer at all (a refused connection, a timeout), 429, 503, a
// Retry-After or an answer that says the sink is misconfigured (401, 403,
// 404) stop the lane: the next request would fare no better.
func goOnAfter(err error) bool {
	var se *StatusError
	if !errors.As(err, &se) || errors.Is(err, errMisconfigured) {
		return false
	}
	if _, ok := relay.RetryAfterOf(err); ok {
		return false
	}
	return se.StatusCode == http.StatusRequestTimeout ||
		se.StatusCode >= 500 && se.StatusCode != http.StatusServiceUnavailable
}

// lanes splits items into at most n lanes that share no key, each keeping
// the items' order, so that the lanes can be sent at the same time without
// reordering any key. A key's first event goes to the shortest lane and its
// later events follow it there; with a batch of many keys the lanes come
// out about even, and a batch of one key is one lane.
func lanes(items []item, n int) [][]item {
	if n <= 1 {
		return [][]item{items}
	}
	laneOf := make([]int, len(items))
	sizes := make([]int, n)
	byKey := make(map[string]int, len(items))
	for i := range items {
		l, ok := byKey[items[i].ev.Key]
		if !ok {
			l = 0
			for j := range sizes {
				if sizes[j] < sizes[l] {
					l = j
				}
			}
			byKey[items[i].ev.Key] = l
		}
		laneOf[i] = l
		sizes[l]++
	}
	// One copy of the items, lane after lane: each lane is a sub-slice.
	sorted := make([]item, len(items))
	start := make([]int, n)
	for l := 1; l < n; l++ {
		start[l] = start[l-1] + sizes[l-1]
	}
	next := slices.Clone(start)
	for i := range items {
		sorted[next[laneOf[i]]] = items[i]
		next[laneOf[i]]++
	}
	out := make([][]item, 0, n)
	for l := range n {
		if sizes[l] > 0 {
			out = append(out, sorted[start[l]:start[l]+sizes[l]:start[l]+sizes[l]])
		}
	}
	return out
}

// errMisconfigured prefixes an answer that says the sink's URL or
// credentials are wrong rather than the events.
var errMisconfigured = errors.New("check the sink's URL and credentials")

// plan splits events into requests, in sending order. CloudEvents requests
// are runs of at most maxBatch events. A bc-events request carries one job
// id, tenant and traceparent in its headers, so events are grouped by the
// three (wire.BriteRequestKey); an event joins its group's latest request
// only when no event of its key went into a later request, which keeps
// every key's events in order across requests.
func (s *Sink) plan(items []item) [][]item {
	var reqs [][]item
	if s.format == wire.FormatCloudEvents {
		for len(items) > 0 {
			n := min(len(items), s.maxBatch)
			reqs = append(reqs, items[:n:n])
			items = items[n:]
		}
		return reqs
	}
	lastOfGroup := make(map[string]int)
	lastOfKey := make(map[string]int)
	for _, it := range items {
		group := wire.BriteRequestKey(&it.w)
		r, ok := lastOfGroup[group]
		if k, seen := lastOfKey[it.ev.Key]; !ok || (seen && r < k) || len(reqs[r]) >= s.maxBatch {
			r = len(reqs)
			reqs = append(reqs, nil)
			lastOfGroup[group] = r
		}
		reqs[r] = append(reqs[r], it)
		lastOfKey[it.ev.Key] = r
	}
	return reqs
}

// deliver sends one request and records its events' outcomes in o. It
// returns stop when the request failed as a whole, retryably: the lane
// decides whether to go on. A permanent failure of a request of several
// events is narrowed down by sending each alone, holding back the events
// after a failed one of the same key; a retryable failure midway stops
// that, leaving the rest not sent.
func (s *Sink) deliver(ctx context.Context, items []item, o *relay.Outcome) (stop error) {
	errs, err := s.post(ctx, items)
	switch {
	case err == nil:
		for j, e := range errs {
			if e != nil {
				o.Fail(e, items[j].ev)
			}
		}
		return nil
	case !relay.IsPermanent(err):
		o.Fail(err, outboxEvents(items)...)
		return err
	case len(items) == 1:
		o.Fail(err, items[0].ev)
		return nil
	}
	for i := range items {
		if len(sendable(o, items[i:i+1])) == 0 {
			continue
		}
		if err := relay.SendCut(ctx); err != nil {
			o.NotSent(outboxEvents(items[i:]), err)
			return err
		}
		one, err := s.post(ctx, items[i:i+1])
		switch {
		case err == nil:
			if one[0] != nil {
				o.Fail(one[0], items[i].ev)
			}
		case relay.IsPermanent(err):
			o.Fail(err, items[i].ev)
		default:
			o.Fail(err, items[i].ev)
			o.NotSent(outboxEvents(items[i+1:]), err)
			return err
		}
	}
	return nil
}

// post sends one request and reads its answer: per-event errors when the
// answer speaks of events one by one (a bc-events bulk answer), or one
// error for the whole request.
func (s *Sink) post(ctx context.Context, items []item) ([]error, error) {
	req, bulk, err := s.newRequest(items)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	resp, err := s.client.Do(req.WithContext(ctx))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its URL may carry a query with credentials
		}
		return nil, fmt.Errorf("post to %s: %w", redactURL(req.URL), err)
	}
	defer resp.Body.Close()
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponse))

	code := resp.StatusCode
	switch {
	case code == http.StatusConflict:
		return make([]error, len(items)), nil
	case code >= 200 && code < 300:
		if !bulk {
			return make([]error, len(items)), nil
		}
		if readErr != nil {
			return nil, fmt.Errorf("read bulk answer of %s: %w", redactURL(req.URL), readErr)
		}
		return s.bulkResult(req.URL, len(items), body)
	}
	serr := &StatusError{StatusCode: code, Body: snippet(body), URL: redactURL(req.URL)}
	switch {
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
	case code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusNotFound ||
		code == http.StatusMethodNotAllowed || code == http.StatusProxyAuthRequired:
		return nil, fmt.Errorf("%w: %w", errMisconfigured, serr)
	case code == http.StatusBadRequest && s.format == wire.FormatBriteEvents && retryableBriteError(body):
	default:
		return nil, relay.Permanent(serr)
	}
	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
		return nil, relay.RetryAfter(serr, d)
	}
	return nil, serr
}

func (s *Sink) newRequest(items []item) (req *http.Request, bulk bool, err error) {
	events := make([]wire.Event, len(items))
	for i := range items {
		events[i] = items[i].w
	}
	var body []byte
	u := *s.url
	h := make(http.Header, 6)
	switch s.format {
	case wire.FormatCloudEvents:
		body, err = wire.AppendCloudEventBatch(make([]byte, 0, 512*len(events)), events)
		h.Set("Content-Type", wire.ContentTypeCloudEventBatch)
		ids := make([]string, len(events))
		for i := range events {
			ids[i] = events[i].ID
		}
		h.Set(wire.HeaderIdempotencyKey, ids[0])
		if len(ids) > 1 {
			h.Set(wire.HeaderIdempotencyKey, wire.BulkIdempotencyKey(ids))
		}
	default:
		bulk = len(events) > 1
		u.Path = strings.TrimSuffix(u.Path, "/") + wire.BritePathSingle
		if bulk {
			u.Path = strings.TrimSuffix(u.Path, wire.BritePathSingle) + wire.BritePathBulk
			body, err = wire.EncodeBriteBulk(events)
		} else {
			body, err = wire.EncodeBrite(&events[0])
		}
		u.RawPath = ""
		h.Set("Content-Type", "application/json")
		wire.BriteHeaders(h, events, bulk)
	}
	if err != nil {
		// The envelope cannot be encoded: sending it again will not help.
		return nil, false, relay.Permanent(fmt.Errorf("encode events: %w", err))
	}
	h.Set("Accept", "application/json")
	h.Set("User-Agent", "txoutbox-relay")
	if s.bearerToken != "" {
		h.Set("Authorization", "Bearer "+s.bearerToken)
	}
	if s.apiKeyName != "" {
		h.Set(s.apiKeyName, s.apiKey)
	}
	req = &http.Request{
		Method:        http.MethodPost,
		URL:           &u,
		Host:          u.Host,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(body)),
		GetBody:       func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
		ContentLength: int64(len(body)),
		Proto:         "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}
	return req, bulk, nil
}

// bulkResult reads a 2xx answer to a bc-events bulk post.
func (s *Sink) bulkResult(u *url.URL, n int, body []byte) ([]error, error) {
	errs := make([]error, n)
	var res wire.BriteBulkResult
	if err := json.Unmarshal(body, &res); err != nil {
		s.logger.Warn("http sink: bulk answer is not JSON; counting the events as delivered",
			"sink", s.String(), "events", n, "error", err)
		return errs, nil
	}
	codes, err := res.RecordErrors(n)
	if err != nil {
		return nil, fmt.Errorf("bulk answer of %s: %w", redactURL(u), err)
	}
	for i, code := range codes {
		switch {
		case code == "":
		case wire.IsRetryableBriteError(code):
			errs[i] = fmt.Errorf("%s: record failed: %s", redactURL(u), code)
		default:
			errs[i] = relay.Permanent(fmt.Errorf("%s: record failed: %s", redactURL(u), code))
		}
	}
	return errs, nil
}

// retryableBriteError reports whether an error answer of the bc-events API
// names a passing condition; the API answers 400 for a busy stream.
func retryableBriteError(body []byte) bool {
	var e wire.BriteError
	return json.Unmarshal(body, &e) == nil && wire.IsRetryableBriteError(e.ErrorType)
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return min(time.Duration(min(secs, int64(maxWait/time.Second)))*time.Second, maxWait), true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), maxWait), true
}

// redactURL writes u without user info, query or fragment, which may carry
// credentials.
func redactURL(u *url.URL) string {
	c := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return c.String()
}

// snippet returns the start of an answer's body as printable text.
func snippet(body []byte) string {
	s := strings.ToValidUTF8(string(body[:min(len(body), errorBody)]), "")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(body) > errorBody {
		s += "…"
	}
	return s
}
