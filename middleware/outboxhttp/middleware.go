package outboxhttp

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/txoutbox/txoutbox/middleware/internal/reqsession"
	"github.com/txoutbox/txoutbox/outbox"
)

// Defaults of Config.
const (
	// UserIDHeaderDefault is the request header the default UserIDFunc reads.
	UserIDHeaderDefault = reqsession.UserIDHeaderDefault
	// JobIDHeaderDefault is the default Config.JobIDHeader.
	JobIDHeaderDefault = reqsession.JobIDHeaderDefault
	// MaxIDBytesDefault is the default Config.MaxIDBytes.
	MaxIDBytesDefault = reqsession.MaxIDBytesDefault
)

// Config configures the middleware. A nil *Config is the zero Config, and
// zero fields take their defaults.
type Config struct {
	// UserIDFunc returns the id of the user the request acts for; the
	// events' actor. An empty id opens a service session instead (actor =
	// the client's Source). An error is answered by ErrorFunc, and so is an
	// id of fewer than five characters, which the events API refuses as an
	// actor id. Defaults to the X-User-ID header
	// (FromHeader(UserIDHeaderDefault)); behind an authentication
	// middleware, read the authenticated user instead.
	UserIDFunc func(r *http.Request) (string, error)

	// TenantFunc returns the request's tenant id, stamped on every event;
	// errors as for UserIDFunc. Defaults to no tenant.
	TenantFunc func(r *http.Request) (string, error)

	// TraceparentFunc returns the W3C traceparent to store with the events,
	// so the relay's delivery span links to this request. An invalid value
	// is ignored, as W3C trace context says, and logged at debug level.
	// Defaults to the request's traceparent header; when an OpenTelemetry
	// handler runs first, return its span's context instead.
	TraceparentFunc func(r *http.Request) string

	// JobIDHeader is the request header carrying the job (correlation) id
	// shared by all the request's events. When absent a UUIDv7 is
	// generated; either way the id is echoed in the same response header.
	// Defaults to JobIDHeaderDefault; bc-events services use
	// "x-britecore-job-id".
	JobIDHeader string

	// MaxIDBytes is the longest user id, job id or tenant accepted; a longer
	// one, or one with control characters, is refused through ErrorFunc
	// before the handler runs. A longer traceparent is ignored. Defaults to
	// MaxIDBytesDefault (256).
	MaxIDBytes int

	// Strict turns a successful response into a 500 when the handler
	// leaves published events unflushed. The business writes may have
	// committed by then, so strict mode is for development and tests, where
	// the bug should be loud; in production the events are logged and
	// counted (UnflushedFunc) and the response is left alone. Defaults to
	// false.
	Strict bool

	// UnflushedFunc is called, once per topic, with the number of events a
	// request published and never flushed before its successful response:
	// the place for a metric. Events of a failed request (a panic or a
	// status of 400 and up) are dropped with its transaction and not
	// counted. Defaults to none.
	UnflushedFunc func(ctx context.Context, topic string, n int)

	// Logger receives the unflushed-events warnings (topic and count, never
	// the data). Defaults to slog.Default().
	Logger *slog.Logger

	// ErrorFunc answers a request refused before the handler runs: an
	// error from UserIDFunc or TenantFunc, or an id that is too long or
	// malformed. Defaults to 400 Bad Request with the error's text.
	ErrorFunc func(w http.ResponseWriter, r *http.Request, err error)
}

// FromHeader returns an extractor for Config.UserIDFunc or TenantFunc that
// reads a request header.
func FromHeader(name string) func(r *http.Request) (string, error) {
	key := http.CanonicalHeaderKey(name)
	return func(r *http.Request) (string, error) {
		return reqsession.Header(r.Header, key), nil
	}
}

// Middleware returns the middleware configured by cfg (nil for the
// defaults): each request handled by the handler it wraps gets a session in
// its context. It panics when the configuration is invalid, as a route
// table built at start-up should; NewMiddleware returns the error instead.
func Middleware(client *outbox.Client, cfg *Config) func(http.Handler) http.Handler {
	mw, err := NewMiddleware(client, cfg)
	if err != nil {
		panic(err)
	}
	return mw
}

// NewMiddleware is Middleware returning an error wrapping
// outbox.ErrInvalidConfig that names the field at fault.
func NewMiddleware(client *outbox.Client, cfg *Config) (func(http.Handler) http.Handler, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	core, err := reqsession.New("outboxhttp", reqsession.Options{
		Client:        client,
		JobIDHeader:   c.JobIDHeader,
		MaxIDBytes:    c.MaxIDBytes,
		Strict:        c.Strict,
		UnflushedFunc: c.UnflushedFunc,
		Logger:        c.Logger,
	}, reqsession.Extractors[*http.Request]{
		UserID:      c.UserIDFunc,
		Tenant:      c.TenantFunc,
		Traceparent: c.TraceparentFunc,
	}, FromHeader)
	if err != nil {
		return nil, err
	}
	m := &middleware{errorFunc: c.ErrorFunc, core: core}
	if m.errorFunc == nil {
		m.errorFunc = badRequest
	}
	return m.wrap, nil
}

func badRequest(w http.ResponseWriter, _ *http.Request, err error) {
	http.Error(w, err.Error(), http.StatusBadRequest)
}

type middleware struct {
	errorFunc func(http.ResponseWriter, *http.Request, error)
	core      *reqsession.Middleware[*http.Request]
}

const textPlain = "text/plain; charset=utf-8"

func (m *middleware) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r, err := m.core.Begin(req, req)
		if err != nil {
			m.errorFunc(w, req, err)
			return
		}
		m.serve(next, w, req, r)
	})
}

func (m *middleware) serve(next http.Handler, w http.ResponseWriter, req *http.Request, r *reqsession.Request) {
	w.Header()[m.core.JobIDKey] = []string{r.Session.JobID()}
	rw := &responseWriter{ResponseWriter: w, r: r}

	returned := false
	defer func() {
		if !returned { // the handler panicked: let the panic go on, minus the events
			r.Drop("handler panicked")
		}
	}()
	next.ServeHTTP(rw, req.WithContext(outbox.NewContext(req.Context(), r.Session)))
	returned = true

	status := rw.status
	if status == 0 { // nothing written: the server will answer 200
		if err := r.Finish(http.StatusOK); err != nil {
			reqsession.Fail(w, textPlain, []byte(err.Error()+"\n")).WriteHeader(http.StatusInternalServerError)
		}
		return
	}
	_ = r.Finish(status) // strict mode's error came as the status went out
}

// responseWriter sees the status as it goes out, while strict mode can
// still replace the response with a 500.
type responseWriter struct {
	http.ResponseWriter
	r      *reqsession.Request
	status int // 0 until the (final) status is written
}

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 { // 1xx are informational; the final status follows
		w.status = code
		if err := w.r.Written(code); err != nil {
			w.ResponseWriter = reqsession.Fail(w.ResponseWriter, textPlain, []byte(err.Error()+"\n"))
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Flush sends what is buffered, for streaming handlers that assert
// http.Flusher.
func (w *responseWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush() // a failed flush fails the next Write too
}

// Unwrap returns the underlying writer, for http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
