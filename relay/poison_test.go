package relay

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
)

// poisonSink rejects some events permanently while poisoned, and, as the
// HTTP sink does, holds back the later events of their keys in the same
// call.
type poisonSink struct {
	recordingSink
	poison   map[string]bool
	poisoned atomic.Bool
}

func newPoisonSink(poison ...string) *poisonSink {
	s := &poisonSink{poison: make(map[string]bool)}
	for _, id := range poison {
		s.poison[id] = true
	}
	s.poisoned.Store(true)
	s.FailFunc = func(_ context.Context, _ int, events []*outbox.Event) error {
		if !s.poisoned.Load() {
			return nil
		}
		failed := make(map[string]error)
		badKeys := make(map[string]bool)
		for _, m := range events {
			switch key := m.Key; {
			case s.poison[m.ID.String()]:
				failed[m.ID.String()] = Permanent(errors.New("422: amount_cents must be an integer"))
				badKeys[key] = true
			case badKeys[key]:
				failed[m.ID.String()] = errors.New("held back")
			}
		}
		if len(failed) == 0 {
			return nil
		}
		return &BatchError{Failed: failed}
	}
	return s
}

// poisonSetup inserts three events of key "bad", the first of them poison,
// between events of other keys.
func poisonSetup(t *testing.T) (pool *pgxpool.Pool, poison string) {
	t.Helper()
	pool = newTestDB(t)
	insertEvents(t, pool, cycleKeys(40, 4)...)
	insertEvents(t, pool, "bad", "bad", "bad")
	insertEvents(t, pool, cycleKeys(40, 4)...)
	var id uuid.UUID
	if err := pool.QueryRow(t.Context(), `SELECT id FROM txoutbox_events WHERE key = 'bad' ORDER BY seq LIMIT 1`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return pool, id.String()
}

func TestPoisonBlock(t *testing.T) {
	t.Parallel()
	pool, poison := poisonSetup(t)
	sink := newPoisonSink(poison)
	var mu sync.Mutex
	var dead []DeadEvent
	cfg := &Config{
		MaxAttempts: 3, RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		PollInterval: 20 * time.Millisecond, LeaseTTL: 900 * time.Millisecond,
		Hooks: Hooks{DeadFunc: func(d DeadEvent) { mu.Lock(); dead = append(dead, d); mu.Unlock() }},
	}
	r, _ := startRelay(t, pool, sink, cfg)
	waitFor(t, 10*time.Second, "the other keys", func() bool { return sink.distinct() == 80 })
	waitFor(t, 10*time.Second, "the poison to be dead", func() bool { return count(t, pool, "status = 'dead'") == 1 })
	// Let the relay poll a while longer: the key stays blocked.
	since := time.Now()
	waitFor(t, 10*time.Second, "more polls", func() bool { return r.LastPoll().After(since.Add(300 * time.Millisecond)) })
	if n := sink.distinct(); n != 80 {
		t.Fatalf("%d events delivered, want the 80 of other keys: a blocked key got through", n)
	}
	if n := count(t, pool, "key = 'bad' AND status = 'pending'"); n != 2 {
		t.Fatalf("%d events of the blocked key pending, want 2", n)
	}
	var attempts int
	var lastErr string
	if err := pool.QueryRow(t.Context(), `SELECT attempts, last_error FROM txoutbox_events WHERE id = $1`, poison).Scan(&attempts, &lastErr); err != nil {
		t.Fatal(err)
	}
	// A permanent failure is dead at once, whatever MaxAttempts says.
	if attempts != 1 || lastErr != "permanent: 422: amount_cents must be an integer" {
		t.Errorf("dead row: attempts %d, last_error %q", attempts, lastErr)
	}
	mu.Lock()
	if len(dead) != 1 || dead[0].ID.String() != poison || !dead[0].Blocking || dead[0].Key != "bad" || dead[0].Attempts != 1 {
		t.Errorf("DeadFunc got %+v", dead)
	}
	mu.Unlock()

	// Fixed: replay it. It is delivered first, then the events behind it.
	sink.poisoned.Store(false)
	n, err := Replay(t.Context(), pool, ReplayFilter{IDs: []uuid.UUID{uuid.MustParse(poison)}})
	if err != nil || n != 1 {
		t.Fatalf("Replay = %d, %v", n, err)
	}
	waitFor(t, 10*time.Second, "the replayed key", func() bool { return sink.distinct() == 83 })
	checkOrder(t, sink.delivered())
}

func TestPoisonSkip(t *testing.T) {
	t.Parallel()
	pool, poison := poisonSetup(t)
	sink := newPoisonSink(poison)
	cfg := &Config{
		MaxAttempts: 3, RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		PoisonPolicy: PoisonSkip, PollInterval: 20 * time.Millisecond, LeaseTTL: 900 * time.Millisecond,
	}
	startRelay(t, pool, sink, cfg)
	waitFor(t, 10*time.Second, "every event but the poison", func() bool { return sink.distinct() == 82 })
	if n := count(t, pool, "status = 'dead'"); n != 1 {
		t.Fatalf("%d dead rows, want 1", n)
	}
	var bad []int
	for _, d := range sink.delivered() {
		if d.Key == "bad" {
			bad = append(bad, d.N)
		}
	}
	if len(bad) != 2 || bad[0] != 42 || bad[1] != 43 {
		t.Errorf("key bad delivered %v, want [42 43]", bad)
	}

	sink.poisoned.Store(false)
	if n, err := Replay(t.Context(), pool, ReplayFilter{Key: "bad"}); err != nil || n != 1 {
		t.Fatalf("Replay = %d, %v", n, err)
	}
	waitFor(t, 10*time.Second, "the replayed event", func() bool { return sink.distinct() == 83 })
}

func TestReplayNeedsFilter(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	if _, err := Replay(t.Context(), pool, ReplayFilter{}); !errors.Is(err, ErrReplayNoFilter) {
		t.Errorf("Replay(no filter) = %v, want ErrReplayNoFilter", err)
	}
	if n, err := Replay(t.Context(), pool, ReplayFilter{All: true}); err != nil || n != 0 {
		t.Errorf("Replay(All) on no dead rows = %d, %v", n, err)
	}
}

func TestRetention(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	insertEvents(t, pool, cycleKeys(50, 5)...)
	sink := &recordingSink{}
	r, _ := startRelay(t, pool, sink, &Config{Retention: time.Hour, CleanupBatchSize: 7})
	waitFor(t, 10*time.Second, "all events", func() bool { return sink.distinct() == 50 })
	waitFor(t, 5*time.Second, "all rows marked delivered", func() bool {
		return count(t, pool, "status = 'delivered' AND delivered_at IS NOT NULL AND attempts = 1") == 50
	})

	// Age 30 rows past the retention: the cleanup removes those, at most
	// CleanupBatchSize per statement, and keeps the rest.
	if _, err := pool.Exec(t.Context(), `UPDATE txoutbox_events SET delivered_at = now() - interval '2 hours'
		WHERE seq IN (SELECT seq FROM txoutbox_events ORDER BY seq LIMIT 30)`); err != nil {
		t.Fatal(err)
	}
	tag, err := pool.Exec(t.Context(), r.q.cleanup, r.cfg.Retention.Microseconds(), r.cfg.CleanupBatchSize)
	if err != nil || tag.RowsAffected() != 7 {
		t.Fatalf("one cleanup statement removed %d rows (%v), want 7", tag.RowsAffected(), err)
	}
	if n, err := r.cleanup(t.Context()); err != nil || n != 23 {
		t.Fatalf("cleanup = %d, %v; want 23", n, err)
	}
	if n := count(t, pool, "true"); n != 20 {
		t.Errorf("%d rows left, want the 20 within retention", n)
	}
}

// TestRetryableDeadAfterMaxAttempts: an event the sink keeps failing
// retryably, while it delivers the others, is tried MaxAttempts times with
// backoff and then dead-lettered; the other events, committed all along, are
// not held up.
func TestRetryableDeadAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	pool, poison := poisonSetup(t)
	sink := &recordingSink{FailFunc: func(_ context.Context, _ int, events []*outbox.Event) error {
		for _, e := range events {
			if e.ID.String() == poison {
				return &BatchError{Failed: map[string]error{poison: errors.New("500: internal error")}}
			}
		}
		return nil
	}}
	cfg := &Config{MaxAttempts: 3, RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond, PoisonPolicy: PoisonSkip}
	startRelay(t, pool, sink, cfg)
	committed := 83
	waitFor(t, 20*time.Second, "the poison to be dead", func() bool {
		insertEvents(t, pool, "other") // traffic goes on meanwhile
		committed++
		return count(t, pool, "status = 'dead'") == 1
	})
	waitFor(t, 10*time.Second, "every other event", func() bool { return sink.distinct() == committed-1 })
	var attempts int
	if err := pool.QueryRow(t.Context(), `SELECT attempts FROM txoutbox_events WHERE id = $1`, poison).Scan(&attempts); err != nil {
		t.Fatal(err)
	}
	if tries := len(sink.attempts(poison)); attempts != 3 || tries < 3 {
		t.Errorf("dead after %d attempts recorded, %d tries, want 3 attempts", attempts, tries)
	}
}
