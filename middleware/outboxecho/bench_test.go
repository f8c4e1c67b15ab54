package outboxecho_test

import (
	"net/http"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/txoutbox/txoutbox/middleware/internal/mwtest"
	"github.com/txoutbox/txoutbox/middleware/outboxecho"
)

// BenchmarkMiddleware compares a handler that looks up its session and
// answers 204, bare and behind the middleware.
func BenchmarkMiddleware(b *testing.B) {
	c := mwtest.Client(b)
	handler := func(c echo.Context) error {
		_, _ = outboxecho.Session(c)
		return c.NoContent(http.StatusNoContent)
	}
	bare := echo.New()
	bare.POST("/invoices", handler)
	with := echo.New()
	with.Use(outboxecho.Middleware(c))
	with.POST("/invoices", handler)
	mwtest.Bench(b, bare, with)
}
