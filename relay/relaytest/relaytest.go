package relaytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/topics"
)

// Received is one event as it reached the sink's destination.
type Received struct {
	ID   string // the event id
	Key  string // the ordering key, where the destination carries it; "" skips the order check
	Data []byte // the event's data, as JSON; nil skips the data check
}

// Suite says how to build the sink under test.
type Suite struct {
	// NewSink returns a new sink and a function that returns what reached
	// its destination so far, in order of arrival. The function may be nil
	// for a sink with no far end to read back (a no-op sink): the suite
	// then checks only what Send returns.
	NewSink func(t *testing.T) (sink relay.Sink, received func() []Received)

	// Pool returns a pool on a database of its own with the outbox tables
	// (outbox.Migrate), for the test that runs a relay on the sink.
	Pool func(t *testing.T) *pgxpool.Pool

	// Wait bounds how long the suite waits for events to reach the
	// destination. Defaults to 10s.
	Wait time.Duration
}

// Run runs the conformance tests as subtests of t.
func Run(t *testing.T, s Suite) {
	t.Helper()
	if s.NewSink == nil || s.Pool == nil {
		t.Fatal("relaytest: Suite.NewSink and Suite.Pool are required")
	}
	if s.Wait == 0 {
		s.Wait = 10 * time.Second
	}
	t.Run("DeliversBatchInOrder", func(t *testing.T) { s.deliversBatch(t) })
	t.Run("EmptyBatch", func(t *testing.T) { s.emptyBatch(t) })
	t.Run("Concurrent", func(t *testing.T) { s.concurrent(t) })
	t.Run("CancelledContext", func(t *testing.T) { s.cancelled(t) })
	t.Run("Relay", func(t *testing.T) { s.relay(t) })
}

// Events returns n events in the order a relay reads them, spread over
// keys keys (key-0, key-1, ...) and two topics, each with data
// {"key": ..., "n": i} and a fresh id.
func Events(n, keys int) []*outbox.Event {
	evs := make([]*outbox.Event, n)
	now := time.Now().UTC()
	for i := range evs {
		key := fmt.Sprintf("key-%d", i%keys)
		action := []string{"Created", "Paid"}[i%2]
		evs[i] = &outbox.Event{
			ID:       uuid.Must(uuid.NewV7()),
			Topic:    "billing.Invoice" + action,
			Category: "billing", Entity: "Invoice", Action: action,
			Data:    fmt.Appendf(nil, `{"key":%q,"n":%d}`, key, i),
			ActorID: "user-4711", ActorType: "user",
			JobID: fmt.Sprintf("job-%d", i), Source: "relaytest",
			Key: key, Time: now,
		}
	}
	return evs
}

func (s Suite) deliversBatch(t *testing.T) {
	sink, received := s.NewSink(t)
	evs := Events(30, 3)
	want := snapshot(evs)
	if err := sink.Send(t.Context(), evs); err != nil {
		t.Fatalf("Send = %v, want nil", err)
	}
	// The relay reuses the events once Send returns: a sink must not keep
	// them, so scribbling over them now changes nothing downstream.
	for _, ev := range evs {
		clear(ev.Data)
		ev.Key, ev.ID = "scribbled", uuid.Nil
	}
	s.checkArrived(t, received, want)
}

func (s Suite) emptyBatch(t *testing.T) {
	sink, _ := s.NewSink(t)
	if err := sink.Send(t.Context(), nil); err != nil {
		t.Errorf("Send of no events = %v, want nil", err)
	}
}

func (s Suite) concurrent(t *testing.T) {
	sink, received := s.NewSink(t)
	const senders = 4
	var want []Received
	batches := make([][]*outbox.Event, senders)
	for i := range batches {
		batches[i] = Events(10, 10)
		for _, ev := range batches[i] {
			ev.Key = fmt.Sprintf("sender-%d-%s", i, ev.Key)
		}
		want = append(want, snapshot(batches[i])...)
	}
	errs := make([]error, senders)
	var wg sync.WaitGroup
	for i := range batches {
		wg.Go(func() { errs[i] = sink.Send(t.Context(), batches[i]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Send: %v", err)
	}
	s.checkArrived(t, received, want)
}

// cancelled checks that a nil error means delivered, even from a Send whose
// context was cancelled before it was called.
func (s Suite) cancelled(t *testing.T) {
	sink, received := s.NewSink(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	evs := Events(5, 5)
	want := snapshot(evs)
	if err := sink.Send(ctx, evs); err == nil {
		s.checkArrived(t, received, want)
	}
}

// relay runs a relay on the sink until it drained an outbox of committed
// events.
func (s Suite) relay(t *testing.T) {
	pool := s.Pool(t)
	sink, received := s.NewSink(t)
	const n, keys = 200, 10
	ids := publish(t, pool, n, keys)
	_, stop := Start(t, pool, sink, &relay.Config{PollInterval: 10 * time.Millisecond})
	defer stop()
	deadline := time.Now().Add(s.Wait)
	for {
		var pending int
		err := pool.QueryRow(t.Context(), `SELECT count(*) FROM txoutbox_events WHERE status <> 'delivered'`).Scan(&pending)
		if err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events still pending after %s", pending, n, s.Wait)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if received == nil {
		return
	}
	got := waitFor(t, received, len(ids), s.Wait)
	seen := make(map[string]bool)
	for _, r := range got {
		seen[r.ID] = true
	}
	for _, id := range ids {
		if !seen[id] {
			t.Errorf("event %s was recorded delivered but never arrived", id)
		}
	}
	checkOrder(t, got)
}

// publish commits n events over keys keys through an outbox client and
// returns their ids.
func publish(t *testing.T, pool *pgxpool.Pool, n, keys int) []string {
	t.Helper()
	reg, err := topics.Parse("relaytest.yaml", []byte(topicsYAML))
	if err != nil {
		t.Fatal(err)
	}
	client, err := outbox.New(pool, reg, &outbox.Config{Source: "relaytest"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	sess := client.ServiceSession("relaytest-job")
	for i := range n {
		if err := sess.Publish(ctx, "Created", "Invoice", map[string]any{"id": fmt.Sprintf("key-%d", i%keys), "n": i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := sess.Flush(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, `SELECT id::text FROM txoutbox_events ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil || len(ids) != n {
		t.Fatalf("%d events committed, want %d: %v", len(ids), n, err)
	}
	return ids
}

const topicsYAML = `DefaultCategory: billing
Topics:
  - Action: Created
    Entity: Invoice
    Description: An invoice was issued.
    Schema:
      type: object
      required: [id, n]
      properties:
        id: {type: string}
        n: {type: integer}
`

// snapshot copies what the destination should receive of evs.
func snapshot(evs []*outbox.Event) []Received {
	out := make([]Received, len(evs))
	for i, ev := range evs {
		out[i] = Received{ID: ev.ID.String(), Key: ev.Key, Data: bytes.Clone(ev.Data)}
	}
	return out
}

// checkArrived waits until every event of want reached the destination and
// checks their data and each key's order.
func (s Suite) checkArrived(t *testing.T, received func() []Received, want []Received) {
	t.Helper()
	if received == nil {
		return
	}
	got := waitFor(t, received, len(want), s.Wait)
	byID := make(map[string]Received, len(got))
	for _, r := range got {
		if _, dup := byID[r.ID]; !dup {
			byID[r.ID] = r
		}
	}
	for _, w := range want {
		r, ok := byID[w.ID]
		switch {
		case !ok:
			t.Errorf("event %s (key %s) did not arrive", w.ID, w.Key)
		case r.Data != nil && !jsonEqual(r.Data, w.Data):
			t.Errorf("event %s arrived with data %s, want %s", w.ID, r.Data, w.Data)
		case r.Key != "" && r.Key != w.Key:
			t.Errorf("event %s arrived with key %q, want %q", w.ID, r.Key, w.Key)
		}
	}
	// Each key's events must arrive in the order they were sent.
	pos := make(map[string]int, len(want))
	for i, w := range want {
		pos[w.ID] = i
	}
	last := make(map[string]int)
	for _, r := range got {
		i, ok := pos[r.ID]
		if !ok || r.Key == "" {
			continue
		}
		if prev, seen := last[r.Key]; seen && i < prev {
			t.Errorf("key %s: event %s arrived after a later one", r.Key, r.ID)
		}
		last[r.Key] = max(last[r.Key], i)
	}
}

// checkOrder checks that each key's first arrivals carry increasing n.
func checkOrder(t *testing.T, got []Received) {
	t.Helper()
	last := make(map[string]int)
	seen := make(map[string]bool)
	for _, r := range got {
		if seen[r.ID] || r.Key == "" || r.Data == nil {
			continue
		}
		seen[r.ID] = true
		var n int
		if _, err := fmt.Sscanf(string(dataField(r.Data, "n")), "%d", &n); err != nil {
			continue
		}
		if prev, ok := last[r.Key]; ok && n <= prev {
			t.Errorf("key %s: event %d arrived after %d", r.Key, n, prev)
		}
		last[r.Key] = n
	}
}

// waitFor polls received until it holds at least n events or wait ran out.
func waitFor(t *testing.T, received func() []Received, n int, wait time.Duration) []Received {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		got := received()
		distinct := make(map[string]bool, len(got))
		for _, r := range got {
			distinct[r.ID] = true
		}
		if len(distinct) >= n || time.Now().After(deadline) {
			return slices.Clone(got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// jsonEqual reports whether a and b are the same JSON value.
func jsonEqual(a, b []byte) bool {
	var va, vb any
	return json.Unmarshal(a, &va) == nil && json.Unmarshal(b, &vb) == nil && fmt.Sprint(va) == fmt.Sprint(vb)
}

// dataField returns the JSON of field name of the object data.
func dataField(data []byte, name string) json.RawMessage {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(data, &m)
	return m[name]
}

// Start runs a relay on sink until the test ends, or until stop is called,
// and fails the test if Run returns an error. cfg may be nil.
func Start(t testing.TB, pool *pgxpool.Pool, sink relay.Sink, cfg *relay.Config) (r *relay.Relay, stop func()) {
	t.Helper()
	r, err := relay.New(pool, sink, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("relay Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return r, stop
}
