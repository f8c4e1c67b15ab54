// Command consumer-nats reads the events the relay publishes to NATS
// JetStream (txoutbox relay --sink nats://...) with a durable consumer and
// processes each event once, dropping the copies at-least-once delivery
// can bring by their event id.
//
//	go run ./examples/consumer-nats
//
// It reads the whole stream, so it works whatever subjects the relay's
// --topic-template makes. The environment changes where it reads:
//
//	NATS_URL        the server (default nats://127.0.0.1:4222)
//	STREAM          the relay's --nats-stream (default TXOUTBOX)
//	FILTER_SUBJECT  only the subjects matching this one, within the
//	                stream's: billing.* for the billing events with the
//	                relay's default subjects (*.*), events.billing.*.*
//	                with --topic-template 'events.{category}.{entity}.{action}'
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/txoutbox/txoutbox/examples/internal/exampleenv"
)

// eventIDHeader carries the event id on every message the relay publishes
// (watermill's UUID header; Nats-Msg-Id holds the same id).
const eventIDHeader = "_watermill_message_uuid"

// durable names the consumer, whose position JetStream keeps across
// restarts.
const durable = "consumer-nats"

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

// consume pulls the messages of stream matching filter ("" for all) from
// the durable consumer until ctx ends, calling process once per event id
// and acknowledging every message.
func consume(ctx context.Context, js nats.JetStreamContext, stream, filter, durable string, process func(*nats.Msg)) error {
	info, err := js.StreamInfo(stream)
	if errors.Is(err, nats.ErrStreamNotFound) {
		return fmt.Errorf("no stream %s: txoutbox relay --sink nats://... creates it, so start the relay first, or set STREAM to its --nats-stream", stream)
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	sub, err := js.PullSubscribe(filter, durable, nats.BindStream(stream), nats.ManualAck())
	if err != nil {
		// Most often a FILTER_SUBJECT outside the stream's subjects: say which they are.
		return fmt.Errorf("subscribe to %s of stream %s, whose subjects are %s: %w",
			cmp.Or(filter, "all"), stream, strings.Join(info.Config.Subjects, " "), err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	d := &deduper{seen: map[string]bool{}, window: 100_000}
	for ctx.Err() == nil {
		msgs, err := sub.Fetch(100, nats.MaxWait(time.Second))
		if err != nil && !errors.Is(err, nats.ErrTimeout) {
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
	exampleenv.Main("consumer-nats", run)
}

// run consumes until ctx ends, printing each event once: its id, subject,
// key and data.
func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	nc, err := nats.Connect(cmp.Or(getenv("NATS_URL"), nats.DefaultURL), nats.Name("consumer-nats"))
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return fmt.Errorf("JetStream: %w", err)
	}
	stream := cmp.Or(getenv("STREAM"), "TXOUTBOX")
	return consume(ctx, js, stream, getenv("FILTER_SUBJECT"), durable, func(m *nats.Msg) {
		fmt.Fprintf(stdout, "%s %s key=%s %s\n", m.Header.Get(eventIDHeader), m.Subject, m.Header.Get("key"), m.Data)
	})
}
