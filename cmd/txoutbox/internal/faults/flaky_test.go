package faults

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relayhttp"
)

// joinLease is the lease of TestFaultFlakyAPIJoinsLeaves: short, so that
// partitions change hands quickly, but long enough that a relay under the
// whole suite's load on two cores renews in time. A duplicate there should
// come from a hand-over between relays, not from a lease the machine let
// expire.
const joinLease = time.Second

// flakyBatch is the relays' batch size in the flaky tests.
const flakyBatch = 50

// flakyWindow is the fault window of the flaky tests: what the test saw
// while the events API failed at random.
type flakyWindow struct {
	began, healed time.Time
	before        int64 // requests the proxy got before the window
	requests      int64 // requests the proxy got in the window
	failures      int   // of those, failed on purpose
	failed500     int
	failed429     int
}

// start opens the window: from now on the proxy fails requests at random.
func (fw *flakyWindow) start(s *sink) {
	fw.before = s.requests.Load()
	s.setMode(flaky)
	fw.began = time.Now()
}

// heal ends the window and counts its requests.
func (fw *flakyWindow) heal(s *sink) {
	s.setMode(healthy)
	fw.healed = time.Now()
	fw.requests = s.requests.Load() - fw.before
	fw.failures, _ = s.windowCounts()
	fw.failed500 = s.windowStatus(http.StatusInternalServerError)
	fw.failed429 = s.windowStatus(http.StatusTooManyRequests)
}

// exercised reports whether the window failed some requests and let
// others through.
func (fw *flakyWindow) exercised() bool {
	return fw.failures > 0 && int64(fw.failures) < fw.requests
}

// extra returns the window's fields of the summary line. drain is from the
// end of the window to the last first arrival of an event.
func (fw *flakyWindow) extra(s *sink) string {
	var last time.Time
	seen := map[string]bool{}
	for _, a := range s.snapshot() {
		if !seen[a.id] {
			seen[a.id] = true
			if a.at.After(last) {
				last = a.at
			}
		}
	}
	drain := max(last.Sub(fw.healed), 0)
	return fmt.Sprintf("window=%s requests=%d failed_requests=%d failed_500=%d failed_429=%d drain=%s",
		fw.healed.Sub(fw.began).Round(100*time.Millisecond), fw.requests, fw.failures, fw.failed500, fw.failed429,
		drain.Round(10*time.Millisecond))
}

// flakyRelayConfig is the relay config of the flaky tests.
func flakyRelayConfig(logs *logRecorder) relay.Config {
	return relay.Config{
		BatchSize:       flakyBatch,
		LeaseTTL:        joinLease,
		RetryBase:       sinkRetryBase,
		RetryMax:        sinkRetryMax,
		ShutdownTimeout: 5 * time.Second,
		Logger:          slog.New(logs),
	}
}

// TestFaultFlakyAPI makes the events API fail a random share of the
// requests while writers publish: 10% answered 500, 5% answered 429 with
// Retry-After: 1, none of them stored. Every transaction is a job of its
// own, so the relay posts to bc-events one event per request, and a batch
// meets a failure every few requests. Then the API heals and the relay
// drains what piled up. Nothing may be lost or reordered, and since the
// failures store nothing, nothing may arrive twice.
func TestFaultFlakyAPI(t *testing.T) {
	t.Parallel()
	window := pick(3*time.Second, time.Minute)
	e := newEnv(t, pgtest.NewDB(t), 24, relay.ModePoll)
	s := newSink(t)
	logs := newLogRecorder()
	e.runRelay(t, s.url("relay"), relayhttp.FormatBriteEvents, sinkTimeout, flakyRelayConfig(logs))
	w := e.startWriters(t, writerConfig{n: 3, pace: 5 * time.Millisecond})
	waitUntil(t, 30*time.Second, func() string { return "a first event to arrive\n" + logs.String() },
		func() bool { return s.distinct() > 0 })

	var fw flakyWindow
	fw.start(s)
	time.Sleep(window)
	w.halt()
	fw.heal(s)

	pub := e.waitDelivered(t, s, pick(time.Minute, 3*time.Minute), logs.String)
	sum := check(t, "flaky-api", pub, w.led, s, checkOptions{noDuplicates: true})
	if n := w.led.errorCount(); n != 0 {
		t.Errorf("writers saw %d errors (last: %v); the sink's faults are not theirs", n, w.led.lastErr)
	}
	if !fw.exercised() {
		t.Errorf("the fault was not exercised: of %d requests in the window, %d failed", fw.requests, fw.failures)
	}
	sum.extra = append(sum.extra, fw.extra(s))
	t.Log(sum)
}

// TestFaultFlakyAPIJoinsLeaves makes the events API fail at random as
// TestFaultFlakyAPI does, while relays join and leave: one relay runs
// throughout, and others start and stop gracefully (their context
// cancelled) again and again, each time moving partitions between relays.
// A graceful relay finishes its batch in flight before it gives its
// partitions back, and a relay gives partitions to a newcomer only between
// two batches, so no event may arrive twice: duplicates per join or leave
// must be 0.
func TestFaultFlakyAPIJoinsLeaves(t *testing.T) {
	t.Parallel()
	window := pick(6*time.Second, time.Minute)
	moves := pick(8, 40) // joins and leaves in all, about half each
	const maxGuests = 2
	e := newEnv(t, pgtest.NewDB(t), 64, relay.ModePoll)
	s := newSink(t)
	logs := newLogRecorder()
	cfg := flakyRelayConfig(logs)
	// Every relay has the same sink config; the proxy tells them apart by
	// the "from" parameter of the URL.
	started := 0
	start := func() (id string, stop func() error) {
		id = fmt.Sprintf("relay-%02d", started)
		started++
		c := cfg
		c.ID = id
		_, stop = e.runRelay(t, s.url(id), relayhttp.FormatBriteEvents, sinkTimeout, c)
		return id, stop
	}
	anchorID, stopAnchor := start()
	w := e.startWriters(t, writerConfig{n: 4, pace: 2 * time.Millisecond})
	waitUntil(t, 30*time.Second, func() string { return "a first event to arrive\n" + logs.String() },
		func() bool { return s.distinct() > 0 })

	type guest struct {
		id   string
		stop func() error
	}
	var guests []guest
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 13))
	var fw flakyWindow
	fw.start(s)
	gap := window / time.Duration(moves+1)
	joins, leaves := 0, 0
	var moveLog []string
	for i := range moves {
		// Each move at its slot of the window, give or take a quarter gap.
		at := fw.began.Add(time.Duration(i+1)*gap + time.Duration(rng.Int64N(int64(gap/2))) - gap/4)
		time.Sleep(time.Until(at))
		join := len(guests) == 0 || len(guests) < maxGuests && rng.IntN(2) == 0
		if join {
			id, stop := start()
			guests = append(guests, guest{id, stop})
			joins++
			moveLog = append(moveLog, "+"+id)
			continue
		}
		k := rng.IntN(len(guests))
		g := guests[k]
		guests = append(guests[:k], guests[k+1:]...)
		if err := g.stop(); err != nil {
			t.Errorf("relay %s stopped with %v", g.id, err)
		}
		leaves++
		moveLog = append(moveLog, "-"+g.id)
	}
	time.Sleep(time.Until(fw.began.Add(window)))
	w.halt()
	fw.heal(s)

	pub := e.waitDelivered(t, s, pick(time.Minute, 3*time.Minute), logs.String)
	for _, g := range guests {
		if err := g.stop(); err != nil {
			t.Errorf("relay %s stopped with %v", g.id, err)
		}
	}
	if err := stopAnchor(); err != nil {
		t.Errorf("relay %s stopped with %v", anchorID, err)
	}

	sum := check(t, "flaky-api-joins-leaves", pub, w.led, s, checkOptions{})
	lost, lostParts := logs.lostLeases()
	if dups := duplicatesOf(s.snapshot()); len(dups) > 0 {
		t.Errorf("%d duplicates from graceful joins and leaves (%s); partitions a relay lost its lease on: %v\n%s\nrelay warnings:\n%s",
			len(dups), strings.Join(moveLog, " "), lostParts, describeDuplicates(s.snapshot(), 20), logs.String())
	}
	if n := w.led.errorCount(); n != 0 {
		t.Errorf("writers saw %d errors (last: %v); the sink's faults are not theirs", n, w.led.lastErr)
	}
	senders := map[string]bool{}
	for _, a := range s.snapshot() {
		senders[a.from] = true
	}
	if !senders[anchorID] || len(senders) < 2 {
		t.Errorf("only %d of %d relays delivered anything: the partitions did not move", len(senders), started)
	}
	if !fw.exercised() {
		t.Errorf("the fault was not exercised: of %d requests in the window, %d failed", fw.requests, fw.failures)
	}
	sum.extra = append(sum.extra, fmt.Sprintf("joins=%d leaves=%d duplicates_per_join_leave=%.2f relays_started=%d relays_delivering=%d lease=%s leases_lost_in_process=%d",
		joins, leaves, float64(sum.duplicates)/float64(max(joins+leaves, 1)), started, len(senders), joinLease, lost), fw.extra(s))
	t.Logf("moves: %s", strings.Join(moveLog, " "))
	t.Log(sum)
}

// describeDuplicates lists up to n events delivered more than once: which
// relay delivered each first and which again, how long after, and the key's
// partition.
func describeDuplicates(arr []arrival, n int) string {
	first := map[string]arrival{}
	var lines []string
	for _, a := range arr {
		f, dup := first[a.id]
		if !dup {
			first[a.id] = a
			continue
		}
		if len(lines) < n {
			lines = append(lines, fmt.Sprintf("  %s/%d (partition %d): first by %s, again by %s %s later",
				a.key, a.seq, partition(a.key), f.from, a.from, a.at.Sub(f.at).Round(time.Millisecond)))
		}
	}
	return strings.Join(lines, "\n")
}
