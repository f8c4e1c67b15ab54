package relay

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestPartitionOf checks the WAL decoder's partition of a key against the
// part column the table computes.
func TestPartitionOf(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	keys := []string{"", "a", "invoice-1", "ключ", fmt.Sprint(time.Now().UnixNano())}
	for i := range 200 {
		keys = append(keys, fmt.Sprintf("key-%d", i))
	}
	insertEvents(t, pool, keys...)
	rows, err := pool.Query(context.Background(), "SELECT key, part FROM txoutbox_events")
	if err != nil {
		t.Fatal(err)
	}
	var key string
	var part int16
	n := 0
	_, err = pgx.ForEachRow(rows, []any{&key, &part}, func() error {
		n++
		if got := partitionOf([]byte(key)); got != part {
			t.Errorf("partitionOf(%q) = %d, the table says %d", key, got, part)
		}
		return nil
	})
	if err != nil || n != len(keys) {
		t.Fatalf("read %d of %d rows: %v", n, len(keys), err)
	}
}

// startWALRelay starts a ModeWAL relay that never polls on its own, and
// waits until its stream is open. It is stopped in t's cleanup.
func startWALRelay(t *testing.T, pool *pgxpool.Pool, sink Sink) *Relay {
	t.Helper()
	r, _ := startRelay(t, pool, sink, &Config{Mode: ModeWAL, PollInterval: time.Hour})
	waitFor(t, 10*time.Second, "the WAL stream to open", func() bool { return r.WALStatus().Streaming })
	return r
}

// TestWALModeDelivers runs a relay that never polls on its own: every
// event it delivers, it learned of from the write-ahead log.
func TestWALModeDelivers(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	sink := &recordingSink{}
	r := startWALRelay(t, pool, sink)

	for i := range 20 {
		insertEvents(t, pool, fmt.Sprintf("k%d", i%3), fmt.Sprintf("k%d", (i+1)%3))
	}
	waitFor(t, 10*time.Second, "40 events delivered", func() bool { return sink.distinct() == 40 })
	checkOrder(t, sink.delivered())
	// A poll may deliver events before the stream brings their commits;
	// the stream reports them when it does.
	var st WALStatus
	waitFor(t, 10*time.Second, "the stream's wakes and received LSN", func() bool {
		st = r.WALStatus()
		return st.Wakes > 0 && st.ReceivedLSN != ""
	})
	if st.Slot == "" {
		t.Errorf("WALStatus = %+v, want a slot", st)
	}
	var temporary bool
	if err := pool.QueryRow(context.Background(), "SELECT temporary FROM pg_replication_slots WHERE slot_name = $1", st.Slot).Scan(&temporary); err != nil || !temporary {
		t.Errorf("slot %s: temporary = %v, %v; want a temporary slot", st.Slot, temporary, err)
	}
}

// TestWALModeStreamBroken ends the relay's WAL sender on the server: the
// relay opens a new stream, and what was committed while it had none is
// delivered.
func TestWALModeStreamBroken(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	sink := &recordingSink{}
	r := startWALRelay(t, pool, sink)
	insertEvents(t, pool, "a", "b")
	waitFor(t, 10*time.Second, "2 events delivered", func() bool { return sink.distinct() == 2 })

	first := r.WALStatus().Slot
	var ended bool
	err := pool.QueryRow(context.Background(),
		"SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1", first).Scan(&ended)
	if err != nil || !ended {
		t.Fatalf("terminate the WAL sender: %v, %v", ended, err)
	}
	insertEvents(t, pool, "a", "c") // while the stream may be down
	waitFor(t, 10*time.Second, "a new stream", func() bool {
		st := r.WALStatus()
		return st.Streaming && st.Slot != first && st.Restarts > 0
	})
	insertEvents(t, pool, "b", "c")
	waitFor(t, 10*time.Second, "6 events delivered", func() bool { return sink.distinct() == 6 })
	checkOrder(t, sink.delivered())
}

// TestWALModeUnavailable: Run refuses to start in ModeWAL when no
// publication holds the outbox table, saying what to run.
func TestWALModeUnavailable(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	if _, err := pool.Exec(context.Background(), `DROP PUBLICATION "txoutbox_public"`); err != nil {
		t.Fatal(err)
	}
	r, err := New(pool, &recordingSink{}, &Config{Mode: ModeWAL, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = r.Run(ctx)
	if !errors.Is(err, ErrWALUnavailable) {
		t.Fatalf("Run = %v, want ErrWALUnavailable", err)
	}
	t.Log(err)
}

func TestModeInvalid(t *testing.T) {
	t.Parallel()
	_, err := New(newTestDB(t), &recordingSink{}, &Config{Mode: "push"})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New = %v, want ErrInvalidConfig", err)
	}
}
