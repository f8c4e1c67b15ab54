package relaykafka_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay/relaykafka"
	"github.com/txoutbox/txoutbox/relay/relaytest"
	"github.com/txoutbox/txoutbox/topics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Wrap(m)) }

// newPool returns a pool on a fresh database with the outbox tables.
func newPool(t *testing.T) *pgxpool.Pool {
	pool := pgtest.NewPool(t)
	if err := outbox.Migrate(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	return pool
}

// newCluster starts an in-process Kafka cluster on 127.0.0.1 until the test
// ends.
func newCluster(t testing.TB, opts ...kfake.Opt) []string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.AllowAutoTopicCreation()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// newSink returns a sink on brokers until the test ends.
func newSink(t testing.TB, cfg relaykafka.Config) *relaykafka.Sink {
	t.Helper()
	s, err := relaykafka.New(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// record is one record as a consumer read it.
type record struct {
	relaytest.Received
	Topic     string
	Partition int32
	Headers   map[string]string
}

// consumer reads the given topics from the start in the background until
// the test ends.
type consumer struct {
	mu  sync.Mutex
	got []record
}

func consume(t *testing.T, brokers []string, format relaykafka.Format, topics ...string) *consumer {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	c := &consumer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			fs.EachRecord(func(r *kgo.Record) {
				rec := record{Topic: r.Topic, Partition: r.Partition, Headers: make(map[string]string)}
				for _, h := range r.Headers {
					rec.Headers[h.Key] = string(h.Value)
				}
				rec.ID, rec.Key, rec.Data = rec.Headers[relaykafka.HeaderID], string(r.Key), data(t, format, r.Value)
				c.mu.Lock()
				c.got = append(c.got, rec)
				c.mu.Unlock()
			})
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	return c
}

// data returns the event data a record value carries.
func data(t *testing.T, format relaykafka.Format, value []byte) []byte {
	if format == relaykafka.FormatBriteEvents {
		b, err := wire.DecodeBrite(value)
		if err != nil {
			t.Errorf("record value %s: %v", value, err)
		}
		return b.Data
	}
	ev, err := wire.DecodeCloudEvent(value)
	if err != nil {
		t.Errorf("record value %s: %v", value, err)
	}
	return ev.Data
}

func (c *consumer) records() []record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]record(nil), c.got...)
}

func (c *consumer) received() []relaytest.Received {
	var out []relaytest.Received
	for _, r := range c.records() {
		out = append(out, r.Received)
	}
	return out
}

// waitDistinct waits until n distinct events arrived, or fails the test
// after wait.
func (c *consumer) waitDistinct(t *testing.T, n int, wait time.Duration) []record {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		got := c.records()
		seen := make(map[string]bool)
		for _, r := range got {
			seen[r.ID] = true
		}
		if len(seen) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events arrived within %s", len(seen), n, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

const topicsYAML = `DefaultCategory: billing
Topics:
  - Action: Created
    Entity: Invoice
    Description: An invoice was issued.
    Schema:
      type: object
      required: [id, n]
      properties:
        id: {type: string}
        n: {type: integer}
  - Action: Paid
    Entity: Invoice
    Description: An invoice was paid.
    Schema:
      type: object
      required: [id, n]
      properties:
        id: {type: string}
        n: {type: integer}
`

// publish commits n events over keys keys through an outbox client, in
// transactions of 100, alternating Created and Paid; data {"id": key, "n": i}.
func publish(t *testing.T, pool *pgxpool.Pool, n, keys int, tenant string) map[string]bool {
	t.Helper()
	reg, err := topics.Parse("kafka.yaml", []byte(topicsYAML))
	if err != nil {
		t.Fatal(err)
	}
	client, err := outbox.New(pool, reg, &outbox.Config{Source: "relaykafka-test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for start := 0; start < n; start += 100 {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var opts []outbox.SessionOption
		if tenant != "" {
			opts = append(opts, outbox.WithTenant(tenant))
		}
		sess := client.ServiceSession("job-kafka", opts...)
		for i := start; i < min(start+100, n); i++ {
			action := []string{"Created", "Paid"}[i%2]
			if err := sess.Publish(ctx, action, "Invoice", map[string]any{"id": fmt.Sprintf("inv-%d", i%keys), "n": i}); err != nil {
				t.Fatal(err)
			}
		}
		if err := sess.Flush(ctx, tx); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := pool.Query(ctx, `SELECT id::text FROM txoutbox_events`)
	if err != nil {
		t.Fatal(err)
	}
	ids := make(map[string]bool)
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	if err := rows.Err(); err != nil || len(ids) != n {
		t.Fatalf("%d events committed, want %d: %v", len(ids), n, err)
	}
	return ids
}

// waitDrained waits until the outbox holds no event that is not delivered.
func waitDrained(t *testing.T, pool *pgxpool.Pool, wait time.Duration) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		var pending int
		if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM txoutbox_events WHERE status <> 'delivered'`).Scan(&pending); err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events not delivered after %s", pending, wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
