package main

import (
	"context"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v5"

	"github.com/txoutbox/txoutbox/internal/invoices"
	"github.com/txoutbox/txoutbox/middleware/outboxecho5"
	"github.com/txoutbox/txoutbox/outbox"
)

// newAPI returns the invoices API on Echo v5:
//
//	POST /invoices              issue an invoice        → billing.InvoiceCreated
//	POST /invoices/:id/pay      record its payment      → billing.InvoicePaid
//	POST /invoices/:id/cancel   withdraw it             → billing.InvoiceCancelled
//	GET  /invoices/:id          show it
//
// The invoices table must exist (invoices.Migrate).
func newAPI(pool *pgxpool.Pool, client *outbox.Client) *echo.Echo {
	h := &handlers{pool: pool}
	e := echo.New()
	e.HTTPErrorHandler = outboxecho5.ErrorHandler(e.HTTPErrorHandler)
	e.Use(outboxecho5.Middleware(client))
	e.POST("/invoices", h.create)
	e.POST("/invoices/:id/pay", h.pay)
	e.POST("/invoices/:id/cancel", h.cancel)
	e.GET("/invoices/:id", h.get)
	return e
}

type handlers struct {
	pool *pgxpool.Pool
}

func (h *handlers) create(c *echo.Context) error {
	var in invoices.New
	if err := c.Bind(&in); err != nil {
		return err
	}
	return h.apply(c, http.StatusCreated, func(ctx context.Context, tx pgx.Tx) (invoices.Invoice, invoices.Event, error) {
		return invoices.Create(ctx, tx, in)
	})
}

func (h *handlers) pay(c *echo.Context) error {
	id := c.Param("id")
	return h.apply(c, http.StatusOK, func(ctx context.Context, tx pgx.Tx) (invoices.Invoice, invoices.Event, error) {
		return invoices.Pay(ctx, tx, id, time.Now())
	})
}

func (h *handlers) cancel(c *echo.Context) error {
	var in struct {
		Reason string `json:"reason"`
	}
	if err := c.Bind(&in); err != nil {
		return err
	}
	id := c.Param("id")
	return h.apply(c, http.StatusOK, func(ctx context.Context, tx pgx.Tx) (invoices.Invoice, invoices.Event, error) {
		return invoices.Cancel(ctx, tx, id, in.Reason)
	})
}

func (h *handlers) get(c *echo.Context) error {
	inv, err := invoices.Get(c.Request().Context(), h.pool, c.Param("id"))
	if err != nil {
		return answer(err)
	}
	return c.JSON(http.StatusOK, inv)
}

// apply runs one state change with the request's session: the invoice and
// its event commit together (invoices.Apply).
func (h *handlers) apply(c *echo.Context, status int, change invoices.Change) error {
	sess, err := outboxecho5.Session(c)
	if err != nil {
		return err
	}
	inv, err := invoices.Apply(c.Request().Context(), h.pool, sess, change)
	if err != nil {
		return answer(err)
	}
	return c.JSON(status, inv)
}

// answer gives a business error its status; Echo answers any other with 500.
func answer(err error) error {
	if status := invoices.Status(err); status != 0 {
		return echo.NewHTTPError(status, err.Error())
	}
	return err
}
