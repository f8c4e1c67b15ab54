// Package api is the sample invoices service in Echo, which
// examples/echo-service serves and `txoutbox demo` drives: each state change
// writes the invoice and its event in one transaction, with the outbox
// session the middleware opened for the request.
//
// Like package invoices, it is application code above the library: it
// imports outbox and outboxecho as any service does, and no library package
// imports it.
package api

import (
	"context"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/txoutbox/txoutbox/internal/invoices"
	"github.com/txoutbox/txoutbox/middleware/outboxecho"
	"github.com/txoutbox/txoutbox/outbox"
)

// New returns the invoices API:
//
//	POST /invoices              issue an invoice        → billing.InvoiceCreated
//	POST /invoices/:id/pay      record its payment      → billing.InvoicePaid
//	POST /invoices/:id/cancel   withdraw it             → billing.InvoiceCancelled
//	GET  /invoices/:id          show it
//
// The invoices table must exist (invoices.Migrate).
func New(pool *pgxpool.Pool, client *outbox.Client) *echo.Echo {
	h := &handlers{pool: pool}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.Use(outboxecho.Middleware(client))
	e.POST("/invoices", h.create)
	e.POST("/invoices/:id/pay", h.pay)
	e.POST("/invoices/:id/cancel", h.cancel)
	e.GET("/invoices/:id", h.get)
	return e
}

type handlers struct {
	pool *pgxpool.Pool
}

func (h *handlers) create(c echo.Context) error {
	var in invoices.New
	if err := c.Bind(&in); err != nil {
		return err
	}
	return h.change(c, http.StatusCreated, func(ctx context.Context, tx pgx.Tx) (invoices.Invoice, invoices.Event, error) {
		return invoices.Create(ctx, tx, in)
	})
}

func (h *handlers) pay(c echo.Context) error {
	return h.change(c, http.StatusOK, func(ctx context.Context, tx pgx.Tx) (invoices.Invoice, invoices.Event, error) {
		return invoices.Pay(ctx, tx, c.Param("id"), time.Now())
	})
}

func (h *handlers) cancel(c echo.Context) error {
	var in struct {
		Reason string `json:"reason"`
	}
	if err := c.Bind(&in); err != nil {
		return err
	}
	return h.change(c, http.StatusOK, func(ctx context.Context, tx pgx.Tx) (invoices.Invoice, invoices.Event, error) {
		return invoices.Cancel(ctx, tx, c.Param("id"), in.Reason)
	})
}

func (h *handlers) get(c echo.Context) error {
	inv, err := invoices.Get(c.Request().Context(), h.pool, c.Param("id"))
	if err != nil {
		return httpError(err)
	}
	return c.JSON(http.StatusOK, inv)
}

// change runs one state change with the request's session (invoices.Apply)
// and answers with the invoice.
func (h *handlers) change(c echo.Context, status int, change invoices.Change) error {
	sess, err := outboxecho.Session(c)
	if err != nil {
		return err
	}
	inv, err := invoices.Apply(c.Request().Context(), h.pool, sess, change)
	if err != nil {
		return httpError(err)
	}
	return c.JSON(status, inv)
}

// httpError answers the business errors with their status.
func httpError(err error) error {
	if status := invoices.Status(err); status != 0 {
		return echo.NewHTTPError(status, err.Error())
	}
	return err
}
