// Command consumer-nats reads the events the relay publishes to NATS
// JetStream (txoutbox relay --sink nats://...) with a durable consumer and
// processes each event once, dropping the copies at-least-once delivery
// can bring by their event id.
//
//	go run ./examples/consumer-nats    # NATS_URL, default nats://127.0.0.1:4222
package main

import (
	"cmp"
	"context"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/nats-io/nats.go"
)

// eventIDHeader carries the event id on every message the relay publishes
// (watermill's UUID header; Nats-Msg-Id holds the same id).
const eventIDHeader = "_watermill_message_uuid"

// deduper remembers the last window event ids processed. A real service
// records the id in its database, in the transaction that applies the
// event, so the check survives restarts.
type deduper struct {
	seen   map[string]bool
	order  []string
	window int
}

// first reports whether id is new, and remembers it.
func (d *deduper) first(id string) bool {
	if d.seen[id] {
		return false
	}
	d.seen[id] = true
	d.order = append(d.order, id)
	if len(d.order) > d.window {
		delete(d.seen, d.order[0])
		d.order = d.order[1:]
	}
	return true
}

// consume pulls from the durable consumer on stream until ctx ends,
// calling process once per event id and acknowledging every message.
func consume(ctx context.Context, js nats.JetStreamContext, stream, subject, durable string, process func(*nats.Msg)) error {
	sub, err := js.PullSubscribe(subject, durable, nats.BindStream(stream), nats.ManualAck())
	if err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	d := &deduper{seen: map[string]bool{}, window: 100_000}
	for ctx.Err() == nil {
		msgs, err := sub.Fetch(100, nats.MaxWait(time.Second))
		if err != nil && err != nats.ErrTimeout {
			return fmt.Errorf("fetch: %w", err)
		}
		for _, m := range msgs {
			if id := m.Header.Get(eventIDHeader); id != "" && d.first(id) {
				process(m)
			}
			if err := m.Ack(); err != nil {
				return fmt.Errorf("ack: %w", err)
			}
		}
	}
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	nc, err := nats.Connect(cmp.Or(os.Getenv("NATS_URL"), nats.DefaultURL))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		log.Fatal(err)
	}
	err = consume(ctx, js, cmp.Or(os.Getenv("STREAM"), "TXOUTBOX"), "billing.>", "consumer-nats", func(m *nats.Msg) {
		fmt.Printf("%s %s key=%s %s\n", m.Header.Get(eventIDHeader), m.Subject, m.Header.Get("key"), m.Data)
	})
	if err != nil {
		log.Fatal(err)
	}
}
