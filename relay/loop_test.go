package relay

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
)

// TestWakeDuringBackoff commits events and wakes the relay after each, as a
// busy application does, while the sink is down: the wakes do not cut the
// loop's backoff short, so the sink is not asked again for every new key.
func TestWakeDuringBackoff(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	insertEvents(t, pool, cycleKeys(10, 10)...)
	sink := &recordingSink{FailFunc: func(context.Context, int, []*outbox.Event) error { return errors.New("connection refused") }}
	// The first backoff is at least RetryBase/2 = 2s.
	r, stop := startRelay(t, pool, sink, &Config{RetryBase: 4 * time.Second, RetryMax: 8 * time.Second})
	waitFor(t, 10*time.Second, "the first attempt", func() bool { return sink.callCount() > 0 })
	for i := range 50 {
		insertEvents(t, pool, fmt.Sprintf("new%d", i)) // a key that has not failed yet
		r.Wake()
		time.Sleep(2 * time.Millisecond)
	}
	stop()
	if n := sink.callCount(); n > 2 {
		t.Errorf("the sink was called %d times during the first backoff, want at most 2", n)
	}
}

// TestLoopSchedule checks the loop's wait after each kind of round, on a
// fake clock: at once while a backlog drains, 1ms doubling to PollInterval
// while idle, the database's backoff up to 5s, and the sink's up to 4s or
// its Retry-After. A wait is real: the bubble's clock advances by it.
func TestLoopSchedule(t *testing.T) {
	cfg := (&Config{BatchSize: 100, PollInterval: 50 * time.Millisecond, RetryBase: time.Second, RetryMax: time.Minute}).withDefaults()
	sinkErr := errors.New("connection refused")
	synctest.Test(t, func(t *testing.T) {
		st := newLoopState()
		wait := func(res stepResult) time.Duration {
			d := st.next(cfg, res)
			start := time.Now()
			time.Sleep(d)
			return time.Since(start)
		}
		if d := wait(stepResult{read: 100}); d != 0 {
			t.Errorf("after a full batch: %s, want 0", d)
		}
		for i, want := range []time.Duration{time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond} {
			if d := wait(stepResult{}); d != want {
				t.Errorf("idle round %d: %s, want %s", i+1, d, want)
			}
		}
		for range 10 {
			wait(stepResult{})
		}
		if d := wait(stepResult{}); d != cfg.PollInterval {
			t.Errorf("long idle: %s, want PollInterval %s", d, cfg.PollInterval)
		}
		// Sink down: RetryBase doubling, half to all of it, capped at 4s.
		for i, limit := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second} {
			if d := wait(stepResult{sinkErr: sinkErr}); d < limit/2 || d > limit {
				t.Errorf("sink failure %d: %s, want between %s and %s", i+1, d, limit/2, limit)
			}
		}
		if d := wait(stepResult{sinkErr: sinkErr, retryIn: 30 * time.Second}); d != 30*time.Second {
			t.Errorf("sink failure with Retry-After 30s: %s", d)
		}
		if d := wait(stepResult{read: 5, delivered: 5}); d != time.Millisecond {
			t.Errorf("after the sink recovered: %s, want 1ms", d)
		}
		for i, limit := range []time.Duration{dbRetryBase, 2 * dbRetryBase, 4 * dbRetryBase} {
			if d := wait(stepResult{dbErr: sinkErr}); d < limit/2 || d > limit {
				t.Errorf("database failure %d: %s, want between %s and %s", i+1, d, limit/2, limit)
			}
		}
	})
}

// TestLoopPlan checks when the round after each kind of round is due: a
// woken round that reads nothing keeps the schedule, rounds that read rows
// still go fast, and a round the WAL stream woke for partitions it found
// empty reads again once, walRecheck later.
func TestLoopPlan(t *testing.T) {
	cfg := (&Config{BatchSize: 100, PollInterval: 100 * time.Millisecond}).withDefaults()
	t0 := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	ms := time.Millisecond
	type round struct {
		name       string
		start, end time.Duration // since t0
		res        stepResult
		walParts   uint64
		want       time.Duration // since t0
	}
	for _, tc := range []struct {
		name   string
		rounds []round
	}{
		{"an early wake keeps the schedule", []round{
			{"idle", 0, ms, stepResult{}, 0, 2 * ms},
			{"woken, nothing read", ms + ms/2, 2 * ms, stepResult{}, 0, 2 * ms},
			{"scheduled, nothing read: the wait doubles as before", 2 * ms, 3 * ms, stepResult{}, 0, 5 * ms},
			{"woken again, nothing read", 4 * ms, 4*ms + ms/2, stepResult{}, 0, 5 * ms},
		}},
		{"a woken round with rows goes fast", []round{
			{"idle", 0, ms, stepResult{}, 0, 2 * ms},
			{"woken, rows read", ms + ms/2, 2 * ms, stepResult{read: 3, parts: 1}, 0, 3 * ms},
			{"woken, a full batch", 2 * ms, 5 * ms, stepResult{read: 100, parts: 1}, 0, 5 * ms},
			{"scheduled, nothing read: 1ms after a full batch", 5 * ms, 6 * ms, stepResult{}, 0, 7 * ms},
		}},
		{"a woken round that failed backs off", []round{
			{"idle", 0, ms, stepResult{}, 0, 2 * ms},
			{"woken, database down", ms + ms/2, 2 * ms, stepResult{dbErr: errors.New("connection refused")}, 0, -1},
		}},
		{"the WAL stream's wake is checked again once", []round{
			{"idle", 0, ms, stepResult{}, 0, 2 * ms},
			{"scheduled, long idle", 2 * ms, 3 * ms, stepResult{}, 0, 5 * ms},
			{"woken for partition 3, nothing read", 3 * ms, 3*ms + ms/4, stepResult{}, 1 << 3, 4*ms + ms/4},
			{"the recheck, nothing read", 4*ms + ms/4, 4*ms + ms/2, stepResult{}, 0, 5 * ms},
			{"woken for partition 3, rows of 5 read", 6 * ms, 7 * ms, stepResult{read: 2, parts: 1 << 5}, 1 << 3, 8 * ms},
			{"woken for partitions 3 and 5, rows of 5 read", 8 * ms, 8*ms + ms/2, stepResult{read: 1, parts: 1 << 5}, 1<<3 | 1<<5, 9*ms + ms/2},
			{"woken for partition 3 after the schedule, nothing read", 20 * ms, 21 * ms, stepResult{}, 1 << 3, 22 * ms},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newLoopState()
			for _, r := range tc.rounds {
				got := st.plan(cfg, r.res, at(r.start), at(r.end), r.walParts)
				if r.want < 0 {
					if lo := at(r.end).Add(dbRetryBase / 2); got.Before(lo) {
						t.Errorf("%s: next round at +%s, want the database's backoff, at least +%s", r.name, got.Sub(t0), lo.Sub(t0))
					}
					continue
				}
				if !got.Equal(at(r.want)) {
					t.Errorf("%s: next round at +%s, want +%s", r.name, got.Sub(t0), r.want)
				}
			}
		})
	}
}
