package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
)

// newTestDB returns a pool on a fresh database with the outbox tables.
func newTestDB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool := pgtest.NewPool(t)
	migrate(t, pool)
	return pool
}

func migrate(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	if err := outbox.Migrate(context.Background(), pool, nil); err != nil {
		t.Fatal(err)
	}
}

type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// insertSQL inserts one event per key of $1, in order, with data
// {"key": key, "n": seq}: n is the row's seq when nothing else inserts.
const insertSQL = `WITH base AS MATERIALIZED (
		SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('txoutbox_events', 'seq')), 0) AS n)
	INSERT INTO txoutbox_events
	(id, topic, category, entity, action, data, actor_id, actor_type, job_id, source, key, published_at)
	SELECT gen_random_uuid(), 'billing.InvoiceCreated', 'billing', 'Invoice', 'Created',
		json_build_object('key', k, 'n', base.n + i), 'user-1', 'user', 'job-1', 'test', k, now()
	FROM base, unnest($1::text[]) WITH ORDINALITY AS u(k, i) ORDER BY i`

// insertEvents inserts one event per key, in order.
func insertEvents(t testing.TB, db execer, keys ...string) {
	t.Helper()
	if _, err := db.Exec(context.Background(), insertSQL, keys); err != nil {
		t.Fatalf("insert events: %v", err)
	}
}

// cycleKeys returns n keys cycling through k distinct ones: k0, k1, ..., k0, ...
func cycleKeys(n, k int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i%k)
	}
	return keys
}

// delivered is one message as a sink got it.
type delivered struct {
	ID    string
	Topic string
	Key   string
	N     int
	At    time.Time
}

// recordingSink records what it is given. FailFunc, when set, decides the
// outcome of each Send call (numbered from 1); a nil error delivers.
type recordingSink struct {
	FailFunc func(ctx context.Context, call int, events []*outbox.Event) error

	mu    sync.Mutex
	calls int
	got   []delivered
	tries map[string][]time.Time // event id -> start of each attempt
}

func (s *recordingSink) Send(ctx context.Context, events []*outbox.Event) error {
	now := time.Now()
	s.mu.Lock()
	s.calls++
	call := s.calls
	if s.tries == nil {
		s.tries = make(map[string][]time.Time)
	}
	for _, e := range events {
		s.tries[e.ID.String()] = append(s.tries[e.ID.String()], now)
	}
	fail := s.FailFunc
	s.mu.Unlock()

	var err error
	if fail != nil {
		err = fail(ctx, call, events)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var be *BatchError
	isBatch := errors.As(err, &be)
	for _, e := range events {
		if err != nil && (!isBatch || be.Failed[e.ID.String()] != nil) {
			continue
		}
		var data struct {
			Key string `json:"key"`
			N   int    `json:"n"`
		}
		_ = json.Unmarshal(e.Data, &data)
		s.got = append(s.got, delivered{ID: e.ID.String(), Topic: e.Topic, Key: e.Key, N: data.N, At: time.Now()})
	}
	return err
}

// delivered returns a copy of what the sink took.
func (s *recordingSink) delivered() []delivered {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// attempts returns the start times of the attempts to deliver event id.
func (s *recordingSink) attempts(id string) []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.tries[id])
}

func (s *recordingSink) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// distinct returns how many different events the sink took.
func (s *recordingSink) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := make(map[string]bool, len(s.got))
	for _, d := range s.got {
		seen[d.ID] = true
	}
	return len(seen)
}

// startRelay runs a relay until the test ends (or stop is called) and
// fails the test if Run returns an error.
func startRelay(t testing.TB, pool *pgxpool.Pool, sink Sink, cfg *Config) (r *Relay, stop func()) {
	t.Helper()
	if cfg == nil {
		cfg = &Config{}
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	r, err := New(pool, sink, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return r, stop
}

// testLogger logs warnings and errors through t, so they show with the test
// that caused them.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

var _ io.Writer = tWriter{}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// count returns the number of outbox rows matching where.
func count(t testing.TB, pool *pgxpool.Pool, where string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM txoutbox_events WHERE "+where, args...).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", where, err)
	}
	return n
}

// checkOrder fails the test unless every key's events arrived with n
// strictly increasing.
func checkOrder(t testing.TB, got []delivered) {
	t.Helper()
	last := make(map[string]int)
	for _, d := range got {
		if prev, ok := last[d.Key]; ok && d.N <= prev {
			t.Fatalf("key %s: event %d arrived after %d", d.Key, d.N, prev)
		}
		last[d.Key] = d.N
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
