package outboxhttp_test

import (
	"net/http"
	"testing"

	"github.com/txoutbox/txoutbox/middleware/internal/mwtest"
	"github.com/txoutbox/txoutbox/middleware/outboxhttp"
	"github.com/txoutbox/txoutbox/outbox"
)

// BenchmarkMiddleware compares a handler that looks up its session and
// answers 204, bare and behind the middleware.
func BenchmarkMiddleware(b *testing.B) {
	c := mwtest.Client(b)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /invoices", func(w http.ResponseWriter, r *http.Request) {
		_, _ = outbox.FromContext(r.Context())
		w.WriteHeader(http.StatusNoContent)
	})
	mwtest.Bench(b, mux, outboxhttp.Middleware(c, nil)(mux))
}
