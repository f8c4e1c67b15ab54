package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/walmsg"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/topics"
)

const messagesTopics = `DefaultCategory: billing
Topics:
  - Action: Created
    Entity: Invoice
    Schema:
      type: object
      properties:
        key: {type: string}
        n: {type: integer}
`

// messagesDB returns a pool on a fresh database with the outbox tables and
// the slot of message storage, and a client that emits into it.
func messagesDB(t *testing.T) (*pgxpool.Pool, *outbox.Client) {
	t.Helper()
	pool := newTestDB(t)
	if err := outbox.Migrate(t.Context(), pool, &outbox.MigrateConfig{Messages: true}); err != nil {
		t.Fatal(err)
	}
	return pool, messagesClient(t, pool)
}

func messagesClient(t *testing.T, pool *pgxpool.Pool) *outbox.Client {
	t.Helper()
	reg, err := topics.Parse("topics.yaml", []byte(messagesTopics))
	if err != nil {
		t.Fatal(err)
	}
	client, err := outbox.New(pool, reg, &outbox.Config{Source: "billing-api", Storage: outbox.StorageMessages})
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// emitter publishes events numbered from 1 in one sequence for all keys,
// so checkOrder sees each key's events in increasing order.
type emitter struct {
	pool   *pgxpool.Pool
	client *outbox.Client
	mu     sync.Mutex
	n      int
}

// emit commits one transaction with an event for each key, in order.
func (e *emitter) emit(t *testing.T, keys ...string) error {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	sess := e.client.ServiceSession("")
	for _, k := range keys {
		e.n++
		if err := sess.Publish(t.Context(), "Created", "Invoice", map[string]any{"key": k, "n": e.n}, outbox.WithKey(k)); err != nil {
			t.Fatal(err)
		}
	}
	return outbox.InTx(t.Context(), e.pool, sess, func(context.Context, pgx.Tx) error { return nil })
}

func (e *emitter) mustEmit(t *testing.T, keys ...string) {
	t.Helper()
	if err := e.emit(t, keys...); err != nil {
		t.Fatal(err)
	}
}

func startMessagesRelay(t *testing.T, pool *pgxpool.Pool, sink Sink, cfg *Config) (*Relay, func()) {
	t.Helper()
	if cfg == nil {
		cfg = &Config{}
	}
	cfg.Mode = ModeMessages
	r, stop := startRelay(t, pool, sink, cfg)
	waitFor(t, 10*time.Second, "the relay to hold the slot", func() bool { return r.WALStatus().Streaming })
	return r, stop
}

// TestMessagesModeDelivers: events emitted as messages reach the sink in
// order per key, and no row is written for them.
func TestMessagesModeDelivers(t *testing.T) {
	t.Parallel()
	pool, client := messagesDB(t)
	e := &emitter{pool: pool, client: client}
	e.mustEmit(t, "a", "b") // before the relay starts: kept by the slot
	sink := &recordingSink{}
	startMessagesRelay(t, pool, sink, &Config{PollInterval: time.Hour})
	for i := range 30 {
		e.mustEmit(t, fmt.Sprintf("k%d", i%4), fmt.Sprintf("k%d", (i+1)%4), "a")
	}
	waitFor(t, 10*time.Second, "92 events delivered", func() bool { return sink.distinct() == 92 })
	checkOrder(t, sink.delivered())
	if n := count(t, pool, "true"); n != 0 {
		t.Errorf("%d rows in the outbox table, want none", n)
	}
	if len(sink.delivered()) != 92 {
		t.Errorf("%d deliveries of 92 events, want no duplicate without a restart", len(sink.delivered()))
	}
}

// TestMessagesNoSlot: without the slot, Flush refuses to emit and the
// relay refuses to start, each saying how to create it.
func TestMessagesNoSlot(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	e := &emitter{pool: pool, client: messagesClient(t, pool)}
	if err := e.emit(t, "a"); !errors.Is(err, outbox.ErrNoSlot) {
		t.Fatalf("emit without a slot = %v, want outbox.ErrNoSlot", err)
	}
	r, err := New(pool, &recordingSink{}, &Config{Mode: ModeMessages, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(t.Context()); !errors.Is(err, ErrWALUnavailable) || !errors.Is(err, ErrSlotLost) {
		t.Fatalf("Run = %v, want ErrWALUnavailable and ErrSlotLost", err)
	}
}

// TestMessagesFailures: an event the sink fails goes into the table, with
// the later events of its key, which the table's loop then delivers in
// order; the key's events flow from the stream again once the table has
// none left. An event that fails for good is dead-lettered from the table
// and blocks its key until replayed.
func TestMessagesFailures(t *testing.T) {
	t.Parallel()
	pool, client := messagesDB(t)
	e := &emitter{pool: pool, client: client}
	var mu sync.Mutex
	failOnce := map[int]error{}
	failing := map[int]error{}
	sink := &recordingSink{FailFunc: func(_ context.Context, _ int, events []*outbox.Event) error {
		mu.Lock()
		defer mu.Unlock()
		be := &BatchError{Failed: map[string]error{}}
		blocked := map[string]bool{}
		for _, ev := range events {
			var d struct{ N int }
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				return err
			}
			if blocked[ev.Key] {
				be.Failed[ev.ID.String()] = ErrNotSent
				continue
			}
			err, ok := failOnce[d.N]
			delete(failOnce, d.N)
			if !ok {
				err, ok = failing[d.N]
			}
			if ok {
				be.Failed[ev.ID.String()] = err
				blocked[ev.Key] = true
			}
		}
		if len(be.Failed) == 0 {
			return nil
		}
		return be
	}}
	r, _ := startMessagesRelay(t, pool, sink, &Config{PollInterval: 50 * time.Millisecond, RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond})

	mu.Lock()
	failOnce[1] = errors.New("try again")             // a: retried from the table
	failing[4] = Permanent(errors.New("bad request")) // b: dead, blocks b
	mu.Unlock()
	e.mustEmit(t, "a", "a", "c", "b", "b", "c") // n = 1..6
	waitFor(t, 10*time.Second, "b's first event dead-lettered", func() bool { return count(t, pool, "status = 'dead'") == 1 })
	e.mustEmit(t, "a", "b", "c") // n = 7..9: a and c from the stream; b to the table
	waitFor(t, 10*time.Second, "a and c delivered", func() bool { return sink.distinct() == 6 })
	waitFor(t, 10*time.Second, "b's later events in the table, behind the dead one", func() bool {
		return count(t, pool, "status = 'pending' AND key = 'b'") == 2
	})
	if n := count(t, pool, "key <> 'b'"); n != 0 {
		t.Fatalf("%d rows of other keys, want none once delivered", n)
	}
	mu.Lock()
	delete(failing, 4)
	mu.Unlock()
	if _, err := pool.Exec(t.Context(), `UPDATE txoutbox_events SET status = 'pending', attempts = 0, next_attempt_at = '-infinity' WHERE status = 'dead'`); err != nil {
		t.Fatal(err)
	}
	r.Wake()
	waitFor(t, 10*time.Second, "b delivered after the replay", func() bool { return sink.distinct() == 9 })
	e.mustEmit(t, "b") // from the stream again
	waitFor(t, 10*time.Second, "10 delivered", func() bool { return sink.distinct() == 10 })
	checkOrder(t, sink.delivered())
	if n := count(t, pool, "true"); n != 0 {
		t.Errorf("%d rows left, want none", n)
	}
}

// TestMessagesRestartAndTakeOver: a relay stopped, then a second one in its
// place while a third stands by: everything arrives, in order per key.
func TestMessagesRestartAndTakeOver(t *testing.T) {
	t.Parallel()
	pool, client := messagesDB(t)
	e := &emitter{pool: pool, client: client}
	sink := &recordingSink{}
	_, stop1 := startMessagesRelay(t, pool, sink, nil)
	keys := cycleKeys(5, 5)
	for range 20 {
		e.mustEmit(t, keys...)
	}
	stop1()
	for range 20 {
		e.mustEmit(t, keys...) // no relay: kept by the slot
	}
	r2, stop2 := startMessagesRelay(t, pool, sink, nil)
	r3, _ := startRelay(t, pool, sink, &Config{Mode: ModeMessages})
	for range 20 {
		e.mustEmit(t, keys...)
	}
	waitFor(t, 10*time.Second, "300 events", func() bool { return sink.distinct() == 300 })
	if r3.WALStatus().Streaming {
		t.Fatal("two relays hold the slot")
	}
	stop2()
	_ = r2
	waitFor(t, 10*time.Second, "the stand-by to take over", func() bool { return r3.WALStatus().Streaming })
	for range 20 {
		e.mustEmit(t, keys...)
	}
	waitFor(t, 10*time.Second, "400 events", func() bool { return sink.distinct() == 400 })
	checkOrder(t, sink.delivered())
}

// TestMessagesSlotDropped: a slot dropped under a running relay is
// detected and reported (WALStatus().Lost, and an error log naming the slot
// and how to recover), and Flush refuses to emit into the gap, so no event
// is committed that no relay would read. Once the slot is created again the
// relay holds it and delivers what is emitted from then on.
func TestMessagesSlotDropped(t *testing.T) {
	t.Parallel()
	pool, client := messagesDB(t)
	e := &emitter{pool: pool, client: client}
	var logs syncBuffer
	sink := &recordingSink{}
	r, _ := startMessagesRelay(t, pool, sink, &Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	slot := r.WALStatus().Slot
	e.mustEmit(t, "a", "b")
	waitFor(t, 10*time.Second, "2 events delivered", func() bool { return sink.distinct() == 2 })
	for {
		_, err := pool.Exec(t.Context(), `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1 AND active_pid IS NOT NULL`, slot)
		if err != nil {
			t.Fatal(err)
		}
		if _, err = pool.Exec(t.Context(), `SELECT pg_drop_replication_slot($1)`, slot); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond) // the relay took it again first
	}
	waitFor(t, 10*time.Second, "the loss reported", func() bool { return r.WALStatus().Lost })
	if st := r.WALStatus(); st.Streaming || st.Slot != slot {
		t.Errorf("WALStatus = %+v, want not streaming, slot %s", st, slot)
	}
	waitFor(t, 10*time.Second, "the loss logged", func() bool { return strings.Contains(logs.String(), "level=ERROR") })
	if l := logs.String(); !strings.Contains(l, "txoutbox migrate --messages") || !strings.Contains(l, slot) {
		t.Errorf("the error log does not name the slot and the way to create it again:\n%s", l)
	}
	if err := e.emit(t, "a"); !errors.Is(err, outbox.ErrNoSlot) {
		t.Fatalf("emit = %v, want outbox.ErrNoSlot", err)
	}

	if _, err := outbox.CreateMessageSlot(t.Context(), pool, nil); !errors.Is(err, outbox.ErrSlotLost) {
		t.Fatalf("CreateMessageSlot of the lost slot = %v, want outbox.ErrSlotLost", err)
	}
	if s, err := outbox.CreateMessageSlot(t.Context(), pool, &outbox.MessageSlotConfig{RecreateLost: true}); err != nil || !s.Created || s.Lost == nil {
		t.Fatalf("CreateMessageSlot with RecreateLost = %+v, %v", s, err)
	}
	waitFor(t, 20*time.Second, "the relay to hold the new slot", func() bool {
		st := r.WALStatus()
		return st.Streaming && !st.Lost
	})
	if n := r.WALStatus().Recreated; n != 1 {
		t.Errorf("WALStatus().Recreated = %d, want 1", n)
	}
	if l := logs.String(); !strings.Contains(l, "was created again") {
		t.Errorf("no error log says the slot was created again:\n%s", l)
	}
	e.mustEmit(t, "a", "c")
	waitFor(t, 10*time.Second, "4 events delivered", func() bool { return sink.distinct() == 4 })
	checkOrder(t, sink.delivered())
	if n := len(sink.delivered()); n != 4 {
		t.Errorf("%d deliveries of 4 events", n)
	}
}

// TestMessagesSlotRecreatedUnseen: the slot is dropped and created again
// (acknowledged) while its relay is busy with the sink, so the relay never
// sees it missing: on opening its next stream it finds the slot's record
// newer than the one it read, reports the loss (WALStatus().Recreated and
// an error log wrapping ErrSlotLost) once, and goes on with the new slot.
func TestMessagesSlotRecreatedUnseen(t *testing.T) {
	t.Parallel()
	pool, client := messagesDB(t)
	e := &emitter{pool: pool, client: client}
	var logs syncBuffer
	held, release := make(chan struct{}), make(chan struct{})
	sink := &recordingSink{FailFunc: func(_ context.Context, call int, _ []*outbox.Event) error {
		if call == 2 {
			close(held)
			<-release
		}
		return nil
	}}
	r, _ := startMessagesRelay(t, pool, sink, &Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	slot := r.WALStatus().Slot
	e.mustEmit(t, "a")
	waitFor(t, 10*time.Second, "1 event delivered", func() bool { return sink.distinct() == 1 })
	e.mustEmit(t, "b")
	<-held
	if _, err := pool.Exec(t.Context(), `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1`, slot); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the slot released", func() bool {
		_, err := pool.Exec(t.Context(), `SELECT pg_drop_replication_slot($1)`, slot)
		return err == nil
	})
	ms, err := outbox.CreateMessageSlot(t.Context(), pool, &outbox.MessageSlotConfig{RecreateLost: true})
	if err != nil || ms.Lost == nil {
		t.Fatalf("CreateMessageSlot with RecreateLost = %+v, %v", ms, err)
	}
	close(release)
	waitFor(t, 20*time.Second, "the relay to hold the new slot", func() bool {
		st := r.WALStatus()
		return st.Streaming && st.Recreated == 1
	})
	if l := logs.String(); !strings.Contains(l, "was created again at "+ms.CreatedLSN) || !strings.Contains(l, ErrSlotLost.Error()) {
		t.Errorf("the error log does not report the slot created again at %s:\n%s", ms.CreatedLSN, l)
	}
	if r.WALStatus().Lost {
		t.Error("WALStatus().Lost while the relay holds the new slot")
	}
	e.mustEmit(t, "c")
	waitFor(t, 10*time.Second, "3 events delivered", func() bool { return sink.distinct() == 3 })
	if n := r.WALStatus().Recreated; n != 1 {
		t.Errorf("WALStatus().Recreated = %d, want it reported once", n)
	}
}

// TestMessagesStopMidBatch stops the relay that holds the slot while the
// sink holds a batch of the stream. The batch is finished within
// ShutdownTimeout and its position confirmed before the relay lets the slot
// go: the relay that takes the slot over delivers the rest, and nothing
// twice. (A graceful stop is not a crash: a rolling deploy of relays must
// not send the batch in flight again.)
func TestMessagesStopMidBatch(t *testing.T) {
	t.Parallel()
	pool, client := messagesDB(t)
	e := &emitter{pool: pool, client: client}
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	sink := &recordingSink{FailFunc: func(context.Context, int, []*outbox.Event) error {
		once.Do(func() {
			close(entered)
			<-release
		})
		return nil
	}}
	r, err := New(pool, sink, &Config{Mode: ModeMessages, BatchSize: 10, ShutdownTimeout: 10 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := runUntil(ctx, r)
	keys := cycleKeys(5, 5)
	for range 10 {
		e.mustEmit(t, keys...)
	}
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the sink got nothing")
	}
	cancel()
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	first := sink.distinct()
	if first == 0 {
		t.Fatal("the batch in flight was not delivered")
	}

	startMessagesRelay(t, pool, sink, nil)
	waitFor(t, 10*time.Second, "50 events", func() bool { return sink.distinct() == 50 })
	checkOrder(t, sink.delivered())
	if n := len(sink.delivered()); n != 50 {
		t.Errorf("%d deliveries of 50 events (%d by the stopped relay): the batch it finished was sent again", n, first)
	}
}

// TestMessagesRetryAfter: when the sink fails a batch of the stream and
// one of the events carries a RetryAfter, the stream waits that long before
// it sends the batch again, whichever event carries it (an HTTP sink fails
// the events of the requests it did not send with ErrNotSent, and the 429's
// Retry-After is on another).
func TestMessagesRetryAfter(t *testing.T) {
	t.Parallel()
	pool, client := messagesDB(t)
	e := &emitter{pool: pool, client: client}
	const after = time.Second
	sink := &recordingSink{FailFunc: func(_ context.Context, call int, events []*outbox.Event) error {
		if call > 1 {
			return nil
		}
		be := &BatchError{Failed: map[string]error{}}
		for i, ev := range events {
			be.Failed[ev.ID.String()] = ErrNotSent
			if i == len(events)-1 {
				be.Failed[ev.ID.String()] = RetryAfter(errors.New("429 Too Many Requests"), after)
			}
		}
		return be
	}}
	startMessagesRelay(t, pool, sink, &Config{PollInterval: time.Hour, RetryBase: time.Millisecond, RetryMax: 10 * time.Millisecond})
	e.mustEmit(t, "a", "b", "c")
	waitFor(t, 10*time.Second, "3 events delivered", func() bool { return sink.distinct() == 3 })
	var first string
	for _, ev := range sink.delivered() {
		first = ev.ID
		break
	}
	tries := sink.attempts(first)
	if len(tries) != 2 {
		t.Fatalf("%d attempts of the first event, want 2", len(tries))
	}
	if gap := tries[1].Sub(tries[0]); gap < after {
		t.Errorf("the batch was sent again %s after a failure asking for %s", gap.Round(time.Millisecond), after)
	}
}

// TestMessagesPostgresRestart restarts PostgreSQL under a ModeMessages
// relay. PostgreSQL before 17 writes a slot's confirmed position to disk
// only now and then, so after the restart the slot may start well before
// what the relay confirmed; the relay goes on from its own position, and
// sends nothing again that it had delivered and confirmed.
func TestMessagesPostgresRestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	c, pool := restartableDB(t)
	if err := outbox.Migrate(ctx, pool, &outbox.MigrateConfig{Messages: true}); err != nil {
		t.Fatal(err)
	}
	e := &emitter{pool: pool, client: messagesClient(t, pool)}
	sink := &recordingSink{}
	r, _ := startMessagesRelay(t, pool, sink, &Config{Logger: slog.New(slog.DiscardHandler)})
	keys := cycleKeys(10, 5)
	for range 5 {
		e.mustEmit(t, keys...)
	}
	waitFor(t, 10*time.Second, "the first events", func() bool { return sink.distinct() == 50 })
	slot := r.WALStatus().Slot
	waitFor(t, 10*time.Second, "the slot to confirm them", func() bool {
		var lag int64
		err := pool.QueryRow(ctx, `SELECT pg_wal_lsn_diff($1::pg_lsn, confirmed_flush_lsn)::bigint FROM pg_replication_slots WHERE slot_name = $2`,
			r.WALStatus().ReceivedLSN, slot).Scan(&lag)
		return err == nil && lag <= 0
	})

	if err := c.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the stream to open again", func() bool {
		st := r.WALStatus()
		return st.Streaming && st.Restarts > 0
	})
	waitFor(t, 20*time.Second, "a connection", func() bool { return e.emit(t, keys...) == nil })
	waitFor(t, 20*time.Second, "the events committed after the restart", func() bool { return sink.distinct() == 60 })
	checkOrder(t, sink.delivered())
	if n := len(sink.delivered()); n != 60 {
		t.Errorf("%d deliveries of 60 events: the restart sent delivered events again", n)
	}
}

// TestBatchDeadline: a batch goes out after msgIdle of quiet, and no later
// than msgMaxWait after its first event however busy the stream.
func TestBatchDeadline(t *testing.T) {
	first := time.Unix(1000, 0)
	if got, want := batchDeadline(first, first), first.Add(msgIdle); !got.Equal(want) {
		t.Errorf("first event: deadline %v, want %v (quiet for msgIdle)", got.Sub(first), want.Sub(first))
	}
	busy := first.Add(msgMaxWait - msgIdle/2) // events kept arriving
	if got, want := batchDeadline(busy, first), first.Add(msgMaxWait); !got.Equal(want) {
		t.Errorf("busy stream: deadline %v, want %v (msgMaxWait after the first event)", got.Sub(first), want.Sub(first))
	}
	late := first.Add(5 * msgMaxWait)
	if got := batchDeadline(late, first); got.After(late) {
		t.Errorf("past msgMaxWait: deadline %v after now", got.Sub(late))
	}
}

// TestMessagesWALStatus: a ModeMessages relay reports its stream as a
// ModeWAL relay does: the durable slot, the commits that carried events,
// the last LSN received, and a stream that broke and was opened again.
func TestMessagesWALStatus(t *testing.T) {
	t.Parallel()
	pool, client := messagesDB(t)
	e := &emitter{pool: pool, client: client}
	sink := &recordingSink{}
	r, _ := startMessagesRelay(t, pool, sink, &Config{PollInterval: time.Hour})
	var database string
	if err := pool.QueryRow(t.Context(), `SELECT current_database()`).Scan(&database); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		e.mustEmit(t, fmt.Sprintf("k%d", i))
	}
	waitFor(t, 10*time.Second, "5 events delivered", func() bool { return sink.distinct() == 5 })
	st := r.WALStatus()
	if !st.Streaming || st.Slot != walmsg.Slot(database, "public") || st.Wakes != 5 || st.ReceivedLSN == "" || st.Lost {
		t.Errorf("WALStatus = %+v, want streaming slot %s, 5 wakes and a received LSN", st, walmsg.Slot(database, "public"))
	}

	if _, err := pool.Exec(t.Context(), `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = $1`, st.Slot); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the stream opened again", func() bool {
		st := r.WALStatus()
		return st.Streaming && st.Restarts > 0
	})
}
