package eventsapi

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// countingStore counts the calls its readers make.
type countingStore struct {
	Store
	reads, heads, oldests atomic.Int64
}

func (s *countingStore) Read(ctx context.Context, req *ReadRequest) ([]Event, error) {
	s.reads.Add(1)
	return s.Store.Read(ctx, req)
}

func (s *countingStore) Head(ctx context.Context) (int64, error) {
	s.heads.Add(1)
	return s.Store.Head(ctx)
}

func (s *countingStore) Oldest(ctx context.Context) (int64, error) {
	s.oldests.Add(1)
	return s.Store.Oldest(ctx)
}

// queries returns the calls made so far.
func (s *countingStore) queries() int64 { return s.reads.Load() + s.heads.Load() + s.oldests.Load() }

// TestStreamAfterRetentionEmptiedTheStore: retention deleting every event
// (an idle spell longer than MaxAge) is no reset. A subscriber resuming
// from the last position is told of no gap, a new one starts at the last
// position, an idle subscriber costs no queries, and the next event reaches
// them all.
func TestStreamAfterRetentionEmptiedTheStore(t *testing.T) {
	t.Parallel()
	forEachSubscriptionStore(t, testStreamAfterRetentionEmptiedTheStore)
}

func testStreamAfterRetentionEmptiedTheStore(t *testing.T, st Store) {
	for i := range 5 {
		appendEvents(t, st, testEvent("billing", "Invoice", "Created", string(rune('a'+i))))
	}
	// The server starts after them: its ring holds none.
	cs := &countingStore{Store: st}
	env := newTestEnv(t, &Config{Store: cs}, envOptions{})
	live := openStream(t, env, "/api/stream", nil)
	if m, err := live.read(); err != nil || m.id != "5" {
		t.Fatalf("opening %+v, %v; want id 5", m, err)
	}
	eventually(t, 10*time.Second, "the pump reads the events", func() bool { return pumped(env.srv) == 5 })
	if _, err := st.Prune(context.Background(), time.Now().Add(time.Hour), 0); err != nil {
		t.Fatal(err)
	}

	resumed := openStream(t, env, "/api/stream?last_event_id=5", nil)
	fresh := openStream(t, env, "/api/stream", nil)
	for name, s := range map[string]*sseStream{"resumed": resumed, "new": fresh} {
		if m, err := s.read(); err != nil || m.id != "5" {
			t.Errorf("%s: opening %+v, %v; want id 5", name, m, err)
		}
	}
	// Idle subscribers wait; they do not poll the store.
	before := cs.queries()
	time.Sleep(300 * time.Millisecond)
	if n := cs.queries() - before; n > 10 {
		t.Errorf("%d store queries in 300 ms with nothing appended", n)
	}

	appendEvents(t, st, testEvent("billing", "Invoice", "Created", "f"))
	for name, s := range map[string]*sseStream{"live": live, "resumed": resumed, "new": fresh} {
		m, err := s.next()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := s.decode(m); got.Position != 6 {
			t.Errorf("%s: position %d, want 6", name, got.Position)
		}
	}

	c := dialWS(t, env)
	c.send(map[string]any{"type": "start", "last_event_id": 5})
	if m := c.expect("session"); *m.Position != 5 {
		t.Fatalf("session %+v, want position 5", m)
	}
	c.subscribe("all", nil, nil)
	if got := positions(c.waitEvents(1)); !slices.Equal(got, []int64{6}) {
		t.Errorf("WebSocket: %v, want [6]", got)
	}
}
