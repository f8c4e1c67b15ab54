// Command consumer-http receives the relay's CloudEvents stream over HTTP
// and processes each event once: delivery is at least once, so a retried
// batch can bring an event again, and the consumer skips it by its id,
// which package inbox records in the transaction that processes the event.
//
//	DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres go run ./examples/consumer-http   # listens on 127.0.0.1:8090
//	txoutbox relay --sink http://127.0.0.1:8090/ --format cloudevents ...
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/examples/internal/exampleenv"
	"github.com/txoutbox/txoutbox/inbox"
)

// consumerName is the name the inbox records this consumer's events under.
const consumerName = "consumer-http"

// event is the part of a CloudEvent this consumer reads.
type event struct {
	ID          string          `json:"id"`
	Type        string          `json:"type"` // the topic, e.g. billing.InvoiceCreated
	Subject     string          `json:"subject"`
	Traceparent string          `json:"traceparent"`
	Data        json.RawMessage `json:"data"`
}

// consumer processes each event once: process runs in a transaction that
// also records the event's id in the inbox, and a copy of an event whose
// transaction committed is skipped.
type consumer struct {
	pool    *pgxpool.Pool
	inbox   *inbox.Inbox
	process func(ctx context.Context, tx pgx.Tx, e event) error
}

// ServeHTTP takes a batch (application/cloudevents-batch+json) or a single
// event and answers 200 once every event is processed or known. When one
// fails it answers 500, and the relay sends the batch again: the events
// processed before are skipped then.
func (c *consumer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var batch []event
	if err := json.Unmarshal(body, &batch); err != nil {
		var one event
		if err := json.Unmarshal(body, &one); err != nil {
			http.Error(w, "body is not a CloudEvent or a batch of them", http.StatusBadRequest)
			return
		}
		batch = []event{one}
	}
	for _, e := range batch {
		if e.ID == "" {
			http.Error(w, "an event has no id", http.StatusBadRequest)
			return
		}
	}
	for _, e := range batch {
		if err := c.handle(r.Context(), e); err != nil {
			slog.ErrorContext(r.Context(), "event not processed", slog.String("id", e.ID), slog.Any("error", err))
			http.Error(w, "event "+e.ID+" not processed; send it again", http.StatusInternalServerError)
			return
		}
	}
	w.WriteHeader(http.StatusOK)
}

// handle processes e unless the inbox says it was processed before.
func (c *consumer) handle(ctx context.Context, e event) error {
	return pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		first, err := c.inbox.Once(ctx, tx, consumerName, e.ID)
		if err != nil || !first {
			return err
		}
		return c.process(ctx, tx, e)
	})
}

func main() {
	exampleenv.Main("consumer-http", run)
}

// run serves the consumer on ADDR (default 127.0.0.1:8090) until ctx is
// done, printing each event once: its id, topic, key and data. A real
// consumer writes its effects in tx instead.
func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	pool, ib, err := exampleenv.OpenInbox(ctx, getenv)
	if err != nil {
		return err
	}
	defer pool.Close()
	c := &consumer{pool: pool, inbox: ib, process: func(_ context.Context, _ pgx.Tx, e event) error {
		_, err := fmt.Fprintf(stdout, "%s %s key=%s %s\n", e.ID, e.Type, e.Subject, e.Data)
		return err
	}}
	ln, err := exampleenv.Listen(getenv, "127.0.0.1:8090", stdout)
	if err != nil {
		return err
	}
	return exampleenv.Serve(ctx, ln, c)
}
