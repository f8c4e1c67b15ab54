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
