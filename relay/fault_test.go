package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
)

// runUntil runs r until ctx is cancelled and returns Run's result on the
// channel.
func runUntil(ctx context.Context, r *Relay) <-chan error {
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return done
}

// TestCancelMidBatch cancels a relay while the sink holds a batch. Within
// ShutdownTimeout the batch is finished and recorded; past it the batch is
// left pending. Either way a second relay delivers everything else, and
// nothing is lost.
func TestCancelMidBatch(t *testing.T) {
	t.Parallel()
	for _, finish := range []bool{true, false} {
		t.Run(fmt.Sprintf("finish=%v", finish), func(t *testing.T) {
			t.Parallel()
			pool := newTestDB(t)
			insertEvents(t, pool, cycleKeys(500, 20)...)

			entered, release := make(chan struct{}), make(chan struct{})
			first := &recordingSink{FailFunc: func(ctx context.Context, call int, events []*outbox.Event) error {
				if call > 1 {
					return errors.New("not expected: the relay was stopped")
				}
				close(entered)
				if finish {
					<-release
					return nil
				}
				<-ctx.Done() // the shutdown timeout ran out
				return ctx.Err()
			}}
			timeout := 5 * time.Second
			if !finish {
				timeout = 100 * time.Millisecond
			}
			r, err := New(pool, first, &Config{BatchSize: 100, ShutdownTimeout: timeout, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := runUntil(ctx, r)
			<-entered
			cancel()
			close(release)
			if err := <-done; err != nil {
				t.Fatalf("Run = %v", err)
			}
			var want int
			if finish {
				want = 100
			}
			if n := first.distinct(); n != want {
				t.Fatalf("first relay delivered %d events, want %d", n, want)
			}
			if n := count(t, pool, "true"); n != 500-want {
				t.Fatalf("%d rows left, want %d", n, 500-want)
			}
			if n := count(t, pool, "attempts > 0"); n != 0 {
				t.Errorf("%d rows left with an attempt recorded", n)
			}

			second := &recordingSink{}
			startRelay(t, pool, second, &Config{BatchSize: 100})
			waitFor(t, 10*time.Second, "the rest", func() bool { return second.distinct() == 500-want })
			all := append(first.delivered(), second.delivered()...)
			checkOrder(t, all)
			if len(all) != 500 {
				t.Errorf("%d deliveries of 500 events", len(all))
			}
		})
	}
}

// TestTakeOverExpiredLease leaves every partition leased to a relay that
// died without releasing them. A live relay takes them over when the leases
// expire, and delivers.
func TestTakeOverExpiredLease(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	if _, err := pool.Exec(t.Context(), `
		INSERT INTO txoutbox_relays (id, heartbeat_at) VALUES ('dead', now());
		UPDATE txoutbox_partitions SET owner = 'dead', lease_until = now() + interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	insertEvents(t, pool, cycleKeys(300, 30)...)
	sink := &recordingSink{}
	r, _ := startRelay(t, pool, sink, &Config{LeaseTTL: 600 * time.Millisecond})
	waitFor(t, 10*time.Second, "all events", func() bool { return sink.distinct() == 300 })
	checkOrder(t, sink.delivered())
	if held := r.leases.held(); len(held) != partitions {
		t.Errorf("relay holds %d partitions, want all %d", len(held), partitions)
	}
}

// TestRebalance starts a second relay next to a first: they split the
// partitions. When one stops, the other takes them all back.
func TestRebalance(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	cfg := func() *Config { return &Config{LeaseTTL: 600 * time.Millisecond} }
	a, _ := startRelay(t, pool, &recordingSink{}, cfg())
	waitFor(t, 5*time.Second, "a to hold every partition", func() bool { return len(a.leases.held()) == partitions })
	b, stopB := startRelay(t, pool, &recordingSink{}, cfg())
	waitFor(t, 10*time.Second, "an even split", func() bool {
		return len(a.leases.held()) == partitions/2 && len(b.leases.held()) == partitions/2
	})
	if both := slices.Concat(a.leases.held(), b.leases.held()); len(slices.Compact(slices.Sorted(slices.Values(both)))) != partitions {
		t.Fatalf("partitions held twice: a %v, b %v", a.leases.held(), b.leases.held())
	}
	stopB()
	if n := countOwned(t, pool, b.ID()); n != 0 {
		t.Errorf("stopped relay still owns %d partitions", n)
	}
	waitFor(t, 10*time.Second, "a to take everything back", func() bool { return len(a.leases.held()) == partitions })
}

func countOwned(t *testing.T, pool *pgxpool.Pool, owner string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM txoutbox_partitions WHERE owner = $1`, owner).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestSinkOutage has the sink fail its first calls, whole (an outage) and
// then with a Retry-After, before it recovers. Nothing is lost, the loop
// waits between whole failures instead of trying key after key, and an
// event is never tried again before its Retry-After.
func TestSinkOutage(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	insertEvents(t, pool, cycleKeys(200, 20)...)
	const retryAfter = 80 * time.Millisecond
	type call struct {
		start, end time.Time
		ids        []string
		err        error
	}
	var calls []call // written by the relay's loop only, read after it stops
	sink := &recordingSink{FailFunc: func(_ context.Context, n int, events []*outbox.Event) error {
		c := call{start: time.Now()}
		switch {
		case n <= 4:
			c.err = errors.New("connection refused")
		case n <= 6:
			c.err = RetryAfter(errors.New("503 service unavailable"), retryAfter)
		}
		for _, m := range events {
			c.ids = append(c.ids, m.ID.String())
		}
		c.end = time.Now()
		calls = append(calls, c)
		return c.err
	}}
	cfg := &Config{BatchSize: 50, RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}
	_, stop := startRelay(t, pool, sink, cfg)
	waitFor(t, 20*time.Second, "all events", func() bool { return sink.distinct() == 200 })
	stop()

	checkOrder(t, sink.delivered())
	if len(sink.delivered()) != 200 {
		t.Errorf("%d deliveries of 200 events", len(sink.delivered()))
	}
	for i := 1; i < len(calls); i++ {
		// After a round in which everything failed, the loop waits at least
		// half its backoff, RetryBase/2, before it asks the sink again.
		if gap := calls[i].start.Sub(calls[i-1].end); calls[i-1].err != nil && gap < cfg.RetryBase/2 {
			t.Errorf("call %d started %s after failed call %d: the loop did not back off", i+1, gap, i)
		}
	}
	for i, c := range calls {
		if _, ok := RetryAfterOf(c.err); !ok {
			continue
		}
		for _, id := range c.ids {
			tries := sink.attempts(id)
			at := slices.IndexFunc(tries, func(tm time.Time) bool { return tm.Equal(c.start) || tm.After(c.start) })
			if at+1 < len(tries) && tries[at+1].Sub(c.end) < retryAfter {
				t.Errorf("event %s failed in call %d with Retry-After %s, tried again %s later", id, i+1, retryAfter, tries[at+1].Sub(c.end))
			}
		}
	}
	for _, d := range sink.delivered() {
		if tries := sink.attempts(d.ID); len(tries) > 7 {
			t.Errorf("event %s tried %d times for 6 failed calls", d.ID, len(tries))
		}
	}
	if n := count(t, pool, "true"); n != 0 {
		t.Errorf("%d rows left", n)
	}
}

// TestPostgresRestart stops the database under a running relay and starts
// it again: the relay rides it out and delivers what is committed after.
func TestPostgresRestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c, pool := restartableDB(t)

	insertEvents(t, pool, cycleKeys(10, 5)...)
	sink := &recordingSink{}
	r, _ := startRelay(t, pool, sink, &Config{LeaseTTL: 3 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	waitFor(t, 10*time.Second, "the first events", func() bool { return sink.distinct() == 10 })
	// Stopping the server before the outcome is recorded would redeliver
	// them, which at-least-once allows but this test does not count on.
	waitFor(t, 10*time.Second, "the first events recorded", func() bool { return count(t, pool, "true") == 0 })

	if err := c.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	before := r.LastPoll()
	waitFor(t, 10*time.Second, "the loop to go on while the database is down", func() bool {
		return r.LastPoll().After(before.Add(200 * time.Millisecond))
	})
	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "a connection", func() bool {
		_, err := pool.Exec(ctx, insertSQL, cycleKeys(10, 5))
		return err == nil
	})
	waitFor(t, 20*time.Second, "the events committed after the restart", func() bool { return sink.distinct() == 20 })
	checkOrder(t, sink.delivered())
}

// restartableDB starts a cluster of the test's own, which it may stop and
// restart, and returns it with a pool on a migrated database.
func restartableDB(t *testing.T) (*pgtest.Cluster, *pgxpool.Pool) {
	t.Helper()
	c, err := pgtest.Start(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	url, err := c.CreateDB(t.Context(), "restart")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	migrate(t, pool)
	return c, pool
}

// TestLongTransactionInOtherDatabase holds a write transaction open in
// another database of the same cluster, which holds back the cluster's xmin
// (the fence watermill-sql's default schema reads behind). Events committed
// meanwhile are delivered while it is still open.
func TestLongTransactionInOtherDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := newTestDB(t)
	other, err := pgx.Connect(ctx, pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // ends the long transaction
	// The transaction writes, so it has an xid that holds back the xmin.
	if _, err := tx.Exec(ctx, `CREATE TABLE busy (id int)`); err != nil {
		t.Fatal(err)
	}
	var xid string
	if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text`).Scan(&xid); err != nil {
		t.Fatal(err)
	}
	openUntil := time.Now().Add(10 * time.Second)

	insertEvents(t, pool, cycleKeys(100, 10)...)
	var fenced bool
	if err := pool.QueryRow(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot()) <= $1::text::xid8`, xid).Scan(&fenced); err != nil {
		t.Fatal(err)
	}
	if !fenced {
		t.Fatal("the open transaction does not hold back the xmin: the test proves nothing")
	}

	sink := &recordingSink{}
	startRelay(t, pool, sink, nil)
	waitFor(t, time.Until(openUntil), "delivery while the other transaction is open", func() bool { return sink.distinct() == 100 })
	var open bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_xid::text = $1)`, xid).Scan(&open); err != nil {
		t.Fatal(err)
	}
	if !open {
		t.Fatal("the other transaction ended before delivery")
	}
}

// TestLateCommit commits a row after rows inserted later than it have been
// delivered, while the relay drains a backlog in full batches (reading each
// batch while the last is recorded). The late row is delivered all the same:
// the relay keeps no offset that could skip it.
func TestLateCommit(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	late, err := pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback(context.Background()) //nolint:errcheck // no-op after Commit
	insertEvents(t, late, "late")             // the lowest seq, not yet visible
	insertEvents(t, pool, cycleKeys(1000, 50)...)
	sink := &recordingSink{}
	startRelay(t, pool, sink, &Config{BatchSize: 100})
	waitFor(t, 10*time.Second, "the committed backlog", func() bool { return sink.distinct() == 1000 })
	if err := late.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	insertEvents(t, pool, cycleKeys(1000, 50)...)
	waitFor(t, 10*time.Second, "the late row and the rest", func() bool { return sink.distinct() == 2001 })
	checkOrder(t, sink.delivered())
}

// TestShutdownRecordsAccepted: when the shutdown timeout runs out while a
// slow sink is part way through a batch, what the sink accepted is recorded
// (so the next relay does not send it again), the rest stays pending, and a
// warning says how many were left in flight.
func TestShutdownRecordsAccepted(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	insertEvents(t, pool, cycleKeys(100, 100)...)
	started := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	accepted := 0
	sink := SinkFunc(func(ctx context.Context, events []*outbox.Event) error {
		once.Do(func() { close(started) })
		o := NewOutcome(events)
		for i, ev := range events {
			if err := SendCut(ctx); err != nil {
				o.NotSent(events[i:], err)
				break
			}
			time.Sleep(10 * time.Millisecond) // one slow request per event
			mu.Lock()
			accepted++
			mu.Unlock()
			_ = ev
		}
		return o.Err()
	})
	var logs syncBuffer
	r, err := New(pool, sink, &Config{ShutdownTimeout: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	<-started
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if accepted == 0 || accepted == 100 {
		t.Fatalf("the sink accepted %d of 100 events before the shutdown timeout; the test proves nothing", accepted)
	}
	if left := count(t, pool, "true"); left != 100-accepted {
		t.Errorf("%d events left pending, want the %d the sink did not accept", left, 100-accepted)
	}
	if !strings.Contains(logs.String(), "left_in_flight="+fmt.Sprint(100-accepted)) {
		t.Errorf("logs = %q, want a warning with left_in_flight=%d", logs.String(), 100-accepted)
	}
}
