package outboxecho5_test

import (
	"net/http"
	"testing"

	"github.com/labstack/echo/v5"

	"github.com/txoutbox/txoutbox/middleware/internal/mwtest"
	"github.com/txoutbox/txoutbox/middleware/outboxecho5"
)

// BenchmarkMiddleware compares a handler that looks up its session and
// answers 204, bare and behind the middleware.
func BenchmarkMiddleware(b *testing.B) {
	c := mwtest.Client(b)
	handler := func(c *echo.Context) error {
		_, _ = outboxecho5.Session(c)
		return c.NoContent(http.StatusNoContent)
	}
	bare := echo.New()
	bare.POST("/invoices", handler)
	with := echo.New()
	with.Use(outboxecho5.Middleware(c))
	with.POST("/invoices", handler)
	mwtest.Bench(b, bare, with)
}
