package relay_test

import (
	"context"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/topics"
)

// printSink prints each event it is given and says when it has had n.
type printSink struct {
	n    int
	done chan struct{}
}

func (s *printSink) Send(_ context.Context, events []*outbox.Event) error {
	for _, ev := range events {
		fmt.Println(ev.Topic, ev.Key)
		if s.n--; s.n == 0 {
			close(s.done)
		}
	}
	return nil
}

// Message storage: a flush writes no row but one logical decoding message,
// which the relay in ModeMessages streams from the outbox's replication
// slot, in commit order, straight to the sink. The server needs
// wal_level=logical; Migrate with Messages creates the slot (as txoutbox
// migrate --messages does), which keeps the messages until a relay has
// delivered them.
func Example_messageStorage() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.ExampleDB())
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if err := outbox.Migrate(ctx, pool, &outbox.MigrateConfig{Messages: true}); err != nil {
		log.Fatal(err)
	}

	reg, err := topics.Load("../topic_definitions.yaml")
	if err != nil {
		log.Fatal(err)
	}
	client, err := outbox.New(pool, reg, &outbox.Config{Source: "billing-api", Storage: outbox.StorageMessages})
	if err != nil {
		log.Fatal(err)
	}
	sess := client.ServiceSession("nightly-close")
	for _, id := range []string{"inv-1", "inv-2"} {
		err := sess.Publish(ctx, "Paid", "Invoice", map[string]any{"id": id, "amount_cents": 1250, "paid_at": "2026-12-01T10:00:00Z"})
		if err != nil {
			log.Fatal(err)
		}
	}
	err = outbox.InTx(ctx, pool, sess, func(ctx context.Context, tx pgx.Tx) error { return nil })
	if err != nil {
		log.Fatal(err) // outbox.ErrNoSlot when the slot is missing: nothing was emitted
	}

	sink := &printSink{n: 2, done: make(chan struct{})}
	r, err := relay.New(pool, sink, &relay.Config{Mode: relay.ModeMessages})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-sink.done
	stop()
	if err := <-done; err != nil {
		log.Fatal(err)
	}
	var rows int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM txoutbox_events").Scan(&rows); err != nil {
		log.Fatal(err)
	}
	fmt.Println("rows in the outbox table:", rows)
	// Output:
	// billing.InvoicePaid inv-1
	// billing.InvoicePaid inv-2
	// rows in the outbox table: 0
}
