// Command nethttp-service is the example invoices API with net/http alone:
// Go 1.22 ServeMux patterns, the outboxhttp middleware, and outbox.InTx
// running each change and its event in one transaction.
//
//	DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres go run ./examples/nethttp-service
package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/examples/internal/exampleenv"
	"github.com/txoutbox/txoutbox/internal/invoices"
	"github.com/txoutbox/txoutbox/middleware/outboxhttp"
	"github.com/txoutbox/txoutbox/outbox"
)

func main() {
	exampleenv.Main("nethttp-service", run)
}

// run serves the API on ADDR (default 127.0.0.1:8081) until ctx is done.
func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	return exampleenv.RunServer(ctx, getenv, stdout, "127.0.0.1:8081", func(env *exampleenv.Env) http.Handler {
		return newServer(env.Pool, env.Client)
	})
}

// newServer returns the invoices API, the same as the Echo example's:
//
//	POST /invoices              issue an invoice        → billing.InvoiceCreated
//	POST /invoices/{id}/pay     record its payment      → billing.InvoicePaid
//	POST /invoices/{id}/cancel  withdraw it             → billing.InvoiceCancelled
//	GET  /invoices/{id}         show it
func newServer(pool *pgxpool.Pool, client *outbox.Client) http.Handler {
	s := &server{pool: pool}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /invoices", s.create)
	mux.HandleFunc("POST /invoices/{id}/pay", s.pay)
	mux.HandleFunc("POST /invoices/{id}/cancel", s.cancel)
	mux.HandleFunc("GET /invoices/{id}", s.get)
	return outboxhttp.Middleware(client, nil)(mux)
}

type server struct {
	pool *pgxpool.Pool
}

type change func(context.Context, pgx.Tx) (invoices.Invoice, invoices.Event, error)

func (s *server) create(w http.ResponseWriter, r *http.Request) {
	var in invoices.New
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeError(w, &invoices.InputError{Field: "body", Problem: err.Error()})
		return
	}
	s.change(w, r, http.StatusCreated, func(ctx context.Context, tx pgx.Tx) (invoices.Invoice, invoices.Event, error) {
		return invoices.Create(ctx, tx, in)
	})
}

func (s *server) pay(w http.ResponseWriter, r *http.Request) {
	s.change(w, r, http.StatusOK, func(ctx context.Context, tx pgx.Tx) (invoices.Invoice, invoices.Event, error) {
		return invoices.Pay(ctx, tx, r.PathValue("id"), time.Now())
	})
}

func (s *server) cancel(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Reason string `json:"reason"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeError(w, &invoices.InputError{Field: "body", Problem: err.Error()})
		return
	}
	s.change(w, r, http.StatusOK, func(ctx context.Context, tx pgx.Tx) (invoices.Invoice, invoices.Event, error) {
		return invoices.Cancel(ctx, tx, r.PathValue("id"), in.Reason)
	})
}

func (s *server) get(w http.ResponseWriter, r *http.Request) {
	inv, err := invoices.Get(r.Context(), s.pool, r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, inv)
}

// change runs one state change and its event in a transaction: outbox.InTx
// begins it, and after write and Publish succeed flushes the event into it
// and commits; on an error it rolls back and drops the event.
func (s *server) change(w http.ResponseWriter, r *http.Request, status int, write change) {
	sess, ok := outbox.FromContext(r.Context())
	if !ok {
		writeError(w, outbox.ErrNoSession)
		return
	}
	var inv invoices.Invoice
	err := outbox.InTx(r.Context(), s.pool, sess, func(ctx context.Context, tx pgx.Tx) error {
		var ev invoices.Event
		var err error
		if inv, ev, err = write(ctx, tx); err != nil {
			return err
		}
		return sess.Publish(ctx, ev.Action, invoices.Entity, ev.Data)
	})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, status, inv)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers the business errors with their status, anything else
// with 500 and no details.
func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	var input *invoices.InputError
	switch {
	case errors.As(err, &input):
		status = http.StatusBadRequest
	case errors.Is(err, invoices.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, invoices.ErrState):
		status = http.StatusConflict
	}
	msg := http.StatusText(status)
	if status != http.StatusInternalServerError {
		msg = err.Error()
	}
	writeJSON(w, status, map[string]string{"message": msg})
}
