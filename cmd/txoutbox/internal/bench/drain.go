package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/txoutbox/txoutbox/relay"
)

// sinkKind is where a drain delivers.
type sinkKind int

const (
	sinkNoop sinkKind = iota
	sinkHTTP
)

// drainStall is how long a drain may go without an event arriving before it
// counts as stuck.
const drainStall = 30 * time.Second

// runRelay drains committed events with 1 and 4 relays to a no-op sink and
// to a local HTTP sink, and the same kind of events with watermill-sql's
// subscriber and forwarder to the same no-op sink.
func runRelay(ctx context.Context, e *env, rec *recorder) error {
	s, err := e.newSchema(ctx, "relay")
	if err != nil {
		return err
	}
	defer s.drop()

	const wm = "watermill"
	variants := []struct {
		key, name string
		sink      sinkKind
		relays    int
		goal      goal
	}{
		{"noop/r1", "relay → no-op sink, 1 relay", sinkNoop, 1, goal{
			text: "≥ 100,000/s and ≥ 10× watermill-sql",
			met:  func(m, q float64) bool { return m >= 100_000 && q >= 10 },
		}},
		{"noop/r4", "relay → no-op sink, 4 relays", sinkNoop, 4, atLeast(100_000, "≥ 100,000/s")},
		{"http/r1", "relay → local HTTP sink (CloudEvents), 1 relay", sinkHTTP, 1, atLeast(80_000, "≥ 80,000/s")},
		{"http/r4", "relay → local HTTP sink (CloudEvents), 4 relays", sinkHTTP, 4, atLeast(80_000, "≥ 80,000/s")},
	}
	for _, v := range variants {
		rec.define(v.key, fmt.Sprintf("%s, %d events", v.name, e.cfg.Events), "", "events/s", v.goal, wm)
	}
	rec.define(wm, fmt.Sprintf("watermill-sql/v3 subscriber + forwarder → no-op sink, %d events", e.cfg.WatermillEvents), "watermill-sql", "events/s", goal{})
	rec.note("relay: events are committed beforehand (10,000 keys) and the clock runs from the relays' start until the sink has them all; " +
		"the HTTP sink is relayhttp.Sink posting CloudEvents batches (the relay's batch of 1,000 events in one request) to a server on 127.0.0.1 in the same process that reads each body and answers 202; " +
		"4 relays run in one process, each with its own partitions")
	rec.note("relay: the baseline is watermill-sql v3.1.0's Subscriber with its default PostgreSQL schema, offsets adapter and settings " +
		"(batch 100, poll 1s) feeding watermill's forwarder (components/forwarder, default settings), which unwraps each message and publishes it to the same no-op sink; " +
		"its events were written by watermill-sql's Publisher wrapped in the forwarder's publisher, 1,000 per transaction")

	for run := range e.cfg.Runs {
		for _, v := range variants {
			e.log.Info("relay", "run", run+1, "variant", v.key)
			if err := s.insertEvents(ctx, e.cfg.Events); err != nil {
				return err
			}
			rate, err := drain(ctx, e, s, v.sink, v.relays, e.cfg.Events)
			if err != nil {
				return fmt.Errorf("%s: %w", v.key, err)
			}
			rec.add(v.key, rate)
		}
		e.log.Info("relay", "run", run+1, "variant", wm)
		rate, err := drainWatermill(ctx, s, e.cfg.WatermillEvents)
		if err != nil {
			return fmt.Errorf("%s: %w", wm, err)
		}
		rec.add(wm, rate)
	}
	return nil
}

// drain runs relays until the sink has n events and returns events/s.
func drain(ctx context.Context, e *env, s *schema, kind sinkKind, relays, n int) (float64, error) {
	pool, err := s.pool(ctx, 2*relays+2)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	c := newCounter(int64(n), nil)
	var sink relay.Sink = noopSink{c}
	if kind == sinkHTTP {
		h, err := startHTTPSink(c)
		if err != nil {
			return 0, err
		}
		defer h.close()
		sink = h
	}
	start := time.Now()
	rs, err := startRelays(ctx, e, s, pool, sink, relays, relay.ModePoll)
	if err != nil {
		return 0, err
	}
	_, werr := c.wait(ctx, drainStall)
	elapsed := time.Since(start)
	if err := rs.stop(); err != nil {
		return 0, err
	}
	if werr != nil {
		return 0, werr
	}
	return float64(n) / elapsed.Seconds(), nil
}

const (
	watermillTopic      = "outbox"
	watermillDestTopic  = "billing.InvoiceCreated"
	watermillInsertSize = 1000
)

// drainWatermill writes n events through watermill-sql's publisher, enveloped
// for the forwarder, then runs the subscriber and the forwarder with their
// default settings until the no-op sink has them all, and returns events/s.
func drainWatermill(ctx context.Context, s *schema, n int) (float64, error) {
	pool, err := s.pool(ctx, 4)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()

	if err := insertWatermill(ctx, db, n); err != nil {
		return 0, err
	}
	sub, err := wsql.NewSubscriber(db, wsql.SubscriberConfig{
		SchemaAdapter:    wsql.DefaultPostgreSQLSchema{},
		OffsetsAdapter:   wsql.DefaultPostgreSQLOffsetsAdapter{},
		InitializeSchema: true,
	}, watermill.NopLogger{})
	if err != nil {
		return 0, fmt.Errorf("watermill subscriber: %w", err)
	}
	c := newCounter(int64(n), nil)
	fwd, err := forwarder.NewForwarder(sub, noopSink{c}, watermill.NopLogger{}, forwarder.Config{ForwarderTopic: watermillTopic})
	if err != nil {
		_ = sub.Close()
		return 0, fmt.Errorf("watermill forwarder: %w", err)
	}
	// From here the forwarder's router owns the subscriber and closes it.
	start := time.Now()
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = fwd.Run(context.WithoutCancel(ctx)) })
	_, werr := c.wait(ctx, drainStall)
	elapsed := time.Since(start)
	cerr := fwd.Close()
	wg.Wait()
	for _, err := range []error{werr, runErr, cerr} {
		if err != nil {
			return 0, fmt.Errorf("watermill forwarder: %w", err)
		}
	}
	// The next run starts from an empty table and offset.
	for _, t := range []string{"watermill_" + watermillTopic, "watermill_offsets_" + watermillTopic} {
		if _, err := db.ExecContext(ctx, `DROP TABLE IF EXISTS `+s.table(t)); err != nil {
			return 0, fmt.Errorf("reset watermill tables: %w", err)
		}
	}
	return float64(n) / elapsed.Seconds(), nil
}

func insertWatermill(ctx context.Context, db *sql.DB, n int) error {
	for _, q := range (wsql.DefaultPostgreSQLSchema{}).SchemaInitializingQueries(watermillTopic) {
		if _, err := db.ExecContext(ctx, q.Query, q.Args...); err != nil {
			return fmt.Errorf("create watermill table: %w", err)
		}
	}
	for i := 0; i < n; i += watermillInsertSize {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		pub, err := wsql.NewPublisher(tx, wsql.PublisherConfig{SchemaAdapter: wsql.DefaultPostgreSQLSchema{}}, nil)
		if err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("watermill publisher: %w", err)
		}
		fwd := forwarder.NewPublisher(pub, forwarder.PublisherConfig{ForwarderTopic: watermillTopic})
		msgs := make([]*message.Message, min(watermillInsertSize, n-i))
		for j := range msgs {
			id := fmt.Sprintf("inv-%d", (i+j)%10_000)
			payload, err := json.Marshal(newInvoice(id, int64(i+j)))
			if err != nil {
				_ = tx.Rollback()
				return fmt.Errorf("encode data: %w", err)
			}
			msgs[j] = message.NewMessage(watermill.NewUUID(), payload)
			msgs[j].Metadata.Set("key", id)
		}
		if err := fwd.Publish(watermillDestTopic, msgs...); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("watermill publish: %w", err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
	}
	return nil
}
