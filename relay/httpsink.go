package relay

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

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/outbox"
)

// Wire formats of the events API, for [HTTPSinkConfig.Format].
const (
	// FormatCloudEvents posts CloudEvents 1.0 JSON batches
	// (application/cloudevents-batch+json) to the sink's URL.
	FormatCloudEvents = string(wire.FormatCloudEvents)
	// FormatBriteEvents speaks the bc-events API: one event to {URL}/events,
	// several to {URL}/events/bulk/, with the job id in x-britecore-job-id.
	FormatBriteEvents = string(wire.FormatBriteEvents)
)

// Defaults of [HTTPSinkConfig].
const (
	// HTTPSinkTimeoutDefault bounds one HTTP request, body included.
	HTTPSinkTimeoutDefault = 10 * time.Second
	// HTTPSinkMaxBatchDefault is the most CloudEvents posted in one request.
	// It is the relay's BatchSizeDefault, so that a batch goes out in one
	// request: one round trip instead of several, one after the other.
	HTTPSinkMaxBatchDefault = BatchSizeDefault
	// HTTPSinkBriteMaxBatchDefault is the most events in one bc-events bulk
	// post. The API takes up to 250, but every event id of a bulk post also
	// rides in a header (see HTTPSinkConfig.Format), and 100 ids keep the
	// headers under 4 KiB, inside any proxy's limits.
	HTTPSinkBriteMaxBatchDefault = 100

	// HTTPSinkMaxParallelDefault is the most requests of one batch in
	// flight at once.
	HTTPSinkMaxParallelDefault = 1

	httpSinkMaxResponse = 1 << 20
	httpSinkErrorBody   = 256
	httpSinkMaxWait     = 24 * time.Hour
)

// HTTPSinkConfig configures an [HTTPSink]. Only URL is required.
type HTTPSinkConfig struct {
	// URL of the events API. For FormatCloudEvents, the URL batches are
	// posted to. For FormatBriteEvents, the API's base URL: events go to
	// URL + "/events" and URL + "/events/bulk/".
	URL string

	// Format is FormatCloudEvents or FormatBriteEvents. Defaults to
	// FormatCloudEvents.
	//
	// FormatBriteEvents sends the body the bc-events API validates and nothing
	// more; the envelope fields it has no place for travel in headers. A
	// request carries one job id (x-britecore-job-id), so a batch is split
	// into one request per job id, keeping each key's events in order. A
	// single post carries the event id in Idempotency-Key; a bulk post carries
	// "sha256:" and a digest of its event ids there, and the ids themselves,
	// in body order, in X-Txoutbox-Event-Ids.
	Format string

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
	// a self-signed certificate in development. NewHTTPSink logs a warning.
	InsecureSkipVerify bool

	// Timeout bounds each HTTP request, reading the answer included; a
	// request that runs out is retried. Defaults to HTTPSinkTimeoutDefault.
	Timeout time.Duration
	// MaxBatch is the most events sent in one request; a larger batch is
	// sent in several, in order (or in lanes, see MaxParallel). Defaults to
	// HTTPSinkMaxBatchDefault for CloudEvents and
	// HTTPSinkBriteMaxBatchDefault for bc-events, whose bulk route takes at
	// most 250.
	MaxBatch int
	// MaxParallel is the most requests of one batch in flight at once. A
	// batch of more than MaxBatch events is split into up to MaxParallel
	// lanes that share no key, sent side by side, each lane's requests one
	// after the other, so each key's events still arrive in order. It pays
	// when a batch takes several requests to an API some way off, as with
	// the bc-events bulk route; on one machine it only adds work. Defaults
	// to HTTPSinkMaxParallelDefault: one request after the other.
	MaxParallel int

	// Logger receives warnings: a bulk answer that could not be read, the
	// InsecureSkipVerify warning. Defaults to slog.Default().
	Logger *slog.Logger
}

func (c *HTTPSinkConfig) validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return errors.New("URL: required")
	case err != nil:
		return fmt.Errorf("URL: %w", err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("URL: %q is not an http or https URL", redactURL(u))
	case c.Timeout < 0:
		return fmt.Errorf("Timeout: %s is negative", c.Timeout)
	case c.MaxBatch < 0:
		return fmt.Errorf("MaxBatch: %d is negative", c.MaxBatch)
	case c.MaxParallel < 0:
		return fmt.Errorf("MaxParallel: %d is negative", c.MaxParallel)
	case c.Format == FormatBriteEvents && c.MaxBatch > wire.BriteBulkMax:
		return fmt.Errorf("MaxBatch: %d is above the %d the bc-events bulk route takes", c.MaxBatch, wire.BriteBulkMax)
	case (c.APIKeyHeader == "") != (c.APIKey == ""):
		return errors.New("APIKeyHeader, APIKey: set both or neither")
	case c.APIKeyHeader != "" && !validHeaderName(c.APIKeyHeader):
		return fmt.Errorf("APIKeyHeader: %q is not a header name", c.APIKeyHeader)
	case c.Client != nil && (c.TLSConfig != nil || c.InsecureSkipVerify):
		return errors.New("TLSConfig, InsecureSkipVerify: configure the TLS of the Client given instead")
	}
	if _, err := wire.ParseFormat(c.Format); err != nil {
		return fmt.Errorf("Format: %w", err)
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

// HTTPSink delivers events to an events API over HTTP(S). It is an
// [EventSink], which the relay hands each batch whole, and a watermill
// [message.Publisher] for code that holds messages; it is safe for
// concurrent use.
//
// What an answer means:
//   - 2xx: delivered; 409 Conflict: the API has the event already, delivered.
//   - 408, 429, 5xx, timeouts and connection errors: retryable; a Retry-After
//     header (seconds or an HTTP date) becomes [RetryAfter].
//   - 401, 403, 404, 405 and 407 say the sink is misconfigured (credentials,
//     URL), not that the event is bad: retryable, so that an expired token
//     does not dead-letter the backlog.
//   - any other 4xx: [Permanent]. When a request of several events gets one,
//     each of them is sent again on its own, so that one bad event does not
//     take the rest of its batch down with it.
//   - a bc-events bulk answer listing failed records: a [*BatchError] naming
//     those events only (retryable or permanent by the record's error code).
//     An unreadable 2xx bulk answer counts as delivered and is logged; one
//     that says records failed without saying which fails the whole request,
//     to be retried.
//
// A batch of more than MaxBatch events is split into lanes that share no
// key, up to MaxParallel of them, sent side by side; a lane's requests go
// one after the other, its events in the batch's order. Once an event has
// failed, later events with the same key in the same call are held back
// ([ErrNotSent]) so that a key's events are never delivered out of order
// across requests; within one bulk request the API decides, and a partially
// failed bulk post may deliver a key's later event before the earlier one
// is retried. After a retryable failure of a whole request the rest of its
// lane is not sent (ErrNotSent), unless the API answered 408 or a 5xx
// other than 503, without Retry-After, and the request before did not fail
// too: one failed request of a flaky API does not hold up the batch, while
// an API that is down, or asks for a pause, gets at most two requests.
type HTTPSink struct {
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

var _ message.Publisher = (*HTTPSink)(nil)

// NewHTTPSink returns a sink posting to cfg.URL. It sends nothing until the
// first Publish.
func NewHTTPSink(cfg HTTPSinkConfig) (*HTTPSink, error) {
	cfg.Format = cmp.Or(strings.ToLower(strings.TrimSpace(cfg.Format)), FormatCloudEvents)
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("http sink config: %w", err)
	}
	u, _ := url.Parse(cfg.URL)
	s := &HTTPSink{
		url:         u,
		format:      wire.Format(cfg.Format),
		client:      cfg.Client,
		timeout:     cmp.Or(cfg.Timeout, HTTPSinkTimeoutDefault),
		maxBatch:    cfg.MaxBatch,
		maxParallel: cmp.Or(cfg.MaxParallel, HTTPSinkMaxParallelDefault),
		bearerToken: cfg.BearerToken,
		apiKeyName:  cfg.APIKeyHeader,
		apiKey:      cfg.APIKey,
		logger:      cmp.Or(cfg.Logger, slog.Default()),
	}
	if s.maxBatch == 0 {
		s.maxBatch = HTTPSinkMaxBatchDefault
		if s.format == wire.FormatBriteEvents {
			s.maxBatch = HTTPSinkBriteMaxBatchDefault
		}
	}
	if s.client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 16
		tr.TLSClientConfig = &tls.Config{}
		if cfg.TLSConfig != nil {
			tr.TLSClientConfig = cfg.TLSConfig.Clone()
		}
		if cfg.InsecureSkipVerify {
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
func (s *HTTPSink) String() string {
	return "HTTPSink(" + string(s.format) + ", " + redactURL(s.url) + ")"
}

// Close releases idle connections of the sink's own client. Publish does
// not buffer, so there is nothing to flush.
func (s *HTTPSink) Close() error {
	if s.ownClient {
		s.client.CloseIdleConnections()
	}
	return nil
}

// HTTPStatusError is an answer of the events API that was not a success:
// the status and the start of the body, for the event's last error.
type HTTPStatusError struct {
	StatusCode int
	// Body is the start of the answer's body, with control characters
	// removed, for diagnosis.
	Body string
	URL  string // without credentials or query
}

func (e *HTTPStatusError) Error() string {
	msg := fmt.Sprintf("%s answered %d %s", e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

// Publish delivers messages shaped as the outbox writes them (UUID = event
// id, Payload = data, Metadata = the envelope). The topic argument is not
// used: each event's topic is in its metadata. Requests use the context of
// the first message, each bounded by the sink's Timeout. A message whose
// payload is not JSON fails alone, permanently, before anything is sent.
//
// It returns nil when every message was delivered, a [*BatchError] naming
// the messages that were not when some were, and otherwise the error that
// stopped them all.
//
// The relay calls PublishEvents instead; Publish is there for code that
// holds watermill messages.
func (s *HTTPSink) Publish(_ string, messages ...*message.Message) error {
	if len(messages) == 0 {
		return nil
	}
	var failed map[string]error
	events := make([]wire.Event, 0, len(messages))
	for _, msg := range messages {
		ev, err := wire.FromMessage(msg)
		if err != nil {
			failed = addFailure(failed, msg.UUID, Permanent(err))
			continue
		}
		events = append(events, ev)
	}
	return batchResult(s.send(messages[0].Context(), events, failed), len(messages))
}

// PublishEvents delivers a batch of the relay's events; it is the relay's
// [EventSink] path, and it answers as Publish does, with failures keyed by
// event id. The whole batch arrives in one call whatever its topics, so it
// goes out in as few requests as MaxBatch allows.
//
// The events' data is not parsed: it was read from the outbox table's json
// column, so it is JSON. Only data with a line break is rewritten, so that
// each event of a CloudEvents batch stays on one line. Should an event's
// data somehow not be JSON, the events API refuses the request and the
// event is found and failed as any poison event is.
func (s *HTTPSink) PublishEvents(ctx context.Context, events []*outbox.Event) error {
	if len(events) == 0 {
		return nil
	}
	var failed map[string]error
	evs := make([]wire.Event, 0, len(events))
	for _, e := range events {
		ev, err := wire.FromOutbox(e)
		if err != nil {
			failed = addFailure(failed, e.ID.String(), Permanent(err))
			continue
		}
		evs = append(evs, ev)
	}
	return batchResult(s.send(ctx, evs, failed), len(events))
}

var _ EventSink = (*HTTPSink)(nil)

// send delivers events, adding those that were not to failed, which it
// returns. Events are split into lanes that share no key (see lanes), sent
// side by side; within a lane requests go one after the other, in order.
func (s *HTTPSink) send(ctx context.Context, events []wire.Event, failed map[string]error) map[string]error {
	ls := lanes(events, min(s.maxParallel, (len(events)+s.maxBatch-1)/s.maxBatch))
	if len(ls) <= 1 {
		return s.sendLane(ctx, events, failed)
	}
	laneFailed := make([]map[string]error, len(ls))
	var wg sync.WaitGroup
	for i, lane := range ls {
		wg.Go(func() { laneFailed[i] = s.sendLane(ctx, lane, nil) })
	}
	wg.Wait()
	for _, lf := range laneFailed {
		for id, err := range lf {
			failed = addFailure(failed, id, err)
		}
	}
	return failed
}

// sendLane sends events request by request, in order. Once an event has
// failed, the later events of its key are held back. After a retryable
// failure of a whole request the rest of the lane is not sent, unless the
// API answered it with an error that speaks of that request alone (see
// goOnAfter) and the request before it did not fail too: one failed request
// of a flaky API does not hold up the rest of the batch, while an API that
// is down or asks for a pause gets no more than two requests.
func (s *HTTPSink) sendLane(ctx context.Context, events []wire.Event, failed map[string]error) map[string]error {
	plan := s.plan(events)
	var blocked map[string]bool
	lastFailed := false
	for i, req := range plan {
		send := req
		if len(blocked) > 0 {
			send = req[:0:0]
			for _, ev := range req {
				if blocked[ev.Key] {
					failed = addFailure(failed, ev.ID, heldBack(ev.Key))
					continue
				}
				send = append(send, ev)
			}
		}
		if len(send) == 0 {
			continue
		}
		if err := cutShort(ctx); err != nil {
			// The relay cut the batch short: the rest is not sent.
			failed = notSent(failed, plan[i:], err)
			break
		}
		errs, stop := s.deliver(ctx, send)
		if stop != nil && errs == nil {
			errs = make([]error, len(send))
			for j := range errs {
				errs[j] = stop
			}
		}
		for j, err := range errs {
			if err != nil {
				failed = addFailure(failed, send[j].ID, err)
				if blocked == nil {
					blocked = make(map[string]bool)
				}
				blocked[send[j].Key] = true
			}
		}
		if stop != nil && (lastFailed || !goOnAfter(stop)) {
			failed = notSent(failed, plan[i+1:], stop)
			break
		}
		lastFailed = stop != nil
	}
	return failed
}

// goOnAfter reports whether a lane goes on after a request failed with err:
// when the API answered 408 or a 5xx other than 503, without a Retry-After.
// No answer at all (a refused connection, a timeout), 429, 503, a
// Retry-After or an answer that says the sink is misconfigured (401, 403,
// 404) stop the lane: the next request would fare no better.
func goOnAfter(err error) bool {
	var se *HTTPStatusError
	if !errors.As(err, &se) || errors.Is(err, errMisconfigured) {
		return false
	}
	if _, ok := RetryAfterOf(err); ok {
		return false
	}
	return se.StatusCode == http.StatusRequestTimeout ||
		se.StatusCode >= 500 && se.StatusCode != http.StatusServiceUnavailable
}

// lanes splits events into at most n lanes that share no key, each keeping
// the events' order, so that the lanes can be sent at the same time without
// reordering any key. A key's first event goes to the shortest lane and its
// later events follow it there; with a batch of many keys the lanes come
// out about even, and a batch of one key is one lane.
func lanes(events []wire.Event, n int) [][]wire.Event {
	if n <= 1 {
		return [][]wire.Event{events}
	}
	laneOf := make([]int, len(events))
	sizes := make([]int, n)
	byKey := make(map[string]int, len(events))
	for i := range events {
		l, ok := byKey[events[i].Key]
		if !ok {
			l = 0
			for j := range sizes {
				if sizes[j] < sizes[l] {
					l = j
				}
			}
			byKey[events[i].Key] = l
		}
		laneOf[i] = l
		sizes[l]++
	}
	// One copy of the events, lane after lane: each lane is a sub-slice.
	sorted := make([]wire.Event, len(events))
	start := make([]int, n)
	for l := 1; l < n; l++ {
		start[l] = start[l-1] + sizes[l-1]
	}
	next := slices.Clone(start)
	for i := range events {
		sorted[next[laneOf[i]]] = events[i]
		next[laneOf[i]]++
	}
	out := make([][]wire.Event, 0, n)
	for l := range n {
		if sizes[l] > 0 {
			out = append(out, sorted[start[l]:start[l]+sizes[l]:start[l]+sizes[l]])
		}
	}
	return out
}

func addFailure(failed map[string]error, id string, err error) map[string]error {
	if failed == nil {
		failed = make(map[string]error)
	}
	failed[id] = err
	return failed
}

// notSent adds the events of reqs that have no outcome yet to failed as not
// sent, because of why.
func notSent(failed map[string]error, reqs [][]wire.Event, why error) map[string]error {
	err := fmt.Errorf("%w: stopped after %w", ErrNotSent, why)
	for _, req := range reqs {
		for _, ev := range req {
			if _, ok := failed[ev.ID]; !ok {
				failed = addFailure(failed, ev.ID, err)
			}
		}
	}
	return failed
}

// errMisconfigured prefixes an answer that says the sink's URL or
// credentials are wrong rather than the events.
var errMisconfigured = errors.New("check the sink's URL and credentials")

// heldBack is the error of an event not sent because an earlier event of
// its key failed: the relay sends it again after that one, counting no
// attempt for it.
func heldBack(key string) error {
	return fmt.Errorf("held back, an earlier event with key %q failed in this batch: %w", key, ErrNotSent)
}

// batchResult turns the failures of a Publish of n messages into its error.
func batchResult(failed map[string]error, n int) error {
	if len(failed) == 0 {
		return nil
	}
	if len(failed) == n {
		var first error
		same := true
		for _, err := range failed {
			if first == nil {
				first = err
			} else if err != first {
				same = false
				break
			}
		}
		if same {
			return first
		}
	}
	return &BatchError{Failed: failed}
}

// plan splits events into requests, in sending order. CloudEvents requests
// are runs of at most maxBatch events. A bc-events request carries one job
// id, so events are grouped by job id; an event joins its job's latest
// request only when no event of its key went into a later request, which
// keeps every key's events in order across requests.
func (s *HTTPSink) plan(events []wire.Event) [][]wire.Event {
	var reqs [][]wire.Event
	if s.format == wire.FormatCloudEvents {
		for len(events) > 0 {
			n := min(len(events), s.maxBatch)
			reqs = append(reqs, events[:n:n])
			events = events[n:]
		}
		return reqs
	}
	lastOfJob := make(map[string]int)
	lastOfKey := make(map[string]int)
	for _, ev := range events {
		r, ok := lastOfJob[ev.JobID]
		if k, seen := lastOfKey[ev.Key]; !ok || (seen && r < k) || len(reqs[r]) >= s.maxBatch {
			r = len(reqs)
			reqs = append(reqs, nil)
			lastOfJob[ev.JobID] = r
		}
		reqs[r] = append(reqs[r], ev)
		lastOfKey[ev.Key] = r
	}
	return reqs
}

// deliver sends one request. It returns one error per event (nil when
// delivered), and stop when the request failed in a way that should stop
// the rest of the lane too (a retryable failure). A permanent failure of a
// request of several events is narrowed down by sending each alone, holding
// back the events after a failed one of the same key; a retryable failure
// midway stops that too, and then errs still says which events were
// delivered alone before it.
func (s *HTTPSink) deliver(ctx context.Context, events []wire.Event) (errs []error, stop error) {
	errs, err := s.post(ctx, events)
	switch {
	case err == nil:
		return errs, nil
	case !IsPermanent(err):
		return nil, err
	case len(events) == 1:
		return []error{err}, nil
	}
	errs = make([]error, len(events))
	failedKeys := make(map[string]bool)
	for i := range events {
		if failedKeys[events[i].Key] {
			errs[i] = heldBack(events[i].Key)
			continue
		}
		one, err := s.post(ctx, events[i:i+1])
		switch {
		case err == nil:
			errs[i] = one[0]
		case IsPermanent(err):
			errs[i] = err
		default:
			errs[i] = err
			why := fmt.Errorf("%w: stopped after %w", ErrNotSent, err)
			for j := i + 1; j < len(events); j++ {
				errs[j] = why
			}
			return errs, err
		}
		if errs[i] != nil {
			failedKeys[events[i].Key] = true
		}
	}
	return errs, nil
}

// post sends one request and reads its answer: per-event errors when the
// answer speaks of events one by one (a bc-events bulk answer), or one
// error for the whole request.
func (s *HTTPSink) post(ctx context.Context, events []wire.Event) ([]error, error) {
	req, bulk, err := s.newRequest(events)
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
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, httpSinkMaxResponse))

	code := resp.StatusCode
	switch {
	case code == http.StatusConflict:
		return make([]error, len(events)), nil
	case code >= 200 && code < 300:
		if !bulk {
			return make([]error, len(events)), nil
		}
		if readErr != nil {
			return nil, fmt.Errorf("read bulk answer of %s: %w", redactURL(req.URL), readErr)
		}
		return s.bulkResult(req.URL, events, body)
	}
	serr := &HTTPStatusError{StatusCode: code, Body: snippet(body), URL: redactURL(req.URL)}
	switch {
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
	case code == http.StatusUnauthorized || code == http.StatusForbidden || code == http.StatusNotFound ||
		code == http.StatusMethodNotAllowed || code == http.StatusProxyAuthRequired:
		return nil, fmt.Errorf("%w: %w", errMisconfigured, serr)
	case code == http.StatusBadRequest && s.format == wire.FormatBriteEvents && retryableBriteError(body):
	default:
		return nil, Permanent(serr)
	}
	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
		return nil, RetryAfter(serr, d)
	}
	return nil, serr
}

func (s *HTTPSink) newRequest(events []wire.Event) (req *http.Request, bulk bool, err error) {
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
		return nil, false, Permanent(fmt.Errorf("encode events: %w", err))
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
func (s *HTTPSink) bulkResult(u *url.URL, events []wire.Event, body []byte) ([]error, error) {
	errs := make([]error, len(events))
	var res wire.BriteBulkResult
	if err := json.Unmarshal(body, &res); err != nil {
		s.logger.Warn("http sink: bulk answer is not JSON; counting the events as delivered",
			"sink", s.String(), "events", len(events), "error", err)
		return errs, nil
	}
	codes, err := res.RecordErrors(len(events))
	if err != nil {
		return nil, fmt.Errorf("bulk answer of %s: %w", redactURL(u), err)
	}
	for i, code := range codes {
		switch {
		case code == "":
		case wire.IsRetryableBriteError(code):
			errs[i] = fmt.Errorf("%s: record failed: %s", redactURL(u), code)
		default:
			errs[i] = Permanent(fmt.Errorf("%s: record failed: %s", redactURL(u), code))
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
		return min(time.Duration(min(secs, int64(httpSinkMaxWait/time.Second)))*time.Second, httpSinkMaxWait), true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), 0), httpSinkMaxWait), true
}

// redactURL writes u without user info, query or fragment, which may carry
// credentials.
func redactURL(u *url.URL) string {
	c := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	return c.String()
}

// snippet returns the start of an answer's body as printable text.
func snippet(body []byte) string {
	s := strings.ToValidUTF8(string(body[:min(len(body), httpSinkErrorBody)]), "")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(body) > httpSinkErrorBody {
		s += "…"
	}
	return s
}
