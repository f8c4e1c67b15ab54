package relay

import (
	"context"
	"errors"
	"fmt"
	"testing"
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
