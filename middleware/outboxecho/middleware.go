package outboxecho

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"

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

// Config configures the middleware. Zero fields take their defaults, so
// Config{Strict: true} is DefaultConfig in strict mode.
type Config struct {
	// Skipper returns true for requests that get no session, such as health
	// checks. Defaults to skipping none.
	Skipper func(c echo.Context) bool

	// UserIDFunc returns the id of the user the request acts for; the
	// events' actor. An empty id opens a service session instead (actor =
	// the client's Source). An error answers the request with 400, or with
	// its own status when it is an *echo.HTTPError; an id of fewer than
	// five characters, which the events API refuses as an actor id, with
	// 400. Defaults to the X-User-ID header (FromHeader(UserIDHeaderDefault));
	// behind an authentication middleware, read the authenticated user
	// instead.
	UserIDFunc func(c echo.Context) (string, error)

	// TenantFunc returns the request's tenant id, stamped on every event;
	// errors as for UserIDFunc. Defaults to no tenant.
	TenantFunc func(c echo.Context) (string, error)

	// TraceparentFunc returns the W3C traceparent to store with the events,
	// so the relay's delivery span links to this request. An invalid value
	// is ignored, as W3C trace context says, and logged at debug level.
	// Defaults to the request's traceparent header; when an OpenTelemetry
	// middleware runs first, return its span's context instead.
	TraceparentFunc func(c echo.Context) string

	// JobIDHeader is the request header carrying the job (correlation) id
	// shared by all the request's events. When absent a UUIDv7 is
	// generated; either way the id is echoed in the same response header.
	// Defaults to JobIDHeaderDefault; bc-events services use
	// "x-britecore-job-id".
	JobIDHeader string

	// MaxIDBytes is the longest user id, job id or tenant accepted; a longer
	// one, or one with control characters, is answered with 400 before the
	// handler runs. A longer traceparent is ignored. Defaults to
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
	// the place for a metric. Events of a failed request (an error, a panic
	// or a status of 400 and up) are dropped with its transaction and not
	// counted. Defaults to none.
	UnflushedFunc func(ctx context.Context, topic string, n int)

	// Logger receives the unflushed-events warnings (topic and count, never
	// the data). Defaults to slog.Default().
	Logger *slog.Logger
}

// DefaultConfig spells out the configuration Middleware uses. The
// middleware does not read it: copy it and change fields, or set only the
// fields you need in a Config literal.
var DefaultConfig = Config{
	Skipper:     func(echo.Context) bool { return false },
	UserIDFunc:  FromHeader(UserIDHeaderDefault),
	JobIDHeader: JobIDHeaderDefault,
	MaxIDBytes:  MaxIDBytesDefault,
}

// FromHeader returns an extractor for Config.UserIDFunc or TenantFunc that
// reads a request header.
func FromHeader(name string) func(c echo.Context) (string, error) {
	key := http.CanonicalHeaderKey(name)
	return func(c echo.Context) (string, error) {
		return reqsession.Header(c.Request().Header, key), nil
	}
}

// Middleware returns the middleware with the default configuration. It
// panics when client is nil.
func Middleware(client *outbox.Client) echo.MiddlewareFunc {
	return MiddlewareWithConfig(client, Config{})
}

// MiddlewareWithConfig returns the middleware configured by config. Like
// Echo's own *WithConfig functions it panics on an invalid config; use
// Config.ToMiddleware to get the error instead.
func MiddlewareWithConfig(client *outbox.Client, config Config) echo.MiddlewareFunc {
	mw, err := config.ToMiddleware(client)
	if err != nil {
		panic(err)
	}
	return mw
}

// ToMiddleware returns the middleware configured by config, or an error
// wrapping outbox.ErrInvalidConfig that names the field at fault.
func (config Config) ToMiddleware(client *outbox.Client) (echo.MiddlewareFunc, error) {
	core, err := reqsession.New("outboxecho", reqsession.Options{
		Client:        client,
		JobIDHeader:   config.JobIDHeader,
		MaxIDBytes:    config.MaxIDBytes,
		Strict:        config.Strict,
		UnflushedFunc: config.UnflushedFunc,
		Logger:        config.Logger,
	}, reqsession.Extractors[echo.Context]{
		UserID:      config.UserIDFunc,
		Tenant:      config.TenantFunc,
		Traceparent: config.TraceparentFunc,
	}, FromHeader)
	if err != nil {
		return nil, err
	}
	m := &middleware{skipper: config.Skipper, core: core}
	return m.handle, nil
}

type middleware struct {
	skipper func(echo.Context) bool
	core    *reqsession.Middleware[echo.Context]
}

func (m *middleware) handle(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if m.skipper != nil && m.skipper(c) {
			return next(c)
		}
		req := c.Request()
		r, err := m.core.Begin(c, req)
		if err != nil {
			return badRequest(err)
		}
		res := c.Response()
		res.Header()[m.core.JobIDKey] = []string{r.Session.JobID()}
		c.SetRequest(req.WithContext(outbox.NewContext(req.Context(), r.Session)))
		return reqsession.ServeEcho(r, response{res}, next, c, strictError)
	}
}

// response adapts Echo v4's response to reqsession.
type response struct{ *echo.Response }

func (r response) State() (int, bool) { return r.Status, r.Committed }

func (r response) Fail(body []byte) {
	r.Writer = reqsession.Fail(r.Writer, echo.MIMEApplicationJSON, body)
	r.Status = reqsession.FailStatus
}

// strictError is the 500 of strict mode when the handler answered nothing.
func strictError(err error) error {
	return echo.NewHTTPError(http.StatusInternalServerError, err.Error()).WithInternal(err)
}

// badRequest turns err into the error Echo's error handler answers with:
// an *echo.HTTPError as it is, anything else as 400 with err's message.
func badRequest(err error) error {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return he
	}
	return echo.NewHTTPError(http.StatusBadRequest, err.Error()).WithInternal(err)
}

// Session returns the request's session, which the middleware stored in
// the request's context. Outside the middleware it returns
// outbox.ErrNoSession, never a nil session.
func Session(c echo.Context) (*outbox.Session, error) {
	if s, ok := outbox.FromContext(c.Request().Context()); ok {
		return s, nil
	}
	return nil, outbox.ErrNoSession
}
