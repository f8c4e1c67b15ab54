package eventsapi

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned by Store.Get for an id the store does not hold.
var ErrNotFound = errors.New("eventsapi: event not found")

// ErrClosed is returned by a Store's methods after Close.
var ErrClosed = errors.New("eventsapi: store closed")

// Store keeps events and hands out their stream positions. [MemoryStore] is
// the development store; [PostgresStore] the durable one. Implementations are
// safe for concurrent use.
//
// The rule every Store keeps, and the one subscriptions rely on: positions
// become visible in order. Once a reader has seen an event at position P, no
// event at a position below P can appear later. (A store that handed out
// positions from a sequence inside concurrent transactions would break it:
// a transaction that took position 7 and commits after the one that took 8
// lands behind a reader that already passed 8.)
type Store interface {
	// Append stores events in order and answers, for each, where it was
	// stored, or that it is a duplicate of a stored event (same ID, or same
	// Tenant and DedupeKey) and where that one is. Events are stored all or
	// none: on error nothing was stored. Append sets ReceivedAt, and Time
	// when it is zero, on the stored copies.
	Append(ctx context.Context, events []Event) ([]Appended, error)
	// Read returns up to req.Limit events matching req.Match in position
	// order (descending when req.Descending), between req.After and
	// req.Before exclusive.
	Read(ctx context.Context, req *ReadRequest) ([]Event, error)
	// Get returns the event with id, or ErrNotFound. A tenant that is not
	// empty must match too (ErrNotFound otherwise).
	Get(ctx context.Context, tenant, id string) (Event, error)
	// Latest returns, for every key that has an event matching m, the
	// latest such event, in position order, as of a single position: the
	// second result. Reading from that position on misses nothing and
	// repeats nothing of the snapshot.
	Latest(ctx context.Context, m *Matcher) ([]Event, int64, error)
	// Head returns the position of the last event visible to readers, 0
	// when there is none yet. It never goes back, even when retention
	// deletes every event: subscribers resume against it, and a position
	// beyond the head means the store was reset.
	Head(ctx context.Context) (int64, error)
	// Oldest returns the position of the oldest event still held (retention
	// removes older ones), 0 when the store is empty.
	Oldest(ctx context.Context) (int64, error)
	// Changed returns a channel closed once Head may have moved past after
	// (including by another process sharing the store). It is a hint:
	// readers check with Read, and a store may close it spuriously.
	Changed(after int64) <-chan struct{}
	// Prune deletes events stored before olderThan (when not zero) and
	// events beyond the newest keep (when keep > 0), in bounded batches, and
	// returns how many it deleted.
	Prune(ctx context.Context, olderThan time.Time, keep int64) (int64, error)
	// Close releases what the store holds; it does not close a pool it was
	// given.
	Close() error
}

// Appended is where Append put one event.
type Appended struct {
	// Position of the stored event, or of the event it duplicates.
	Position int64
	// Duplicate says the event was stored before and was not stored again.
	Duplicate bool
}

// ReadRequest selects events for Store.Read.
type ReadRequest struct {
	// After and Before bound the positions read, exclusive; zero means no
	// bound.
	After, Before int64
	// Descending reads newest first.
	Descending bool
	// Limit caps the events returned; a store may cap it lower.
	Limit int
	// Match selects events; nil matches every event.
	Match *Matcher
}
