package relay_test

import (
	"context"
	"log"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/topics"
)

// The WAL mode: events are rows in the outbox table as in polling mode, but
// the relay learns of each commit that inserted some from a temporary
// logical replication slot, and reads them at once, whichever process
// committed them. The server needs wal_level=logical and the role the
// REPLICATION attribute; the migrations create the publication the relay
// streams. WALStatus says whether the stream is open.
func Example_walMode() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.ExampleDB())
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if err := outbox.Migrate(ctx, pool, nil); err != nil {
		log.Fatal(err)
	}
	reg, err := topics.Load("../topic_definitions.yaml")
	if err != nil {
		log.Fatal(err)
	}
	client, err := outbox.New(pool, reg, &outbox.Config{Source: "billing-api"})
	if err != nil {
		log.Fatal(err)
	}

	sink := &printSink{n: 2, done: make(chan struct{})}
	r, err := relay.New(pool, sink, &relay.Config{Mode: relay.ModeWAL})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for !r.WALStatus().Streaming {
		time.Sleep(10 * time.Millisecond)
	}

	sess := client.ServiceSession("nightly-close")
	for _, id := range []string{"inv-3", "inv-4"} {
		err := sess.Publish(ctx, "Paid", "Invoice", map[string]any{"id": id, "amount_cents": 1250, "paid_at": "2026-12-01T10:00:00Z"})
		if err != nil {
			log.Fatal(err)
		}
	}
	// The relay polls only once a second in this mode, as a backstop; the
	// commit, streamed to it, wakes it.
	err = outbox.InTx(ctx, pool, sess, func(ctx context.Context, tx pgx.Tx) error { return nil })
	if err != nil {
		log.Fatal(err)
	}
	<-sink.done
	stop()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	// Output:
	// billing.InvoicePaid inv-3
	// billing.InvoicePaid inv-4
}
