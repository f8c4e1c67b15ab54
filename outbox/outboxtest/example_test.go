package outboxtest_test

import (
	"context"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
)

// printT stands in for a test's *testing.T in these examples: it prints
// what a failing test would report.
type printT struct{}

func (printT) Helper() {}

func (printT) Fatalf(format string, args ...any) { fmt.Printf(format+"\n", args...) }

// exampleClient returns a pool on a fresh, migrated database and a client
// over the repository's topic definitions.
func exampleClient() (*pgxpool.Pool, *outbox.Client) {
	pool, err := pgxpool.New(context.Background(), pgtest.ExampleDB())
	if err != nil {
		log.Fatal(err)
	}
	if err := outbox.Migrate(context.Background(), pool, nil); err != nil {
		log.Fatal(err)
	}
	client, err := buildClient(pool, "")
	if err != nil {
		log.Fatal(err)
	}
	return pool, client
}

// createInvoice is the code under test: it publishes billing.InvoiceCreated
// and flushes it into the caller's transaction.
func createInvoice(ctx context.Context, sess *outbox.Session, tx pgx.Tx, id string) error {
	if err := sess.Publish(ctx, "Created", "Invoice", invoice(id)); err != nil {
		return err
	}
	return sess.Flush(ctx, tx)
}

// Check what the code under test published, in its transaction before
// commit and through the pool after.
func ExampleRequirePublished() {
	ctx := context.Background()
	pool, client := exampleClient()
	defer pool.Close()
	t := printT{} // in a test: the test's t

	tx, err := pool.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := createInvoice(ctx, client.UserSession("user-42", "job-7f3a"), tx, "inv-1"); err != nil {
		log.Fatal(err)
	}

	want := outboxtest.Want{
		Topic:   "billing.InvoiceCreated",
		Key:     "inv-1",
		ActorID: "user-42",
		Data:    map[string]any{"status": "open", "customer": map[string]any{"name": "Ada Lovelace"}},
	}
	ev := outboxtest.RequirePublished(ctx, t, tx, want, nil) // before commit: through tx
	fmt.Println(ev.Topic, ev.Key, ev.JobID)
	outboxtest.RequireNotPublished(ctx, t, tx, outboxtest.Want{Topic: "billing.InvoicePaid"}, nil)

	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}
	outboxtest.RequirePublished(ctx, t, pool, want, nil) // after commit: through the pool
	// Output: billing.InvoiceCreated inv-1 job-7f3a
}

// A failed assertion lists what was published instead, and why the events
// of the wanted topic do not match.
func ExampleRequirePublished_failure() {
	ctx := context.Background()
	pool, client := exampleClient()
	defer pool.Close()
	t := printT{}

	tx, err := pool.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := createInvoice(ctx, client.UserSession("user-42", "job-7f3a"), tx, "inv-1"); err != nil {
		log.Fatal(err)
	}

	outboxtest.RequirePublished(ctx, t, tx, outboxtest.Want{
		Topic: "billing.InvoiceCreated",
		Key:   "inv-2",
	}, nil)
	// Output:
	// outboxtest: no event matches billing.InvoiceCreated key="inv-2"; txoutbox_events holds 1:
	//   1. billing.InvoiceCreated key="inv-1" actor=user:"user-42" job_id="job-7f3a" data={"amount_cents":1250,"currency":"EUR","customer":{"id":"cus-7","name":"Ada Lovelace"},"due_date":"2026-12-31","id":"inv-…
	//        key is "inv-1", want "inv-2"
}

// Code that only publishes is checked without a database: the session's
// buffer holds what it published until Flush.
func ExampleRequireUnflushed() {
	client, err := buildClient(nil, "") // outbox.New with a nil pool
	if err != nil {
		log.Fatal(err)
	}
	sess := client.ServiceSession("nightly-2026-11-23")

	// The code under test.
	for _, id := range []string{"inv-1", "inv-2"} {
		err := sess.Publish(context.Background(), "Overdue", "Invoice", map[string]any{"id": id, "days_overdue": 3})
		if err != nil {
			log.Fatal(err)
		}
	}

	events := outboxtest.RequireUnflushed(printT{}, sess, []outboxtest.Want{
		{Topic: "billing.InvoiceOverdue", Key: "inv-1", ActorType: outbox.ActorService},
		{Topic: "billing.InvoiceOverdue", Key: "inv-2", ActorType: outbox.ActorService},
	})
	fmt.Println(len(events), events[0].ActorID)
	// Output: 2 billing-api
}
