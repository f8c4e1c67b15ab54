package outboxecho_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/middleware/internal/mwtest"
	"github.com/txoutbox/txoutbox/middleware/outboxecho"
	"github.com/txoutbox/txoutbox/outbox"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Wrap(m))
}

// recoverer turns a panic into a 500, as Echo's middleware.Recover does
// (which the module does not depend on).
func recoverer(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		return next(c)
	}
}

// build is the suite's service in Echo: a recoverer outside the outbox
// middleware, as an Echo app usually has it, and invalid event data
// answered with 422 by ErrorHandler.
func build(env *mwtest.Env, o mwtest.Options) http.Handler {
	e := echo.New()
	e.HTTPErrorHandler = outboxecho.ErrorHandler(e.DefaultHTTPErrorHandler)
	e.Use(recoverer)
	e.Use(outboxecho.MiddlewareWithConfig(env.Client, config(o)))
	e.POST("/invoices/:id", func(c echo.Context) error {
		sess, err := outboxecho.Session(c)
		if err != nil {
			return err
		}
		id := c.Param("id")
		return env.Work(c.Request().Context(), sess, id, c.QueryParam("mode"), func(status int) {
			_ = c.JSON(status, map[string]string{"id": id})
		})
	})
	return e
}

func config(o mwtest.Options) outboxecho.Config {
	cfg := outboxecho.Config{Strict: o.Strict, MaxIDBytes: o.MaxIDBytes, JobIDHeader: o.JobIDHeader, UnflushedFunc: o.UnflushedFunc, Logger: o.Logger}
	if o.TenantHeader != "" {
		cfg.TenantFunc = outboxecho.FromHeader(o.TenantHeader)
	}
	return cfg
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	mwtest.Run(t, build)
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	mwtest.ConfigErrors(t, func(c *outbox.Client, o mwtest.Options) error {
		_, err := config(o).ToMiddleware(c)
		return err
	}, func(c *outbox.Client, o mwtest.Options) {
		outboxecho.MiddlewareWithConfig(c, config(o))
	})
}

// serve answers one request with handler behind the middleware.
func serve(t *testing.T, cfg outboxecho.Config, req *http.Request, handler echo.HandlerFunc) *httptest.ResponseRecorder {
	t.Helper()
	e := echo.New()
	e.Use(outboxecho.MiddlewareWithConfig(mwtest.Client(t), cfg))
	e.GET("/*", handler)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

func TestSkipper(t *testing.T) {
	t.Parallel()
	cfg := outboxecho.Config{Skipper: func(c echo.Context) bool { return c.Path() == "/*" && c.Request().URL.Path == "/healthz" }}
	var sessErr error
	rec := serve(t, cfg, httptest.NewRequest(http.MethodGet, "/healthz", nil), func(c echo.Context) error {
		_, sessErr = outboxecho.Session(c)
		return c.NoContent(http.StatusNoContent)
	})
	if !errors.Is(sessErr, outbox.ErrNoSession) || rec.Header().Get(outboxecho.JobIDHeaderDefault) != "" {
		t.Errorf("skipped request: Session error %v, job id header %q; want ErrNoSession and none", sessErr, rec.Header().Get(outboxecho.JobIDHeaderDefault))
	}
}

func TestSessionFromHeaders(t *testing.T) {
	t.Parallel()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("X-User-ID", "user-42")
	req.Header.Set(outboxecho.JobIDHeaderDefault, "job-7f3a")
	var sess *outbox.Session
	rec := serve(t, outboxecho.Config{}, req, func(c echo.Context) error {
		var err error
		sess, err = outboxecho.Session(c)
		if err != nil {
			return err
		}
		if s, _ := outbox.FromContext(c.Request().Context()); s != sess {
			t.Error("outbox.FromContext and outboxecho.Session disagree")
		}
		return c.NoContent(http.StatusNoContent)
	})
	if rec.Code != http.StatusNoContent || sess.ActorID() != "user-42" || sess.ActorType() != outbox.ActorUser || sess.JobID() != "job-7f3a" {
		t.Errorf("status %d, session %s %s job %s", rec.Code, sess.ActorType(), sess.ActorID(), sess.JobID())
	}
	if got := rec.Header().Get(outboxecho.JobIDHeaderDefault); got != "job-7f3a" {
		t.Errorf("job id header %q, want job-7f3a", got)
	}
}

func TestExtractorErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		err        error
		wantStatus int
	}{
		{"HTTPError keeps its status", echo.NewHTTPError(http.StatusUnauthorized, "no token"), http.StatusUnauthorized},
		{"other errors are 400", errors.New("bad tenant claim"), http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := outboxecho.Config{TenantFunc: func(echo.Context) (string, error) { return "", tc.err }}
			rec := serve(t, cfg, httptest.NewRequest(http.MethodGet, "/", nil), func(c echo.Context) error {
				t.Error("the handler ran")
				return nil
			})
			if rec.Code != tc.wantStatus {
				t.Errorf("status %d, want %d; body %s", rec.Code, tc.wantStatus, rec.Body)
			}
		})
	}
}

func TestSessionOutsideMiddleware(t *testing.T) {
	t.Parallel()
	c := echo.New().NewContext(httptest.NewRequest(http.MethodGet, "/", nil), httptest.NewRecorder())
	sess, err := outboxecho.Session(c)
	if sess != nil || !errors.Is(err, outbox.ErrNoSession) {
		t.Errorf("Session = %v, %v; want nil, ErrNoSession", sess, err)
	}
}
