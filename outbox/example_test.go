package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/topics"
)

// The main path: publish in a handler, flush into its transaction, commit.
func Example() {
	ctx := context.Background()
	pool := examplePool() // a *pgxpool.Pool on a migrated database
	defer pool.Close()

	reg, err := topics.Load("../topic_definitions.yaml")
	if err != nil {
		log.Fatal(err)
	}
	client, err := outbox.New(pool, reg, &outbox.Config{Source: "billing-api"})
	if err != nil {
		log.Fatal(err)
	}

	// One session per request: who acted, and the request's correlation id.
	sess := client.UserSession("user-42", "job-7f3a")

	tx, err := pool.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback(ctx)
	// ... business writes in tx ...
	err = sess.Publish(ctx, "Created", "Invoice", map[string]any{
		"id":           "inv-1001",
		"customer":     map[string]any{"id": "cus-7", "name": "Ada Lovelace"},
		"amount_cents": 1250,
		"currency":     "EUR",
		"status":       "open",
		"due_date":     "2026-12-31",
	})
	if err != nil {
		log.Fatal(err) // unknown topic or invalid data: nothing was buffered
	}
	if err := sess.Flush(ctx, tx); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}
	sess.Committed() // runs the OnCommit hooks, e.g. an embedded relay's Wake

	var topic, key, job string
	err = pool.QueryRow(ctx, "SELECT topic, key, job_id FROM txoutbox_events").Scan(&topic, &key, &job)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(topic, key, job)
	// Output: billing.InvoiceCreated inv-1001 job-7f3a
}

// Invalid data is refused before anything is buffered, with an error that
// names the topic and the JSON path that failed.
func ExampleSession_Publish_invalid() {
	reg, err := topics.Load("../topic_definitions.yaml")
	if err != nil {
		log.Fatal(err)
	}
	client, err := outbox.New(nil, reg, &outbox.Config{Source: "billing-api"})
	if err != nil {
		log.Fatal(err)
	}
	sess := client.UserSession("user-42", "")
	err = sess.Publish(context.Background(), "Paid", "Invoice", map[string]any{
		"id":           "inv-1001",
		"amount_cents": "twelve",
		"paid_at":      "2026-11-23T10:00:00Z",
	})

	var verr *topics.ValidationError
	if errors.As(err, &verr) {
		fmt.Println(verr.Topic, verr.Path)
	}
	fmt.Println("buffered:", sess.Len())
	// Output:
	// billing.InvoicePaid /amount_cents
	// buffered: 0
}

// A target scopes an event to a place: here a layout of a project of a
// collection. The events API delivers it to the subscribers of the layout,
// of its project and of its collection. A target that skips a level is
// refused at Publish.
func ExampleWithTarget() {
	reg, err := topics.Load("../topic_definitions.yaml")
	if err != nil {
		log.Fatal(err)
	}
	client, err := outbox.New(nil, reg, &outbox.Config{Source: "billing-api"})
	if err != nil {
		log.Fatal(err)
	}
	sess := client.UserSession("user-42", "")
	paid := map[string]any{"id": "inv-1001", "amount_cents": 1250, "paid_at": "2026-11-23T10:00:00Z"}

	err = sess.Publish(context.Background(), "Paid", "Invoice", paid,
		outbox.WithTarget(outbox.Target{Collection: "acme", Project: "q4-close", Layout: "ledger"}))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("target:", sess.Unflushed()[0].Target)

	err = sess.Publish(context.Background(), "Paid", "Invoice", paid,
		outbox.WithTarget(outbox.Target{Layout: "ledger"}))
	fmt.Println(errors.Is(err, outbox.ErrInvalidTarget), err)
	fmt.Println("buffered:", sess.Len())
	// Output:
	// target: acme/q4-close/ledger
	// true outbox: publish billing.InvoicePaid: target: layout "ledger" needs its project and collection
	// buffered: 1
}

// OnCommit hooks run when a session is told that the transaction its
// events were flushed into has committed, never at Flush and never after a
// rollback. A relay running in the same process registers its Wake there:
// client.OnCommit(r.Wake).
func ExampleClient_OnCommit() {
	ctx := context.Background()
	pool := examplePool() // a *pgxpool.Pool on a migrated database
	defer pool.Close()
	reg, err := topics.Load("../topic_definitions.yaml")
	if err != nil {
		log.Fatal(err)
	}
	client, err := outbox.New(pool, reg, &outbox.Config{Source: "billing-api"})
	if err != nil {
		log.Fatal(err)
	}
	defer client.OnCommit(func() { fmt.Println("hook: events committed") })()

	sess := client.ServiceSession("nightly-sweep")
	for _, commit := range []bool{false, true} {
		tx, err := pool.Begin(ctx)
		if err != nil {
			log.Fatal(err)
		}
		if err := sess.Publish(ctx, "Overdue", "Invoice", map[string]any{"id": "inv-9", "days_overdue": 3}); err != nil {
			log.Fatal(err)
		}
		if err := sess.Flush(ctx, tx); err != nil {
			log.Fatal(err)
		}
		fmt.Println("flushed; commit:", commit)
		if !commit {
			_ = tx.Rollback(ctx)
			sess.Rollback() // no hook for what was rolled back
			continue
		}
		if err := tx.Commit(ctx); err != nil {
			log.Fatal(err)
		}
		sess.Committed()
	}
	// Output:
	// flushed; commit: false
	// flushed; commit: true
	// hook: events committed
}
