package outboxhttp_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/middleware/internal/mwtest"
	"github.com/txoutbox/txoutbox/middleware/outboxhttp"
	"github.com/txoutbox/txoutbox/outbox"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Wrap(m))
}

// recoverer answers a panic with 500, as a net/http app's outermost
// middleware usually does.
func recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if recover() != nil {
				http.Error(w, "internal error", http.StatusInternalServerError)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// build is the suite's service in net/http; invalid event data is
// answered with 422 by WriteValidationError.
func build(env *mwtest.Env, o mwtest.Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /invoices/{id}", func(w http.ResponseWriter, r *http.Request) {
		sess, ok := outbox.FromContext(r.Context())
		if !ok {
			http.Error(w, outbox.ErrNoSession.Error(), http.StatusInternalServerError)
			return
		}
		id := r.PathValue("id")
		err := env.Work(r.Context(), sess, id, r.URL.Query().Get("mode"), func(status int) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(map[string]string{"id": id})
		})
		if err != nil && !outboxhttp.WriteValidationError(w, err) {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	return recoverer(outboxhttp.Middleware(env.Client, config(o))(mux))
}

func config(o mwtest.Options) *outboxhttp.Config {
	cfg := &outboxhttp.Config{Strict: o.Strict, MaxIDBytes: o.MaxIDBytes, JobIDHeader: o.JobIDHeader, UnflushedFunc: o.UnflushedFunc, Logger: o.Logger}
	if o.TenantHeader != "" {
		cfg.TenantFunc = outboxhttp.FromHeader(o.TenantHeader)
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
		_, err := outboxhttp.NewMiddleware(c, config(o))
		return err
	}, func(c *outbox.Client, o mwtest.Options) {
		outboxhttp.Middleware(c, config(o))
	})
}

func serve(t *testing.T, cfg *outboxhttp.Config, req *http.Request, handler http.HandlerFunc) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	outboxhttp.Middleware(mwtest.Client(t), cfg)(handler).ServeHTTP(rec, req)
	return rec
}

func TestSessionFromHeaders(t *testing.T) {
	t.Parallel()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set("X-Account", "user-42")
	req.Header.Set(outboxhttp.JobIDHeaderDefault, "job-7f3a")
	var sess *outbox.Session
	cfg := &outboxhttp.Config{UserIDFunc: outboxhttp.FromHeader("X-Account")}
	rec := serve(t, cfg, req, func(w http.ResponseWriter, r *http.Request) {
		sess, _ = outbox.FromContext(r.Context())
		w.WriteHeader(http.StatusNoContent)
	})
	if rec.Code != http.StatusNoContent || sess == nil || sess.ActorID() != "user-42" || sess.JobID() != "job-7f3a" {
		t.Fatalf("status %d, session %v", rec.Code, sess)
	}
	if got := rec.Header().Get(outboxhttp.JobIDHeaderDefault); got != "job-7f3a" {
		t.Errorf("job id header %q, want job-7f3a", got)
	}
}

func TestErrorFunc(t *testing.T) {
	t.Parallel()
	errNoToken := errors.New("no token")
	var got error
	cfg := &outboxhttp.Config{
		UserIDFunc: func(*http.Request) (string, error) { return "", errNoToken },
		ErrorFunc: func(w http.ResponseWriter, _ *http.Request, err error) {
			got = err
			w.WriteHeader(http.StatusUnauthorized)
		},
	}
	rec := serve(t, cfg, httptest.NewRequest(http.MethodGet, "/", nil), func(http.ResponseWriter, *http.Request) {
		t.Error("the handler ran")
	})
	if rec.Code != http.StatusUnauthorized || got != errNoToken {
		t.Errorf("status %d, ErrorFunc got %v; want 401 and the extractor's error", rec.Code, got)
	}

	// Without ErrorFunc: 400 with the error's text.
	cfg.ErrorFunc = nil
	rec = serve(t, cfg, httptest.NewRequest(http.MethodGet, "/", nil), func(http.ResponseWriter, *http.Request) {})
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "no token") {
		t.Errorf("status %d, body %q; want 400 with the error", rec.Code, rec.Body)
	}
}

// A streaming handler still finds http.Flusher, and its chunks go out.
func TestFlusher(t *testing.T) {
	t.Parallel()
	rec := serve(t, nil, httptest.NewRequest(http.MethodGet, "/", nil), func(w http.ResponseWriter, r *http.Request) {
		f, ok := w.(http.Flusher)
		if !ok {
			t.Fatal("the wrapped writer is not an http.Flusher")
		}
		_, _ = w.Write([]byte("chunk"))
		f.Flush()
	})
	if !rec.Flushed || rec.Body.String() != "chunk" {
		t.Errorf("flushed %v, body %q", rec.Flushed, rec.Body)
	}
}
