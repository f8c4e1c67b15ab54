package faults

import (
	"fmt"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relayhttp"
)

// TestFaultPostgresRestart stops and starts the PostgreSQL server under a
// relay and writers, several times. Writers get errors for the transactions
// the outage broke, and only for those: every transaction that reported a
// successful commit is delivered, none that failed before COMMIT is, and a
// failed COMMIT may go either way. The relay reconnects by itself and
// catches up; it delivers a batch again only when the outage cut off its
// record of the outcome, at most one batch per broken pool connection.
//
// In the WAL modes the restart also breaks the relay's stream: ModeWAL
// polls until it has opened a new temporary slot, ModeMessages goes on
// from its durable slot's confirmed position, which the restart keeps.
func TestFaultPostgresRestart(t *testing.T) {
	t.Parallel()
	forEachMode(t, testPostgresRestart)
}

func testPostgresRestart(t *testing.T, mode relay.Mode) {
	restarts := pick(3, 15)
	const batch = 100
	ctx := t.Context()
	c, err := pgtest.Start(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	url, err := c.CreateDB(ctx, "faults")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, url, 32, mode)
	s := newSink(t)
	logs := newLogRecorder()
	e.runRelay(t, s.url("relay"), relayhttp.FormatCloudEvents, 2*time.Second, relay.Config{
		BatchSize: batch,
		LeaseTTL:  2 * time.Second,
		RetryBase: 20 * time.Millisecond,
		RetryMax:  200 * time.Millisecond,
		Logger:    slog.New(logs),
	})
	w := e.startWriters(t, writerConfig{n: 4, pace: 2 * time.Millisecond})

	var down time.Duration
	for i := range restarts {
		time.Sleep(700 * time.Millisecond)
		began := time.Now()
		if i%2 == 1 {
			// A longer outage: stopped, then started a moment later.
			if err := c.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(500 * time.Millisecond)
		}
		if err := c.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		down += time.Since(began)
	}
	ackedAtLast := w.led.ackedCount()
	delivered := s.distinct()
	time.Sleep(time.Second)
	w.halt()
	if w.led.ackedCount() == ackedAtLast {
		t.Errorf("no writer committed anything after the last restart")
	}

	pub := e.waitDelivered(t, s, time.Minute, logs.String)
	if s.distinct() == delivered {
		t.Errorf("the relay delivered nothing after the last restart")
	}
	sum := check(t, e.name("postgres-restart"), pub, w.led, s, checkOptions{sameSenderDuplicates: true})
	maxConns := max(4, runtime.NumCPU()) // pgxpool's default pool size, the relay's
	limit := restarts * maxConns * batch
	if mode == relay.ModeMessages {
		// The stream's batch in flight per restart: the sink fails
		// nothing, so no event goes through the table and its pool.
		limit = restarts * batch
	}
	if sum.duplicates > limit {
		t.Errorf("%d duplicates, more than one batch per broken connection per restart (%d)", sum.duplicates, limit)
	}
	if w.led.errorCount() == 0 {
		t.Errorf("no writer saw an error: the restarts did not hit the writers")
	}
	w.led.mu.Lock()
	inDoubt, failed := len(w.led.inDoubt), w.led.failedTx
	w.led.mu.Unlock()
	sum.extra = append(sum.extra, fmt.Sprintf("restarts=%d down=%s writer_errors=%d commit_errors=%d",
		restarts, down.Round(100*time.Millisecond), failed+inDoubt, inDoubt))
	t.Log(sum)
}
