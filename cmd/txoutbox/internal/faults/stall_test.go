package faults

import (
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/relay"
)

// slotState is a row of pg_replication_slots: what an operator (and
// txoutbox status) sees of a relay's slot.
type slotState struct {
	name      string
	active    bool
	walStatus string
	confirmed pglogrepl.LSN // confirmed_flush_lsn
	current   pglogrepl.LSN // pg_current_wal_lsn() when read
	retained  int64         // bytes of WAL the slot holds back: from restart_lsn to the current position
	lag       int64         // bytes from confirmed_flush_lsn to the current position
}

// slot returns the state of the one replication slot on env's database:
// ModeMessages' durable slot, or the temporary slot of a ModeWAL relay
// (whose positions are 0/0 while it is being created).
func (e *env) slot(t testing.TB) slotState {
	t.Helper()
	s, ok := e.findSlot(t)
	if !ok {
		t.Fatal("no replication slot on the database")
	}
	return s
}

// findSlot is slot, reporting whether there is one: a ModeWAL relay opens
// its stream a moment after it starts.
func (e *env) findSlot(t testing.TB) (slotState, bool) {
	t.Helper()
	var s slotState
	var confirmed, current string
	err := e.pool.QueryRow(t.Context(), `SELECT slot_name, active, coalesce(wal_status, ''),
			coalesce(confirmed_flush_lsn, '0/0')::text, pg_current_wal_lsn()::text,
			coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint,
			coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint
		FROM pg_replication_slots WHERE database = current_database()`).
		Scan(&s.name, &s.active, &s.walStatus, &confirmed, &current, &s.retained, &s.lag)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, false
	}
	if err != nil {
		t.Fatalf("read the replication slot: %v", err)
	}
	if s.confirmed, err = pglogrepl.ParseLSN(confirmed); err != nil {
		t.Fatal(err)
	}
	if s.current, err = pglogrepl.ParseLSN(current); err != nil {
		t.Fatal(err)
	}
	return s, true
}

func (s slotState) String() string {
	return fmt.Sprintf("slot %s active=%v wal_status=%s confirmed=%s retained=%dB lag=%dB", s.name, s.active, s.walStatus, s.confirmed, s.retained, s.lag)
}

// TestFaultStalledRelay freezes the relay that holds the slot (SIGSTOP)
// while writers keep publishing: its slot stays active and keeps the WAL
// written since it last confirmed, which pg_replication_slots shows
// growing, and nothing is delivered meanwhile. Thawed, the relay delivers
// what piled up and confirms past it, and the retained WAL is given back.
//
// A stalled relay in ModeMessages holds its durable slot until it is
// killed; a dead one holds it until another relay takes the slot. In
// ModeWAL the slot is temporary and goes with the relay's connection (the
// server ends a frozen relay's after wal_sender_timeout).
func TestFaultStalledRelay(t *testing.T) {
	t.Parallel()
	forModes(t, []relay.Mode{relay.ModeWAL, relay.ModeMessages}, testStalledRelay)
}

func testStalledRelay(t *testing.T, mode relay.Mode) {
	freezeFor := pick(3*time.Second, 20*time.Second)
	e := newEnv(t, pgtest.NewDB(t), 16, mode)
	s := newSink(t)
	// A lease that outlasts the freeze: the relay is the only one, and
	// this test is about its slot, not its partitions.
	p := startProc(t, nil, e.relayArgs(s.url("stalled"), "stalled", time.Minute, killBatch)...)
	w := e.startWriters(t, writerConfig{n: 2, pace: 5 * time.Millisecond})
	waitUntil(t, time.Minute, func() string { return "a first event to arrive\n" + tail(p.out.String(), 20) },
		func() bool { return s.distinct() > 0 })
	waitUntil(t, time.Minute, func() string { return "the relay's slot to be active\n" + tail(p.out.String(), 20) },
		func() bool { st, ok := e.findSlot(t); return ok && st.active && st.confirmed != 0 })

	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	frozenAt := e.slot(t)
	deliveredAt := s.distinct()
	publishedAt := total(e.published(t))
	time.Sleep(freezeFor)
	stalled := e.slot(t)
	published := total(e.published(t))
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// The sink may take the requests a frozen relay had sent.
	if n := s.distinct(); n > deliveredAt+killBatch {
		t.Errorf("%d events delivered while the relay was frozen, more than the batch it had in flight", n-deliveredAt)
	}
	if published <= publishedAt {
		t.Fatalf("the writers published nothing during the freeze")
	}
	if !stalled.active || stalled.name != frozenAt.name {
		t.Errorf("after the freeze: %v; want the frozen relay's slot %s, still active", stalled, frozenAt.name)
	}
	if stalled.confirmed > frozenAt.current {
		t.Errorf("the frozen relay's slot confirmed %s, past the WAL position %s at the freeze", stalled.confirmed, frozenAt.current)
	}
	if stalled.walStatus != "reserved" && stalled.walStatus != "extended" {
		t.Errorf("wal_status %q while stalled, want reserved (or extended)", stalled.walStatus)
	}
	if grew := stalled.lag - frozenAt.lag; grew <= 0 || stalled.lag < int64(stalled.current-frozenAt.current) {
		t.Errorf("retained WAL did not grow while the relay was frozen: %v at the freeze, %v after", frozenAt, stalled)
	}

	// Thawed: writers go on a moment, so that there are commits after
	// the thaw for the relay to confirm.
	time.Sleep(500 * time.Millisecond)
	w.halt()
	pub := e.waitDelivered(t, s, 2*time.Minute, func() string { return tail(p.out.String(), 20) })
	var caughtUp slotState
	waitUntil(t, time.Minute, func() string { return fmt.Sprintf("the slot to confirm past %s: %v", stalled.current, caughtUp) },
		func() bool {
			st, ok := e.findSlot(t)
			caughtUp = st
			return ok && st.confirmed >= stalled.current
		})
	if err := p.terminate(10 * time.Second); err != nil {
		t.Errorf("relay after SIGTERM: %v\n%s", err, tail(p.out.String(), 20))
	}
	sum := check(t, e.name("stalled-relay"), pub, w.led, s, checkOptions{sameSenderDuplicates: true, maxRedeliveredPerSender: killBatch})
	if sum.duplicates > killBatch {
		t.Errorf("%d duplicates, more than the batch in flight at the freeze", sum.duplicates)
	}
	sum.extra = append(sum.extra, fmt.Sprintf("freeze=%s published_in_freeze=%d lag_before=%dB lag_stalled=%dB retained_stalled=%dB lag_after=%dB",
		freezeFor, published-publishedAt, frozenAt.lag, stalled.lag, stalled.retained, caughtUp.lag))
	t.Log(sum)
}
