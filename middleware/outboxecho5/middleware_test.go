package outboxecho5_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v5"
	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/middleware/internal/mwtest"
	"github.com/txoutbox/txoutbox/middleware/outboxecho5"
	"github.com/txoutbox/txoutbox/outbox"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Wrap(m))
}

// recoverer turns a panic into a 500, as Echo's middleware.Recover does.
func recoverer(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c *echo.Context) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		return next(c)
	}
}

// build is the suite's service in Echo v5: a recoverer outside the outbox
// middleware, as an Echo app usually has it, and invalid event data
// answered with 422 by ErrorHandler.
func build(env *mwtest.Env, o mwtest.Options) http.Handler {
	e := echo.New()
	e.HTTPErrorHandler = outboxecho5.ErrorHandler(e.HTTPErrorHandler)
	e.Use(recoverer)
	e.Use(outboxecho5.MiddlewareWithConfig(env.Client, config(o)))
	e.POST("/invoices/:id", func(c *echo.Context) error {
		sess, err := outboxecho5.Session(c)
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

func config(o mwtest.Options) outboxecho5.Config {
	cfg := outboxecho5.Config{Strict: o.Strict, MaxIDBytes: o.MaxIDBytes, JobIDHeader: o.JobIDHeader, UnflushedFunc: o.UnflushedFunc, Logger: o.Logger}
	if o.TenantHeader != "" {
		cfg.TenantFunc = outboxecho5.FromHeader(o.TenantHeader)
	}
	return cfg
}

// TestMiddleware runs the behaviour suite the v4 and net/http middleware
// pass, over real requests to a server on 127.0.0.1 and a real database.
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
		outboxecho5.MiddlewareWithConfig(c, config(o))
	})
}

// serve answers one request with handler behind the middleware, after the
// route-level middleware pre.
func serve(t *testing.T, cfg outboxecho5.Config, req *http.Request, handler echo.HandlerFunc, pre ...echo.MiddlewareFunc) *httptest.ResponseRecorder {
	t.Helper()
	e := echo.New()
	e.Use(pre...)
	e.Use(outboxecho5.MiddlewareWithConfig(mwtest.Client(t), cfg))
	e.GET("/*", handler)
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

func TestSkipper(t *testing.T) {
	t.Parallel()
	cfg := outboxecho5.Config{Skipper: func(c *echo.Context) bool { return c.Request().URL.Path == "/healthz" }}
	var sessErr error
	rec := serve(t, cfg, httptest.NewRequest(http.MethodGet, "/healthz", nil), func(c *echo.Context) error {
		_, sessErr = outboxecho5.Session(c)
		return c.NoContent(http.StatusNoContent)
	})
	if !errors.Is(sessErr, outbox.ErrNoSession) || rec.Header().Get(outboxecho5.JobIDHeaderDefault) != "" {
		t.Errorf("skipped request: Session error %v, job id header %q; want ErrNoSession and none", sessErr, rec.Header().Get(outboxecho5.JobIDHeaderDefault))
	}
}

// TestExtractorErrors checks an extractor's error keeps the status it
// carries, whether an *echo.HTTPError or one of v5's status sentinels,
// and that any other error is a 400; the handler never runs.
func TestExtractorErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		err        error
		wantStatus int
	}{
		{"HTTPError keeps its status", echo.NewHTTPError(http.StatusUnauthorized, "no token"), http.StatusUnauthorized},
		{"sentinel keeps its status", fmt.Errorf("tenant claim: %w", echo.ErrForbidden), http.StatusForbidden},
		{"other errors are 400", errors.New("bad tenant claim"), http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := outboxecho5.Config{TenantFunc: func(*echo.Context) (string, error) { return "", tc.err }}
			rec := serve(t, cfg, httptest.NewRequest(http.MethodGet, "/", nil), func(*echo.Context) error {
				t.Error("the handler ran")
				return nil
			})
			if rec.Code != tc.wantStatus {
				t.Errorf("status %d, want %d; body %s", rec.Code, tc.wantStatus, rec.Body)
			}
		})
	}
}

// opaqueWriter hides Echo's response from the middleware after it.
type opaqueWriter struct{ http.ResponseWriter }

// TestOpaqueWriter checks that a writer Echo cannot unwrap to its response
// fails the request with 500 rather than running the handler without the
// unflushed check.
func TestOpaqueWriter(t *testing.T) {
	t.Parallel()
	hide := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c *echo.Context) error {
			c.SetResponse(opaqueWriter{c.Response()})
			return next(c)
		}
	}
	rec := serve(t, outboxecho5.Config{}, httptest.NewRequest(http.MethodGet, "/", nil), func(*echo.Context) error {
		t.Error("the handler ran")
		return nil
	}, hide)
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("status %d, want 500; body %s", rec.Code, rec.Body)
	}
}

func TestSessionOutsideMiddleware(t *testing.T) {
	t.Parallel()
	c := echo.New().NewContext(httptest.NewRequest(http.MethodGet, "/", nil), httptest.NewRecorder())
	sess, err := outboxecho5.Session(c)
	if sess != nil || !errors.Is(err, outbox.ErrNoSession) {
		t.Errorf("Session = %v, %v; want nil, ErrNoSession", sess, err)
	}
}
