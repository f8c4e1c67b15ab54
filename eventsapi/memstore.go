package eventsapi

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Defaults of MemoryStoreConfig.
const (
	// MemoryCapacityDefault is how many events a MemoryStore holds; older
	// ones make room for new ones.
	MemoryCapacityDefault = 100_000
	// MemoryDedupeWindowDefault is how many recent event ids (and dedupe
	// keys) a MemoryStore recognises duplicates among.
	MemoryDedupeWindowDefault = 1_000_000
)

// MemoryStoreConfig configures a MemoryStore. A nil *MemoryStoreConfig is
// allowed.
type MemoryStoreConfig struct {
	// Capacity bounds the events held. Defaults to MemoryCapacityDefault.
	Capacity int
	// DedupeWindow is how many recent events' ids and dedupe keys are
	// remembered; at least Capacity. Defaults to MemoryDedupeWindowDefault.
	DedupeWindow int
	// NowFunc returns the time; defaults to time.Now.
	NowFunc func() time.Time
	// AppendedFunc, when set, is called by every Append that stored events
	// or found duplicates, with the stored copies (Position, ReceivedAt and
	// Time set) and the number of duplicates. It is called under the
	// store's lock, so in position order: it must be quick and must not
	// call the store. Development tools (txoutbox sink) print and count
	// what arrives with it. Defaults to nil.
	AppendedFunc func(stored []Event, duplicates int)
}

// MemoryStore is a Store in memory, bounded: it holds the last Capacity
// events. It is what the development server (txoutbox sink) runs on, and
// what tests use when the store is not what they test.
type MemoryStore struct {
	now      func() time.Time
	appended func([]Event, int)

	mu     sync.Mutex
	ring   []Event // ring[(pos-1)%len] holds pos, for oldest <= pos < next
	oldest int64
	next   int64
	closed bool

	// Duplicate detection over the last DedupeWindow events.
	ids     map[string]int64 // id → position
	dedupe  map[string]int64 // tenant \x00 dedupe key → position
	window  []dedupeEntry    // ring of what ids and dedupe hold
	windowI int

	// jobs holds the position of each job event held, by target topic and
	// source event id: what makes enrolment exactly once.
	jobs map[jobKey]int64
	live liveSubscribers

	notify chan struct{} // closed and replaced on every append
	ready  chan struct{} // always closed
}

// dedupeEntry is what the window remembers of a stored event: its id and
// dedupe key, at pos. A job that moved is remembered again at its new
// position; the old entry then forgets nothing.
type dedupeEntry struct {
	id, dedupe string
	pos        int64
}

type jobKey struct{ topic, dependsOn string }

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(cfg *MemoryStoreConfig) (*MemoryStore, error) {
	c := MemoryStoreConfig{}
	if cfg != nil {
		c = *cfg
	}
	switch {
	case c.Capacity < 0:
		return nil, fmt.Errorf("eventsapi.MemoryStoreConfig.Capacity: %d is negative", c.Capacity)
	case c.DedupeWindow < 0:
		return nil, fmt.Errorf("eventsapi.MemoryStoreConfig.DedupeWindow: %d is negative", c.DedupeWindow)
	}
	c.Capacity = cmp.Or(c.Capacity, MemoryCapacityDefault)
	c.DedupeWindow = max(cmp.Or(c.DedupeWindow, MemoryDedupeWindowDefault), c.Capacity)
	if c.NowFunc == nil {
		c.NowFunc = time.Now
	}
	ready := make(chan struct{})
	close(ready)
	return &MemoryStore{
		now:      c.NowFunc,
		appended: c.AppendedFunc,
		ring:     make([]Event, c.Capacity),
		oldest:   1,
		next:     1,
		ids:      make(map[string]int64, min(c.DedupeWindow, 1<<16)),
		dedupe:   make(map[string]int64),
		window:   make([]dedupeEntry, c.DedupeWindow),
		jobs:     make(map[jobKey]int64),
		notify:   make(chan struct{}),
		ready:    ready,
	}, nil
}

func dedupeID(tenant, key string) string { return tenant + "\x00" + key }

// Append implements Store.
func (s *MemoryStore) Append(ctx context.Context, events []Event) ([]Appended, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	out := make([]Appended, len(events))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	stored := false
	var copies []Event // for s.appended
	dups := 0
	for i := range events {
		ev := events[i]
		if pos, ok := s.ids[ev.ID]; ok {
			out[i] = Appended{Position: pos, Duplicate: true}
			dups++
			continue
		}
		var dk string
		if ev.DedupeKey != "" {
			dk = dedupeID(ev.Tenant, ev.DedupeKey)
			if pos, ok := s.dedupe[dk]; ok {
				out[i] = Appended{Position: pos, Duplicate: true}
				dups++
				continue
			}
		}
		ev.ReceivedAt = now
		if ev.Time.IsZero() {
			ev.Time = now
		}
		if ev.Status != "" {
			ev.UpdatedAt = now
		}
		s.put(&ev, dk)
		out[i] = Appended{Position: ev.Position}
		stored = true
		if s.appended != nil {
			copies = append(copies, ev)
		}
	}
	if stored {
		close(s.notify)
		s.notify = make(chan struct{})
	}
	if s.appended != nil && (stored || dups > 0) {
		s.appended(copies, dups)
	}
	return out, nil
}

// put stores ev at the next position, in the ring and in the window, making
// room for it. dk is its dedupe id, "" for none. s.mu is held.
func (s *MemoryStore) put(ev *Event, dk string) {
	ev.Position = s.next
	slot := s.at(ev.Position)
	if slot.ID != "" && slot.Position >= s.oldest {
		s.forget(slot)
	}
	*slot = *ev
	s.next++
	if s.next-s.oldest > int64(len(s.ring)) {
		s.oldest = s.next - int64(len(s.ring))
	}
	old := s.window[s.windowI]
	if old.id != "" && s.ids[old.id] == old.pos {
		delete(s.ids, old.id)
	}
	if old.dedupe != "" && s.dedupe[old.dedupe] == old.pos {
		delete(s.dedupe, old.dedupe)
	}
	s.window[s.windowI] = dedupeEntry{id: ev.ID, dedupe: dk, pos: ev.Position}
	s.windowI = (s.windowI + 1) % len(s.window)
	s.ids[ev.ID] = ev.Position
	if dk != "" {
		s.dedupe[dk] = ev.Position
	}
	if ev.DependsOn != "" {
		s.jobs[jobKey{ev.Topic, ev.DependsOn}] = ev.Position
	}
}

// forget drops what refers to ev, which leaves the ring. s.mu is held.
func (s *MemoryStore) forget(ev *Event) {
	if k := (jobKey{ev.Topic, ev.DependsOn}); ev.DependsOn != "" && s.jobs[k] == ev.Position {
		delete(s.jobs, k)
	}
}

// move stores job ev, changed, at the next position, leaving a hole at its
// old one. s.mu is held.
func (s *MemoryStore) move(ev *Event) {
	old := ev.Position
	*s.at(old) = Event{Position: old}
	var dk string
	if ev.DedupeKey != "" {
		dk = dedupeID(ev.Tenant, ev.DedupeKey)
	}
	s.put(ev, dk)
}

func (s *MemoryStore) at(pos int64) *Event { return &s.ring[(pos-1)%int64(len(s.ring))] }

// held reports whether ev, read from the ring, is an event: not the hole a
// job that moved left.
func held(ev *Event) bool { return ev.ID != "" }

// Read implements Store.
func (s *MemoryStore) Read(ctx context.Context, req *ReadRequest) ([]Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	limit := req.Limit
	if limit <= 0 {
		limit = 1000
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	lo, hi := max(req.After+1, s.oldest), s.next // [lo, hi)
	if req.Before > 0 {
		hi = min(hi, req.Before)
	}
	var out []Event
	if req.Descending {
		for pos := hi - 1; pos >= lo && len(out) < limit; pos-- {
			if ev := s.at(pos); held(ev) && req.Match.Match(ev) {
				out = append(out, *ev)
			}
		}
		return out, nil
	}
	for pos := lo; pos < hi && len(out) < limit; pos++ {
		if ev := s.at(pos); held(ev) && req.Match.Match(ev) {
			out = append(out, *ev)
		}
	}
	return out, nil
}

// Get implements Store.
func (s *MemoryStore) Get(ctx context.Context, tenant, id string) (Event, error) {
	if err := ctx.Err(); err != nil {
		return Event{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Event{}, ErrClosed
	}
	pos, ok := s.ids[id]
	if !ok || pos < s.oldest {
		return Event{}, ErrNotFound
	}
	ev := s.at(pos)
	if tenant != "" && ev.Tenant != tenant {
		return Event{}, ErrNotFound
	}
	return *ev, nil
}

// Latest implements Store. Events without a key are not part of any state.
func (s *MemoryStore) Latest(ctx context.Context, m *Matcher) ([]Event, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, 0, ErrClosed
	}
	latest := make(map[string]int64)
	for pos := s.oldest; pos < s.next; pos++ {
		if ev := s.at(pos); held(ev) && ev.Key != "" && m.Match(ev) {
			latest[ev.Key] = pos
		}
	}
	out := make([]Event, 0, len(latest))
	for _, pos := range latest {
		out = append(out, *s.at(pos))
	}
	slices.SortFunc(out, func(a, b Event) int { return cmp.Compare(a.Position, b.Position) })
	return out, s.next - 1, nil
}

// Head implements Store.
func (s *MemoryStore) Head(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	return s.next - 1, nil
}

// Oldest implements Store.
func (s *MemoryStore) Oldest(ctx context.Context) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	if s.next == s.oldest {
		return 0, nil
	}
	return s.oldest, nil
}

// Changed implements Store.
func (s *MemoryStore) Changed(after int64) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next-1 > after || s.closed {
		return s.ready
	}
	return s.notify
}

// Prune implements Store.
func (s *MemoryStore) Prune(ctx context.Context, olderThan time.Time, keep int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	start := s.oldest
	if keep > 0 && s.next-s.oldest > keep {
		s.oldest = s.next - keep
	}
	if !olderThan.IsZero() {
		for s.oldest < s.next && s.at(s.oldest).ReceivedAt.Before(olderThan) {
			s.oldest++
		}
	}
	for pos := start; pos < s.oldest; pos++ {
		s.forget(s.at(pos))
		*s.at(pos) = Event{Position: pos} // let the data go
	}
	return s.oldest - start, nil
}

// Close implements Store. Waiting readers are woken.
func (s *MemoryStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.notify)
	}
	return nil
}
