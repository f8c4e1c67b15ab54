package outboxecho5_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v5"

	"github.com/txoutbox/txoutbox/middleware/internal/mwtest"
	"github.com/txoutbox/txoutbox/middleware/outboxecho5"
	"github.com/txoutbox/txoutbox/outbox"
)

// Install the middleware, then publish, flush and commit in a handler. The
// request's session carries the user (X-User-ID), the job id (X-Job-ID,
// echoed in the response) and the traceparent into every event.
func Example() {
	env := mwtest.ExampleEnv() // a migrated database and an outbox client
	pool, client := env.Pool, env.Client
	defer pool.Close()
	inv := mwtest.Invoice("inv-1001")

	e := echo.New()
	e.Use(outboxecho5.Middleware(client)) // a session per request
	e.POST("/invoices", func(c *echo.Context) error {
		ctx := c.Request().Context()
		sess, err := outboxecho5.Session(c)
		if err != nil {
			return err
		}
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		// ... write the invoice in tx ...
		if err := sess.Publish(ctx, "Created", "Invoice", inv); err != nil {
			return err // unknown topic or invalid data: a 500, nothing buffered
		}
		if err := sess.Flush(ctx, tx); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		return c.JSON(http.StatusCreated, inv)
	})

	req := httptest.NewRequest(http.MethodPost, "/invoices", nil)
	req.Header.Set("X-User-ID", "user-42")
	req.Header.Set("X-Job-ID", "job-7f3a")
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)

	var topic, actor, job string
	err := pool.QueryRow(context.Background(), "SELECT topic, actor_id, job_id FROM txoutbox_events").Scan(&topic, &actor, &job)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(rec.Code, rec.Header().Get("X-Job-ID"))
	fmt.Println(topic, actor, job)
	// Output:
	// 201 job-7f3a
	// billing.InvoiceCreated user-42 job-7f3a
}

// A bc-events service: the job id travels in x-britecore-job-id, the user
// comes from the authentication middleware that ran first, and in
// development a forgotten Flush answers 500.
func ExampleConfig() {
	env := mwtest.ExampleEnv()
	defer env.Pool.Close()

	e := echo.New()
	e.Use(outboxecho5.MiddlewareWithConfig(env.Client, outboxecho5.Config{
		UserIDFunc: func(c *echo.Context) (string, error) {
			return echo.ContextGetOr(c, "user", "") // set by the authentication middleware; "" opens a service session
		},
		JobIDHeader: "x-britecore-job-id",
		Strict:      true,
	}))
	e.POST("/invoices", func(c *echo.Context) error {
		sess, err := outboxecho5.Session(c)
		if err != nil {
			return err
		}
		// Published, never flushed: the bug strict mode makes loud.
		if err := sess.Publish(c.Request().Context(), "Created", "Invoice", mwtest.Invoice("inv-1")); err != nil {
			return err
		}
		return c.JSON(http.StatusCreated, "ok")
	})

	req := httptest.NewRequest(http.MethodPost, "/invoices", nil)
	req.Header.Set("x-britecore-job-id", "job-7f3a")
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Header().Get("x-britecore-job-id"))
	fmt.Print(rec.Body)
	// Output:
	// 500 job-7f3a
	// {"message":"outbox: 1 event published but never flushed (billing.InvoiceCreated: 1)"}
}

// A handler publishes what the client sent; data that fails its topic's
// schema answers 422 with the topic and the field at fault, not a bare 500.
func ExampleErrorHandler() {
	env := mwtest.ExampleEnv()
	pool, client := env.Pool, env.Client
	defer pool.Close()

	e := echo.New()
	e.HTTPErrorHandler = outboxecho5.ErrorHandler(e.HTTPErrorHandler)
	e.Use(outboxecho5.Middleware(client))
	e.POST("/invoices", func(c *echo.Context) error {
		var inv map[string]any
		if err := c.Bind(&inv); err != nil {
			return err
		}
		sess, err := outboxecho5.Session(c)
		if err != nil {
			return err
		}
		err = outbox.InTx(c.Request().Context(), pool, sess, func(ctx context.Context, tx pgx.Tx) error {
			// ... write the invoice in tx ...
			return sess.Publish(ctx, "Created", "Invoice", inv)
		})
		if err != nil {
			return err // a *topics.ValidationError answers 422
		}
		return c.JSON(http.StatusCreated, map[string]any{"id": inv["id"]})
	})

	for _, amount := range []any{1250, "12.50"} {
		inv := mwtest.Invoice("inv-1001")
		inv["amount_cents"] = amount
		body, _ := json.Marshal(inv)
		req := httptest.NewRequest(http.MethodPost, "/invoices", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-User-ID", "user-42")
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		fmt.Print(rec.Code, " ", rec.Body)
	}
	// Output:
	// 201 {"id":"inv-1001"}
	// 422 {"message":"event data does not match its topic's schema","topic":"billing.InvoiceCreated","path":"/amount_cents"}
}
