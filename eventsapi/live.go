package eventsapi

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrLiveTooLarge is wrapped by *LiveTooLargeError.
var ErrLiveTooLarge = errors.New("eventsapi: live event too large")

// LiveTooLargeError is a live-only event too large for the store to carry
// to the other instances sharing it (PostgreSQL notifications take less
// than 8,000 bytes). It wraps ErrLiveTooLarge.
type LiveTooLargeError struct {
	ID         string
	Size, Max  int // the event's JSON, and the most the store carries
	StoreLimit string
}

func (e *LiveTooLargeError) Error() string {
	return fmt.Sprintf("live event %s is %d bytes of JSON, at most %d (%s)", e.ID, e.Size, e.Max, e.StoreLimit)
}

// Unwrap returns ErrLiveTooLarge.
func (e *LiveTooLargeError) Unwrap() error { return ErrLiveTooLarge }

// LiveStore is what a Store implements to carry live-only events (Event.Live:
// a job's progress, say) between the servers that share it, without storing
// them. MemoryStore delivers them in process; PostgresStore with NOTIFY on a
// channel of its own. A server whose store is not a LiveStore delivers them
// to its own subscribers only.
type LiveStore interface {
	// PublishLive hands evs to every function SubscribeLive registered,
	// in this process and (for a shared store) in the others. Delivery is
	// at most once: a subscriber not listening at the time misses them.
	PublishLive(ctx context.Context, evs []Event) error
	// SubscribeLive calls fn with the live events published from now on,
	// until stop is called. fn must be quick and must not call the store.
	SubscribeLive(fn func([]Event)) (stop func())
}

// publishLive delivers evs to the live subscribers that match them, on
// every server sharing the store when it is a LiveStore, without storing
// them: subscribers reading the store to catch up never see them.
func (s *Server) publishLive(ctx context.Context, evs []Event) error {
	if len(evs) == 0 {
		return nil
	}
	out := make([]Event, len(evs))
	for i, ev := range evs {
		ev.Live, ev.Position = true, 0
		if ev.ReceivedAt.IsZero() {
			ev.ReceivedAt = s.cfg.NowFunc().UTC()
		}
		if ev.Time.IsZero() {
			ev.Time = ev.ReceivedAt
		}
		out[i] = ev
	}
	if ls, ok := s.cfg.Store.(LiveStore); ok {
		return ls.PublishLive(ctx, out)
	}
	s.hub.publishLive(out)
	return nil
}

// subscribeLive feeds the store's live events to the hub, when the store
// carries them; the returned function stops it.
func (s *Server) subscribeLive() func() {
	ls, ok := s.cfg.Store.(LiveStore)
	if !ok {
		return func() {}
	}
	return ls.SubscribeLive(s.hub.publishLive)
}

// publishLive adds live entries for evs to the ring (see publish).
func (h *hub) publishLive(evs []Event) {
	entries := make([]entry, len(evs))
	for i := range evs {
		ev := &evs[i]
		entries[i] = entry{ev: ev, data: h.encode(ev), live: true, msg: new(rpcMessage)}
	}
	h.publish(entries)
}

// liveSubscribers are the functions SubscribeLive registered with a store.
type liveSubscribers struct {
	mu   sync.Mutex
	fns  map[int]func([]Event)
	next int
}

// add registers fn and returns the function that removes it.
func (l *liveSubscribers) add(fn func([]Event)) func() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fns == nil {
		l.fns = make(map[int]func([]Event))
	}
	id := l.next
	l.next++
	l.fns[id] = fn
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.fns, id)
	}
}

// deliver calls every registered function with evs, outside the lock.
func (l *liveSubscribers) deliver(evs []Event) {
	l.mu.Lock()
	fns := make([]func([]Event), 0, len(l.fns))
	for _, fn := range l.fns {
		fns = append(fns, fn)
	}
	l.mu.Unlock()
	for _, fn := range fns {
		fn(evs)
	}
}
