// Package reqsession is what the Echo (v4 and v5) and net/http outbox
// middleware share: opening a session from a request's identity headers,
// the end-of-request check for events that were published but never
// flushed, and for Echo the whole request flow (ServeEcho).
package reqsession

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/txoutbox/txoutbox/internal/envelope"
	"github.com/txoutbox/txoutbox/outbox"
)

// Defaults shared by both middleware packages, which re-export them.
const (
	UserIDHeaderDefault = "X-User-ID"
	JobIDHeaderDefault  = "X-Job-ID"
	MaxIDBytesDefault   = 256
	TraceparentHeader   = "Traceparent" // canonical form of W3C's traceparent
)

// Header returns the first value of h[key]; key must be in canonical form
// (http.CanonicalHeaderKey), which saves http.Header.Get's canonicalizing
// on every request.
func Header(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Options are the settings both middleware packages have in common.
type Options struct {
	Client        *outbox.Client
	JobIDHeader   string
	JobIDKey      string // JobIDHeader in canonical form; Resolve sets it
	MaxIDBytes    int
	Strict        bool
	UnflushedFunc func(ctx context.Context, topic string, n int)
	Logger        *slog.Logger

	// UserIDFrom and TenantFrom name where the ids come from, for error
	// messages: a header, or the config field of a custom extractor. New
	// sets them.
	UserIDFrom, TenantFrom string
}

// Resolve applies the defaults and validates o; pkg prefixes its errors
// ("outboxecho"), which name the config field at fault.
func (o *Options) Resolve(pkg string) error {
	o.JobIDHeader = cmp.Or(o.JobIDHeader, JobIDHeaderDefault)
	o.MaxIDBytes = cmp.Or(o.MaxIDBytes, MaxIDBytesDefault)
	o.Logger = cmp.Or(o.Logger, slog.Default())
	if o.Client == nil {
		return fmt.Errorf("%s: %w: client is nil", pkg, outbox.ErrInvalidConfig)
	}
	if o.MaxIDBytes < 0 {
		return fmt.Errorf("%s: Config.MaxIDBytes: %w: %d is negative", pkg, outbox.ErrInvalidConfig, o.MaxIDBytes)
	}
	if !validHeaderName(o.JobIDHeader) {
		return fmt.Errorf("%s: Config.JobIDHeader: %w: %q is not a valid header name", pkg, outbox.ErrInvalidConfig, o.JobIDHeader)
	}
	o.JobIDKey = http.CanonicalHeaderKey(o.JobIDHeader)
	return nil
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// Extractors read a request's identity from C, an echo.Context or an
// *http.Request.
type Extractors[C any] struct {
	UserID      func(C) (string, error)
	Tenant      func(C) (string, error)
	Traceparent func(C) string
}

// Middleware is the part of a configured middleware that does not depend
// on the framework.
type Middleware[C any] struct {
	Options
	Extractors[C]
}

// New resolves opts (see Resolve) and ex: a nil ex.UserID reads the
// UserIDHeaderDefault header through fromHeader.
func New[C any](pkg string, opts Options, ex Extractors[C], fromHeader func(name string) func(C) (string, error)) (*Middleware[C], error) {
	m := &Middleware[C]{Options: opts, Extractors: ex}
	m.UserIDFrom, m.TenantFrom = "Config.UserIDFunc", "Config.TenantFunc"
	if m.UserID == nil {
		m.UserID = fromHeader(UserIDHeaderDefault)
		m.UserIDFrom = UserIDHeaderDefault + " header"
	}
	if err := m.Resolve(pkg); err != nil {
		return nil, err
	}
	return m, nil
}

// Begin reads the identity of request c, whose *http.Request is req, and
// opens its session. The error of an extractor is returned as it is, a
// refused id as a *BadRequestError.
func (m *Middleware[C]) Begin(c C, req *http.Request) (*Request, error) {
	var id Identity
	var err error
	if id.UserID, err = m.UserID(c); err != nil {
		return nil, err
	}
	if m.Tenant != nil {
		if id.Tenant, err = m.Tenant(c); err != nil {
			return nil, err
		}
	}
	if m.Traceparent != nil {
		id.Traceparent = m.Traceparent(c)
	} else {
		id.Traceparent = Header(req.Header, TraceparentHeader)
	}
	id.JobID = Header(req.Header, m.JobIDKey)
	return m.Open(req, id)
}

// Identity is what a request says about who acts and in which job.
type Identity struct {
	UserID      string // empty: a service session
	JobID       string // empty: generated
	Tenant      string
	Traceparent string // ignored unless valid
}

// BadRequestError is a request the middleware refuses before the handler
// runs: an id that is too long or malformed. Its message is safe to show the
// client.
type BadRequestError struct {
	Msg string
}

func (e *BadRequestError) Error() string { return e.Msg }

// Open checks id and returns the request's session tracker. The session is
// a user session when id.UserID is set, else a service session.
func (o *Options) Open(r *http.Request, id Identity) (*Request, error) {
	if err := o.checkID("job id", o.JobIDHeader+" header", id.JobID); err != nil {
		return nil, err
	}
	if err := o.checkID("tenant", o.TenantFrom, id.Tenant); err != nil {
		return nil, err
	}
	if err := o.checkID("user id", o.UserIDFrom, id.UserID); err != nil {
		return nil, err
	}
	var buf [2]outbox.SessionOption
	opts := buf[:0]
	if id.Tenant != "" {
		opts = append(opts, outbox.WithTenant(id.Tenant))
	}
	if tp := id.Traceparent; tp != "" {
		// W3C trace context: a receiver ignores a traceparent it cannot parse.
		if len(tp) <= o.MaxIDBytes && envelope.ValidTraceparent(tp) {
			opts = append(opts, outbox.WithTraceparent(tp))
		} else {
			o.Logger.DebugContext(r.Context(), "outbox: ignoring an invalid traceparent", slog.Int("bytes", len(tp)))
		}
	}
	var sess *outbox.Session
	if id.UserID == "" {
		sess = o.Client.ServiceSession(id.JobID, opts...)
	} else {
		if err := envelope.CheckActorID(id.UserID); err != nil {
			return nil, &BadRequestError{Msg: fmt.Sprintf("user id from %s: %v", o.UserIDFrom, err)}
		}
		sess = o.Client.UserSession(id.UserID, id.JobID, opts...)
	}
	return &Request{opts: o, Session: sess, req: r}, nil
}

func (o *Options) checkID(what, from, v string) error {
	if len(v) > o.MaxIDBytes {
		return &BadRequestError{Msg: fmt.Sprintf("%s from %s is %d bytes; at most %d are accepted", what, from, len(v), o.MaxIDBytes)}
	}
	if !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return &BadRequestError{Msg: fmt.Sprintf("%s from %s has control characters or is not UTF-8", what, from)}
	}
	return nil
}

// UnflushedError says that a successful response was about to be sent while
// the session still held events: the handler forgot to flush them.
type UnflushedError struct {
	N      int            // events in all
	Topics map[string]int // events per topic
}

func (e *UnflushedError) Error() string {
	names := make([]string, 0, len(e.Topics))
	for t := range e.Topics {
		names = append(names, t)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, t := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %d", t, e.Topics[t])
	}
	events := "events"
	if e.N == 1 {
		events = "event"
	}
	return fmt.Sprintf("outbox: %d %s published but never flushed (%s)", e.N, events, b.String())
}

// Request tracks one request's session until the response is decided.
type Request struct {
	opts     *Options
	Session  *outbox.Session
	req      *http.Request
	reported bool
}

// Written is called as the response status is about to be sent. When the
// response is a success (below 400) and events are still buffered, it
// reports them (log and UnflushedFunc) once, and in strict mode returns the
// *UnflushedError the caller turns into a 500. A failed response reports
// nothing: its events are dropped with its transaction.
func (r *Request) Written(status int) error {
	if r.reported || status >= 400 || r.Session.Len() == 0 {
		return nil
	}
	r.reported = true
	events := r.Session.Unflushed()
	ue := &UnflushedError{N: len(events), Topics: make(map[string]int, 1)}
	for i := range events {
		ue.Topics[events[i].Topic]++
	}
	ctx := r.req.Context()
	for topic, n := range ue.Topics {
		r.opts.Logger.WarnContext(ctx, "outbox: events published but never flushed are dropped",
			slog.String("topic", topic), slog.Int("count", n),
			slog.String("job_id", r.Session.JobID()),
			slog.String("method", r.req.Method), slog.String("path", r.req.URL.Path),
			slog.Int("status", status), slog.Bool("strict", r.opts.Strict))
		if r.opts.UnflushedFunc != nil {
			r.opts.UnflushedFunc(ctx, topic, n)
		}
	}
	if r.opts.Strict {
		return ue
	}
	return nil
}

// Finish ends a request whose handler returned without an error, with
// status as its response's status. Events published after a successful
// response started are reported too (see Written), whose strict-mode error
// Finish returns for a caller that can still answer 500. A success (below
// 400) tells the session that the handler's transaction committed, so the
// client's OnCommit hooks run for what it flushed, e.g. an embedded relay's
// Wake; a handler that called Committed itself has nothing left to run.
// Then the buffer is dropped so nothing outlives the request.
func (r *Request) Finish(status int) error {
	err := r.Written(status)
	if status < 400 {
		r.Session.Committed()
	}
	r.Drop("request finished")
	return err
}

// Drop discards the buffered events of a failed (or finished) request, and
// its record of flushed events: a failed request's transaction rolled back.
func (r *Request) Drop(reason string) {
	if n := r.Session.Len(); n > 0 {
		r.opts.Logger.DebugContext(r.req.Context(), "outbox: dropping unflushed events",
			slog.String("reason", reason), slog.Int("count", n), slog.String("job_id", r.Session.JobID()))
	}
	r.Session.Rollback()
}

// FailWriter answers 500 with its body in place of the handler's response,
// and discards what the handler writes after. Strict mode swaps it in.
type FailWriter struct {
	http.ResponseWriter
	body  []byte
	wrote bool
}

// Fail prepares w's header for the 500 answer and returns the writer.
func Fail(w http.ResponseWriter, contentType string, body []byte) *FailWriter {
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	return &FailWriter{ResponseWriter: w, body: body}
}

// WriteHeader sends the 500 and the body, whatever code says.
func (w *FailWriter) WriteHeader(int) {
	if w.wrote {
		return
	}
	w.wrote = true
	w.ResponseWriter.WriteHeader(http.StatusInternalServerError)
	_, _ = w.ResponseWriter.Write(w.body)
}

// Write discards b, pretending success so the handler carries on.
func (w *FailWriter) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusInternalServerError)
	return len(b), nil
}

// Flush does nothing: the 500 is already complete.
func (w *FailWriter) Flush() {}

// Unwrap returns the underlying writer, for http.ResponseController.
func (w *FailWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
