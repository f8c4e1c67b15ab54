package outboxprom_test

import (
	"context"
	"fmt"
	"log"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outboxprom"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relaywatermill"
	"github.com/txoutbox/txoutbox/topics"
)

// The metrics plugged into an outbox client and a relay, with the backlog
// gauges read from the table. An application serves reg with promhttp; here
// the example reads two metrics after one flush, before any delivery.
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
	defs, err := topics.Load("../topic_definitions.yaml")
	if err != nil {
		log.Fatal(err)
	}

	reg := prometheus.NewRegistry() // or prometheus.DefaultRegisterer
	m, err := outboxprom.New(reg, &outboxprom.Config{ConstLabels: prometheus.Labels{"service": "billing-api"}})
	if err != nil {
		log.Fatal(err)
	}
	if err := m.RegisterBacklog(pool, nil); err != nil {
		log.Fatal(err)
	}
	client, err := outbox.New(pool, defs, &outbox.Config{Source: "billing-api", FlushFunc: m.FlushFunc})
	if err != nil {
		log.Fatal(err)
	}
	pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer pubsub.Close()
	sink, err := relaywatermill.New(pubsub, nil)
	if err != nil {
		log.Fatal(err)
	}
	r, err := relay.New(pool, sink, &relay.Config{Hooks: m.RelayHooks("gochannel")})
	if err != nil {
		log.Fatal(err)
	}
	defer client.OnCommit(r.Wake)()
	// go r.Run(ctx) would deliver the event and count it under
	// txoutbox_relay_events_delivered_total{sink="gochannel"}.

	tx, err := pool.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	sess := client.ServiceSession("job-1")
	err = sess.Publish(ctx, "Paid", "Invoice", map[string]any{"id": "inv-1001", "amount_cents": 1250, "paid_at": "2026-05-01T10:00:00Z"})
	if err != nil {
		log.Fatal(err)
	}
	if err := sess.Flush(ctx, tx); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}
	sess.Committed()

	fams, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range fams {
		switch f.GetName() {
		case "txoutbox_events_published_total":
			fmt.Println(f.GetName(), f.GetMetric()[0].GetCounter().GetValue())
		case "txoutbox_outbox_backlog_events":
			fmt.Println(f.GetName(), f.GetMetric()[0].GetGauge().GetValue())
		}
	}
	// Output:
	// txoutbox_events_published_total 1
	// txoutbox_outbox_backlog_events 1
}
