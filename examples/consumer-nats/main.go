// Command consumer-nats reads the events the relay publishes to NATS
// JetStream (txoutbox relay --sink nats://...) with a durable consumer and
// processes each event once, skipping the copies at-least-once delivery
// can bring by their event id, which package inbox records in the
// transaction that processes the event.
//
//	DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres go run ./examples/consumer-nats
//
// It reads the whole stream, so it works whatever subjects the relay's
// --topic-template makes. The environment changes where it reads:
//
//	DATABASE_URL    the consumer's database, holding the inbox table
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
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/txoutbox/txoutbox/examples/internal/exampleenv"
	"github.com/txoutbox/txoutbox/inbox"
)

// eventIDHeader carries the event id on every message the relay publishes
// (watermill's UUID header; Nats-Msg-Id holds the same id).
const eventIDHeader = "_watermill_message_uuid"

// durable names the consumer, whose position JetStream keeps across
// restarts.
const durable = "consumer-nats"

// consumer processes each event once: process runs in a transaction that
// also records the event's id in the inbox under the durable consumer's
// name, and a copy of an event whose transaction committed is skipped.
type consumer struct {
	pool    *pgxpool.Pool
	inbox   *inbox.Inbox
	process func(ctx context.Context, tx pgx.Tx, m *nats.Msg) error
}

// consume pulls the messages of stream matching filter ("" for all) from
// the durable consumer until ctx ends, processing each event once and
// acknowledging every message; a message whose processing fails is
// negatively acknowledged, and JetStream delivers it again.
func (c *consumer) consume(ctx context.Context, js nats.JetStreamContext, stream, filter, durable string) error {
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
	for ctx.Err() == nil {
		msgs, err := sub.Fetch(100, nats.MaxWait(time.Second))
		if err != nil && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("fetch: %w", err)
		}
		for _, m := range msgs {
			if ctx.Err() != nil { // stopping: the messages not handled come again
				break
			}
			// A message begun is finished, even when ctx ends meanwhile.
			if err := c.handle(context.WithoutCancel(ctx), durable, m); err != nil {
				slog.ErrorContext(ctx, "event not processed", slog.String("id", m.Header.Get(eventIDHeader)), slog.Any("error", err))
				if err := m.Nak(); err != nil {
					return fmt.Errorf("nak: %w", err)
				}
				continue
			}
			if err := m.Ack(); err != nil {
				return fmt.Errorf("ack: %w", err)
			}
		}
	}
	return nil
}

// handle processes m unless the inbox says its event was processed before.
// A message without an event id cannot be told from its copies; it is
// skipped.
func (c *consumer) handle(ctx context.Context, name string, m *nats.Msg) error {
	id := m.Header.Get(eventIDHeader)
	if id == "" {
		return nil
	}
	return pgx.BeginFunc(ctx, c.pool, func(tx pgx.Tx) error {
		first, err := c.inbox.Once(ctx, tx, name, id)
		if err != nil || !first {
			return err
		}
		return c.process(ctx, tx, m)
	})
}

func main() {
	exampleenv.Main("consumer-nats", run)
}

// run consumes until ctx ends, printing each event once: its id, subject,
// key and data.
func run(ctx context.Context, _ []string, getenv func(string) string, stdout io.Writer) error {
	pool, ib, err := exampleenv.OpenInbox(ctx, getenv)
	if err != nil {
		return err
	}
	defer pool.Close()
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
	c := &consumer{pool: pool, inbox: ib, process: func(_ context.Context, _ pgx.Tx, m *nats.Msg) error {
		_, err := fmt.Fprintf(stdout, "%s %s key=%s %s\n", m.Header.Get(eventIDHeader), m.Subject, m.Header.Get("key"), m.Data)
		return err // a real consumer writes its effects in the transaction instead
	}}
	return c.consume(ctx, js, stream, getenv("FILTER_SUBJECT"), durable)
}
