package relayhttp

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relaytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Wrap(m)) }

// newTestDB returns a pool on a fresh database with the outbox tables.
func newTestDB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool := pgtest.NewPool(t)
	if err := outbox.Migrate(context.Background(), pool, nil); err != nil {
		t.Fatal(err)
	}
	return pool
}

// startRelay runs a relay on sink until the test ends (or stop is called),
// logging its warnings through t.
func startRelay(t testing.TB, pool *pgxpool.Pool, sink relay.Sink, cfg *relay.Config) (*relay.Relay, func()) {
	t.Helper()
	c := relay.Config{}
	if cfg != nil {
		c = *cfg
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return relaytest.Start(t, pool, sink, &c)
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

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
func count(t testing.TB, pool *pgxpool.Pool, where string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM txoutbox_events WHERE "+where).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", where, err)
	}
	return n
}

// insertEvents inserts one event per key, in order, the i-th on topic
// billing.Invoice{actions[i % len(actions)]} (Created when none), with data
// {"key": key, "n": i} and job id job(i).
func insertEvents(t testing.TB, pool *pgxpool.Pool, job func(i int) string, keys []string, actions ...string) {
	t.Helper()
	if len(actions) == 0 {
		actions = []string{"Created"}
	}
	jobs := make([]string, len(keys))
	acts := make([]string, len(keys))
	for i := range keys {
		jobs[i], acts[i] = job(i), actions[i%len(actions)]
	}
	_, err := pool.Exec(context.Background(), `INSERT INTO txoutbox_events
		(id, topic, category, entity, action, data, actor_id, actor_type, job_id, source, key, published_at)
		SELECT gen_random_uuid(), 'billing.Invoice' || a, 'billing', 'Invoice', a,
			json_build_object('key', k, 'n', i - 1), 'user-1', 'user', j, 'test', k, now()
		FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(k, j, a, i) ORDER BY i`,
		keys, jobs, acts)
	if err != nil {
		t.Fatalf("insert events: %v", err)
	}
}

// sameJob and ownJob are job ids for insertEvents: one for all events, or
// one each (so the bc-events format posts them one by one).
func sameJob(int) string  { return "job-1" }
func ownJob(i int) string { return fmt.Sprintf("job-%d", i) }

// cycleKeys returns n keys cycling through k distinct ones.
func cycleKeys(n, k int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i%k)
	}
	return keys
}

// delivered is one event as the API got it.
type delivered struct {
	ID  string
	Key string
	N   int
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
