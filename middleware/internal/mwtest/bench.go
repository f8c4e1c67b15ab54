package mwtest

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Bench reports the cost of the middleware: the same handler served bare,
// and behind the middleware with the request's job id given or generated,
// side by side.
func Bench(b *testing.B, bare, withMiddleware http.Handler) {
	for _, bc := range []struct {
		name  string
		h     http.Handler
		jobID string
	}{
		{"bare", bare, "job-7f3a"},
		{"outbox", withMiddleware, "job-7f3a"},
		{"outbox-new-job-id", withMiddleware, ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodPost, "/invoices", nil)
			req.Header.Set("X-User-ID", "user-42")
			req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
			if bc.jobID != "" {
				req.Header.Set("X-Job-ID", bc.jobID)
			}
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				bc.h.ServeHTTP(w, req)
				if w.status != http.StatusNoContent {
					b.Fatalf("status %d", w.status)
				}
			}
		})
	}
}

type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
