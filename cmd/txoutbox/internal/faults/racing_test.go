package faults

import (
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relayhttp"
)

// racingLease is the lease of TestFaultRacingRelays: short, so that leases
// are renewed, given back and taken over many times a second.
const racingLease = 600 * time.Millisecond

// racingBatch is the relays' batch size there.
const racingBatch = 50

// TestFaultRacingRelays runs four relays with short leases on one outbox
// while writers publish, and keeps replacing them: every few hundred
// milliseconds one stops (finishing its batch and giving its partitions
// back) and a new one starts, so partitions keep moving. None of them
// crashes, so none may deliver an event another already delivered.
//
// A fifth relay, a txoutbox process, is frozen from time to time with
// SIGSTOP for two leases and then thawed: its leases expire under it and
// the others take its partitions over, as they would from a relay stuck in
// a long GC pause or a swapped-out VM. That is the crash window the design
// allows duplicates in: the batch it had in flight when frozen may be
// delivered by it and by its successor, one batch per freeze at most, and
// every duplicate must involve it. After thawing it must not deliver from
// partitions it no longer holds.
//
// In ModeMessages one relay at a time holds the slot and the others stand
// by: the stream passes to another relay each time its holder stops, and
// stalls while the frozen relay holds it.
func TestFaultRacingRelays(t *testing.T) {
	t.Parallel()
	forEachMode(t, testRacingRelays)
}

func testRacingRelays(t *testing.T, mode relay.Mode) {
	const relays = 4
	churnFor := pick(6*time.Second, time.Minute)
	e := newEnv(t, pgtest.NewDB(t), 64, mode)
	s := newSink(t)
	logs := newLogRecorder()
	cfg := relay.Config{
		BatchSize: racingBatch,
		LeaseTTL:  racingLease,
		RetryBase: 20 * time.Millisecond,
		RetryMax:  200 * time.Millisecond,
		Logger:    slog.New(logs),
	}
	started := 0
	start := func() (*relay.Relay, func() error) {
		id := fmt.Sprintf("racer-%02d", started)
		started++
		c := cfg
		c.ID = id
		return e.runRelay(t, s.url(id), relayhttp.FormatCloudEvents, 2*time.Second, c)
	}
	running := make([]func() error, relays)
	rs := make([]*relay.Relay, relays)
	for i := range running {
		rs[i], running[i] = start()
	}
	const frozen = "frozen"
	sleeper := startProc(t, nil, e.relayArgs(s.url(frozen), frozen, racingLease, racingBatch)...)
	w := e.startWriters(t, writerConfig{n: 4, pace: 2 * time.Millisecond})

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	freezes := 0
	for round, end := 0, time.Now().Add(churnFor); time.Now().Before(end); round++ {
		time.Sleep(200*time.Millisecond + time.Duration(rng.Int64N(int64(600*time.Millisecond))))
		if round%3 == 2 {
			if err := sleeper.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2*racingLease + time.Duration(rng.Int64N(int64(racingLease))))
			if err := sleeper.cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			freezes++
			continue
		}
		i := rng.IntN(relays)
		if mode == relay.ModeMessages {
			// Stop the relay that holds the slot, if one of these does,
			// so that the stream changes hands.
			for j, r := range rs {
				if r.WALStatus().Streaming {
					i = j
				}
			}
		}
		if err := running[i](); err != nil {
			t.Errorf("relay stopped with %v", err)
		}
		rs[i], running[i] = start()
	}
	w.halt()
	pub := e.waitDelivered(t, s, time.Minute, logs.String)
	for _, stop := range running {
		if err := stop(); err != nil {
			t.Errorf("relay stopped with %v", err)
		}
	}
	if err := sleeper.terminate(10 * time.Second); err != nil {
		t.Errorf("frozen relay after SIGTERM: %v\n%s", err, tail(sleeper.out.String(), 20))
	}

	// Relays that lost a lease without being frozen hit the same window
	// (they failed to renew in time); their partitions are excused too.
	lost, lostParts := logs.lostLeases()
	expired := map[int16]bool{}
	for _, p := range lostParts {
		expired[p] = true
	}
	sum := check(t, e.name("racing-relays"), pub, w.led, s, checkOptions{maxRedeliveredPerSender: racingBatch * freezes})
	firstFrom := map[string]string{}
	var outside, involvingFrozen int
	for _, a := range s.snapshot() {
		first, dup := firstFrom[a.id]
		if !dup {
			firstFrom[a.id] = a.from
			continue
		}
		switch {
		case first == frozen || a.from == frozen:
			involvingFrozen++
		case !expired[partition(a.key)]:
			outside++
		}
	}
	if outside > 0 {
		t.Errorf("%d of %d duplicates between relays that were never frozen, in partitions whose lease never expired under them (expired: %v)\n%s",
			outside, sum.duplicates, lostParts, logs.String())
	}
	if limit := racingBatch * freezes; involvingFrozen > limit {
		t.Errorf("%d duplicates involve the frozen relay, more than one batch per freeze (%d)", involvingFrozen, limit)
	}
	senders := map[string]bool{}
	for _, a := range s.snapshot() {
		senders[a.from] = true
	}
	switch {
	case mode == relay.ModeMessages && len(senders) < 2:
		// One relay holds the slot and delivers all the stream does.
		t.Errorf("only %d of %d relays delivered anything: the slot did not move", len(senders), started+1)
	case mode != relay.ModeMessages && (len(senders) < relays+2 || !senders[frozen]):
		t.Errorf("only %d of %d relays delivered anything (frozen one: %v): the partitions did not move", len(senders), started+1, senders[frozen])
	}
	sum.extra = append(sum.extra, fmt.Sprintf("relays_started=%d relays_delivering=%d lease=%s freezes=%d leases_lost_in_process=%d",
		started+1, len(senders), racingLease, freezes, lost))
	t.Log(sum)
}

// duplicatesOf returns the arrivals of events that had arrived before.
func duplicatesOf(arr []arrival) []arrival {
	seen := map[string]bool{}
	var dups []arrival
	for _, a := range arr {
		if seen[a.id] {
			dups = append(dups, a)
		}
		seen[a.id] = true
	}
	return dups
}

// partition is the outbox's partition of key, as the part column computes
// it: the first 32 bits of md5(key), masked to 0-63.
func partition(key string) int16 {
	sum := md5.Sum([]byte(key))
	return int16(binary.BigEndian.Uint32(sum[:4]) & (outboxsql.Partitions - 1))
}
