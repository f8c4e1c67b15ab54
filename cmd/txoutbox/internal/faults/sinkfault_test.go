package faults

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relayhttp"
)

// Backoff settings of the relay in TestFaultSink, from which the request
// bounds follow.
//
// sinkTimeout must stay well above what a healthy request can take on a
// loaded machine: a request the events API stores after the relay gave up on
// it is delivered again, a duplicate the contract allows (a sink that fails a
// call it carried out), which the hang case would count as a violation. At
// 300 ms, go test -race ./... on 2 cores produced such a batch.
const (
	sinkRetryBase = 50 * time.Millisecond
	sinkRetryMax  = 400 * time.Millisecond
	sinkTimeout   = 1500 * time.Millisecond
)

// TestFaultSink makes the events API fail in each way for a window while
// writers publish, then heal. Nothing may be lost, and the relay may not
// hammer the failing API: the failed requests in the window are bounded by
// the window over the least wait the relay's settings allow between two of
// them, plus the requests the relay had reason to count as delivered.
//
// The least wait: after a round in which the sink failed everything, the
// relay waits at least half its backoff, RetryBase/2; after a 429 at least
// its Retry-After; a request that hangs takes the sink's Timeout first.
// closeMidResponse doubles the bound: Go's HTTP transport sends a request
// with an Idempotency-Key once more on a fresh connection when a reused
// one breaks before the answer.
//
// In ModeMessages the stream waits while the sink fails everything, and the
// events of a request that failed while others got through go into the
// table, where the table's loop retries them. The two senders share a
// Retry-After: whichever received it, both wait for it.
func TestFaultSink(t *testing.T) {
	t.Parallel()
	forEachMode(t, testSink)
}

func testSink(t *testing.T, mode relay.Mode) {
	window := pick(2*time.Second, 20*time.Second)
	for _, tc := range []struct {
		mode   faultMode
		format relayhttp.Format
		minGap time.Duration
		factor int
		dups   bool // the fault loses answers of stored events
	}{
		{answer500, relayhttp.FormatCloudEvents, sinkRetryBase / 2, 1, false},
		{answer429, relayhttp.FormatBriteEvents, retryAfter, 1, false},
		{hang, relayhttp.FormatCloudEvents, sinkTimeout + sinkRetryBase/2, 1, false},
		{closeMidResponse, relayhttp.FormatBriteEvents, sinkRetryBase / 2, 2, true},
		{malformed, relayhttp.FormatBriteEvents, sinkRetryBase / 2, 1, true},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, pgtest.NewDB(t), 24, mode)
			s := newSink(t)
			logs := newLogRecorder()
			e.runRelay(t, s.url("relay"), tc.format, sinkTimeout, relay.Config{
				BatchSize: 100,
				RetryBase: sinkRetryBase,
				RetryMax:  sinkRetryMax,
				Logger:    slog.New(logs),
			})
			w := e.startWriters(t, writerConfig{n: 3, pace: 5 * time.Millisecond, ownKeys: true})

			// The window opens once the relay delivers: a WAL stream
			// may take a moment to open on a loaded machine.
			waitUntil(t, 30*time.Second, func() string { return "a first event to arrive\n" + logs.String() },
				func() bool { return s.distinct() > 0 })
			before := s.distinct()
			s.setMode(tc.mode)
			start := time.Now()
			time.Sleep(window)
			s.setMode(healthy)
			took := time.Since(start)
			failures, successes := s.windowCounts()
			time.Sleep(500 * time.Millisecond)
			w.halt()

			pub := e.waitDelivered(t, s, time.Minute, logs.String)
			sum := check(t, e.name("sink-"+tc.mode.String()), pub, w.led, s, checkOptions{sameSenderDuplicates: tc.dups})
			if !tc.dups && sum.duplicates > 0 {
				t.Errorf("%d duplicates from a fault that stores nothing", sum.duplicates)
			}
			if n := w.led.errorCount(); n != 0 {
				t.Errorf("writers saw %d errors (last: %v); the sink's faults are not theirs", n, w.led.lastErr)
			}
			bound := tc.factor * (int(took/tc.minGap) + 2 + successes)
			if failures == 0 || before == 0 {
				t.Errorf("the fault was never exercised: %d events before it, %d failed requests in it", before, failures)
			}
			if failures > bound {
				t.Errorf("%d failed requests in %s, more than the %d the backoff allows: the relay hot-loops", failures, took.Round(time.Millisecond), bound)
			}
			sum.extra = append(sum.extra, fmt.Sprintf("window=%s failed_requests=%d bound=%d", took.Round(100*time.Millisecond), failures, bound))
			t.Log(sum)
		})
	}
}
