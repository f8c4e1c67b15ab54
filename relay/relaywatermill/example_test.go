package relaywatermill_test

import (
	"context"
	"fmt"
	"log"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relaywatermill"
	"github.com/txoutbox/txoutbox/topics"
)

// A relay embedded in the publishing application, delivering to a watermill
// publisher (here watermill's in-memory Go channel; NATS JetStream, Kafka or
// AMQP work the same). The outbox client wakes the relay after each commit,
// so the event is delivered right after its transaction commits.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.ExampleDB())
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if err := outbox.Migrate(ctx, pool, nil); err != nil {
		log.Fatal(err)
	}
	reg, err := topics.Load("../../topic_definitions.yaml")
	if err != nil {
		log.Fatal(err)
	}
	client, err := outbox.New(pool, reg, &outbox.Config{Source: "billing-api"})
	if err != nil {
		log.Fatal(err)
	}

	pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer pubsub.Close()
	received, err := pubsub.Subscribe(ctx, "billing.InvoiceCreated")
	if err != nil {
		log.Fatal(err)
	}
	sink, err := relaywatermill.New(pubsub, nil)
	if err != nil {
		log.Fatal(err)
	}

	r, err := relay.New(pool, sink, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer client.OnCommit(r.Wake)()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()

	sess := client.UserSession("user-42", "job-7f3a")
	tx, err := pool.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	err = sess.Publish(ctx, "Created", "Invoice", map[string]any{
		"id": "inv-1001", "customer": map[string]any{"id": "cus-7", "name": "Ada Lovelace"},
		"amount_cents": 1250, "currency": "EUR", "status": "open", "due_date": "2026-12-31",
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := sess.Flush(ctx, tx); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}
	sess.Committed() // wakes the relay: the event is delivered at once

	msg := <-received
	msg.Ack()
	fmt.Println(msg.Metadata.Get(relaywatermill.MetaTopic), msg.Metadata.Get(relaywatermill.MetaKey), msg.Metadata.Get(relaywatermill.MetaJobID))

	stop()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	// Output: billing.InvoiceCreated inv-1001 job-7f3a
}
