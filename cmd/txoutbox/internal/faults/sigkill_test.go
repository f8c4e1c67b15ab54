package faults

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/relay"
)

// killBatch is the relays' batch size in TestFaultRelaySIGKILL: a relay
// killed mid-batch leaves at most this many events delivered and not yet
// recorded, which its successor delivers again: they are among the last
// killBatch events the killed relay delivered.
const killBatch = 50

// relayArgs are the txoutbox relay flags of the fault tests, in env's
// mode: a short lease so that a dead relay's partitions pass on quickly,
// quick polls (in ModePoll) and backoff, no admin listener.
func (e *env) relayArgs(sinkURL, id string, lease time.Duration, batch int) []string {
	return []string{"relay",
		"--database-url", e.url,
		"--sink", sinkURL,
		"--relay-id", id,
		"--mode", string(e.mode),
		"--lease", lease.String(),
		"--batch-size", strconv.Itoa(batch),
		"--poll-interval", pollInterval(e.mode).String(),
		"--retry-base", "20ms",
		"--retry-max", "200ms",
		"--max-attempts", strconv.Itoa(faultMaxAttempts),
		"--sink-timeout", "2s",
		"--shutdown-timeout", "5s",
		"--admin-addr", "",
		"--log-level", "warn",
	}
}

// TestFaultRelaySIGKILL kills the txoutbox relay process with SIGKILL at
// random points, again and again, while writers keep publishing; a last
// relay then drains the outbox. The sink must hold every committed event,
// in order per key; events delivered again are those a killed relay had in
// flight, with their original ids: each delivery again is charged to the
// relay whose delivery before it went unrecorded, and that relay's charged
// events must be among the last batch it delivered. A successor killed
// while it sends its predecessor's batch again (its first batch: the
// oldest rows) leaves the same events in doubt once more, so they can
// arrive three times, one batch per kill.
//
// In ModeMessages the killed relay held the slot: its successor streams
// from the slot's confirmed position, which the killed one had moved past
// everything it delivered but the run in flight.
func TestFaultRelaySIGKILL(t *testing.T) {
	t.Parallel()
	forEachMode(t, testRelaySIGKILL)
}

func testRelaySIGKILL(t *testing.T, mode relay.Mode) {
	kills := killCount(t, mode)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 7))
	t.Logf("seed %d", seed)

	e := newEnv(t, pgtest.NewDB(t), 32, mode)
	s := newSink(t)
	s.jitter = 5 * time.Millisecond
	w := e.startWriters(t, writerConfig{n: 4, pace: 2 * time.Millisecond})

	var killedAfter []time.Duration
	killed := make(map[string]*proc)
	for i := range kills {
		id := fmt.Sprintf("killed-%02d", i)
		p := startProc(t, nil, e.relayArgs(s.url(id), id, time.Second, killBatch)...)
		killed[id] = p
		up := 300*time.Millisecond + time.Duration(rng.Int64N(int64(2200*time.Millisecond)))
		time.Sleep(up)
		if err := p.kill(); err != nil {
			t.Fatalf("relay %s: %v", id, err)
		}
		killedAfter = append(killedAfter, up.Round(time.Millisecond))
	}
	w.halt()

	last := startProc(t, nil, e.relayArgs(s.url("last"), "last", time.Second, killBatch)...)
	pub := e.waitDelivered(t, s, 2*time.Minute, func() string { return tail(last.out.String(), 20) })
	if err := last.terminate(10 * time.Second); err != nil {
		t.Errorf("last relay after SIGTERM: %v\n%s", err, tail(last.out.String(), 20))
	}

	sum := check(t, e.name("sigkill"), pub, w.led, s, checkOptions{lastBatch: killBatch})
	if n := w.led.errorCount(); n != 0 {
		t.Errorf("writers saw %d errors (last: %v); killing the relay must not fail them", n, w.led.lastErr)
	}
	if t.Failed() {
		// What the killed relays logged (warnings and errors) says why
		// one left more than a batch in doubt: a request that timed out,
		// a lease cut, a failed record.
		for id, p := range killed {
			if out := tail(p.out.String(), 8); out != "" {
				t.Logf("%s logged:\n%s", id, out)
			}
		}
	}
	sum.extra = append(sum.extra, fmt.Sprintf("kills=%d", kills))
	t.Logf("relays killed after %v", killedAfter)
	t.Log(sum)
}
