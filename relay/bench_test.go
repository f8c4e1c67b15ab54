package relay

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/topics"
)

// benchEvents is how many committed events each drain moves.
const benchEvents = 100_000

// BenchmarkRelay drains benchEvents committed rows with one relay to a no-op
// sink, and the same number with watermill-sql/v3's subscriber and forwarder
// (default settings, default PostgreSQL schema) to the same no-op sink, in
// the same run, on the same server. Run it with -benchtime=1x:
//
//	go test -run '^$' -bench BenchmarkRelay -benchtime=1x ./relay/
//
// The collector runs at GOGC=400, as in the txoutbox daemon, for both.
// Package relayhttp measures the drain to an events API
// (BenchmarkRelayHTTP), and txoutbox bench measures both side by side.
func BenchmarkRelay(b *testing.B) {
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	ctx := b.Context()
	pool := newTestDB(b)
	sqlDB := stdlib.OpenDBFromPool(pool)
	b.Cleanup(func() { _ = sqlDB.Close() })

	var relayRate, watermillRate float64
	for b.Loop() {
		b.StopTimer()
		insertBenchEvents(b, pool)
		b.StartTimer()
		relayRate += benchEvents / drainRelay(b, pool, nil).Seconds()

		b.StopTimer()
		insertWatermillEvents(ctx, b, sqlDB)
		b.StartTimer()
		watermillRate += benchEvents / drainWatermill(b, sqlDB).Seconds()
	}
	n := float64(b.N)
	b.ReportMetric(relayRate/n, "relay-events/s")
	b.ReportMetric(watermillRate/n, "watermill-events/s")
	b.ReportMetric(relayRate/watermillRate, "relay/watermill")
}

// insertBenchEvents commits benchEvents rows on 10,000 keys.
func insertBenchEvents(b *testing.B, pool *pgxpool.Pool) {
	if _, err := pool.Exec(b.Context(), `INSERT INTO txoutbox_events
		(id, topic, category, entity, action, data, actor_id, actor_type, job_id, source, key, published_at)
		SELECT gen_random_uuid(), 'billing.InvoiceCreated', 'billing', 'Invoice', 'Created',
			json_build_object('id', 'inv-' || i % 10000, 'amount_cents', i, 'currency', 'EUR'),
			'user-1', 'user', 'job-' || i, 'billing', 'inv-' || i % 10000, now()
		FROM generate_series(1, $1) i`, benchEvents); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(b.Context(), `VACUUM ANALYZE txoutbox_events`); err != nil {
		b.Fatal(err)
	}
}

// drainRelay runs a relay until sink (a no-op sink when nil) has taken
// benchEvents events, and returns how long that took.
func drainRelay(b *testing.B, pool *pgxpool.Pool, sink Sink) time.Duration {
	counter := newCountingSink(sink, benchEvents)
	r, err := New(pool, counter, &Config{Logger: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.Context())
	start := time.Now()
	done := runUntil(ctx, r)
	<-counter.done
	elapsed := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return elapsed
}

const watermillTopic = "outbox"

// insertWatermillEvents commits benchEvents messages with watermill-sql's
// publisher, enveloped for the forwarder, 1,000 per transaction.
func insertWatermillEvents(ctx context.Context, b *testing.B, db *sql.DB) {
	for _, q := range (wsql.DefaultPostgreSQLSchema{}).SchemaInitializingQueries(watermillTopic) {
		if _, err := db.ExecContext(ctx, q.Query, q.Args...); err != nil {
			b.Fatal(err)
		}
	}
	payload, _ := json.Marshal(map[string]any{"id": "inv-1", "amount_cents": 100, "currency": "EUR"})
	for i := 0; i < benchEvents; i += 1000 {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		pub, err := wsql.NewPublisher(tx, wsql.PublisherConfig{SchemaAdapter: wsql.DefaultPostgreSQLSchema{}}, nil)
		if err != nil {
			b.Fatal(err)
		}
		fwd := forwarder.NewPublisher(pub, forwarder.PublisherConfig{ForwarderTopic: watermillTopic})
		msgs := make([]*message.Message, 1000)
		for j := range msgs {
			msgs[j] = message.NewMessage(watermill.NewUUID(), payload)
			msgs[j].Metadata.Set("key", fmt.Sprintf("inv-%d", (i+j)%10000))
		}
		if err := fwd.Publish("billing.InvoiceCreated", msgs...); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

// drainWatermill runs watermill-sql's subscriber and watermill's forwarder
// with their default settings until the no-op sink has taken benchEvents
// messages.
func drainWatermill(b *testing.B, db *sql.DB) time.Duration {
	sub, err := wsql.NewSubscriber(db, wsql.SubscriberConfig{
		SchemaAdapter:    wsql.DefaultPostgreSQLSchema{},
		OffsetsAdapter:   wsql.DefaultPostgreSQLOffsetsAdapter{},
		InitializeSchema: true,
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	counter := newCountingSink(nil, benchEvents)
	fwd, err := forwarder.NewForwarder(sub, counter, watermill.NopLogger{}, forwarder.Config{ForwarderTopic: watermillTopic})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := fwd.Run(context.Background()); err != nil {
			b.Error(err)
		}
	})
	<-counter.done
	elapsed := time.Since(start)
	if err := fwd.Close(); err != nil {
		b.Error(err)
	}
	wg.Wait()
	if err := sub.Close(); err != nil {
		b.Error(err)
	}
	return elapsed
}

// countingSink passes events on to next (none: a no-op sink) and closes
// done once target events went through. It is a relay Sink, and a watermill
// publisher for the watermill-sql forwarder's drain.
type countingSink struct {
	next   Sink
	target int64
	n      atomic.Int64
	once   sync.Once
	done   chan struct{}
}

func newCountingSink(next Sink, target int64) *countingSink {
	return &countingSink{next: next, target: target, done: make(chan struct{})}
}

func (s *countingSink) Send(ctx context.Context, events []*outbox.Event) error {
	if s.next != nil {
		if err := s.next.Send(ctx, events); err != nil {
			return err
		}
	}
	s.count(len(events))
	return nil
}

func (s *countingSink) Publish(_ string, msgs ...*message.Message) error {
	s.count(len(msgs))
	return nil
}

func (s *countingSink) count(n int) {
	if s.n.Add(int64(n)) >= s.target {
		s.once.Do(func() { close(s.done) })
	}
}

func (s *countingSink) Close() error { return nil }

// BenchmarkLatency measures commit-to-delivery latency and producer
// throughput while 16 producers publish through outbox sessions for three
// seconds, one event per transaction that first updates its entity row:
// once with the relay polling on its own (a separate daemon), once with the
// relay woken by the outbox client's OnCommit (embedded). Run it with
// -benchtime=1x:
//
//	go test -run '^$' -bench BenchmarkLatency -benchtime=1x ./relay/
func BenchmarkLatency(b *testing.B) {
	for _, mode := range []string{"poll", "wake"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				measureLatency(b, mode == "wake")
			}
		})
	}
}

func measureLatency(b *testing.B, wake bool) {
	const producers, keys, duration = 16, 50, 3 * time.Second
	ctx := b.Context()
	url := pgtest.NewDB(b)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = producers + 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	migrate(b, pool)
	if _, err := pool.Exec(ctx, `CREATE TABLE entity (key text PRIMARY KEY, seq int NOT NULL DEFAULT 0);
		INSERT INTO entity (key) SELECT 'inv-' || i FROM generate_series(0, 49) i`); err != nil {
		b.Fatal(err)
	}
	reg, err := topics.Load("../topic_definitions.yaml")
	if err != nil {
		b.Fatal(err)
	}
	client, err := outbox.New(pool, reg, &outbox.Config{Source: "bench"})
	if err != nil {
		b.Fatal(err)
	}

	// Times by "key/seq": when each producer's Commit returned, and when
	// the sink got the event. An event can reach the sink before its
	// producer sees Commit return; that counts as no latency.
	var committed, delivered sync.Map
	sink := &recordingSink{FailFunc: func(_ context.Context, _ int, events []*outbox.Event) error {
		now := time.Now()
		for _, e := range events {
			var data struct {
				ID  string `json:"id"`
				Seq int    `json:"amount_cents"`
			}
			if err := json.Unmarshal(e.Data, &data); err != nil {
				return err
			}
			delivered.Store(fmt.Sprintf("%s/%d", data.ID, data.Seq), now)
		}
		return nil
	}}
	relayPool := newPoolOn(b, url)
	r, err := New(relayPool, sink, &Config{Logger: testLogger(b)})
	if err != nil {
		b.Fatal(err)
	}
	if wake {
		defer client.OnCommit(r.Wake)()
	}
	runCtx, stop := context.WithCancel(ctx)
	done := runUntil(runCtx, r)

	var txs atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(duration)
	for p := range producers {
		wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				key := fmt.Sprintf("inv-%d", (p*7+i)%keys)
				if err := publishOne(ctx, pool, client, key, &committed); err != nil {
					b.Error(err)
					return
				}
				txs.Add(1)
			}
		})
	}
	wg.Wait()
	waitFor(b, 30*time.Second, "every event", func() bool { return sink.distinct() == int(txs.Load()) })
	stop()
	if err := <-done; err != nil {
		b.Fatal(err)
	}

	var latencies []time.Duration
	committed.Range(func(k, v any) bool {
		d, _ := delivered.Load(k)
		latencies = append(latencies, max(0, d.(time.Time).Sub(v.(time.Time))))
		return true
	})
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[int(p*float64(len(latencies)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(txs.Load())/duration.Seconds(), "tx/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
}

// publishOne runs one producer transaction: bump the entity, publish its
// new state, flush, commit; then it notes the time in committed.
func publishOne(ctx context.Context, pool *pgxpool.Pool, client *outbox.Client, key string, committed *sync.Map) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit
	var seq int
	if err := tx.QueryRow(ctx, `UPDATE entity SET seq = seq + 1 WHERE key = $1 RETURNING seq`, key).Scan(&seq); err != nil {
		return err
	}
	sess := client.ServiceSession("")
	err = sess.Publish(ctx, "Paid", "Invoice", map[string]any{"id": key, "amount_cents": seq, "paid_at": "2026-11-23T10:00:00Z"})
	if err != nil {
		return err
	}
	if err := sess.Flush(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	committed.Store(fmt.Sprintf("%s/%d", key, seq), time.Now())
	sess.Committed()
	return nil
}

func newPoolOn(b *testing.B, url string) *pgxpool.Pool {
	pool, err := pgxpool.New(b.Context(), url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return pool
}
