package eventsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Sizes of the fan-out.
const (
	// pumpBatch is how many events the pump reads from the store at a time,
	// at most: a quarter of the ring, so that a subscriber that keeps up is
	// not cut off by one batch.
	pumpBatch = 1000
	// deliverBatch bounds the events a subscriber takes at a time, from the
	// ring or from the store.
	deliverBatch = 256
	// deliverBytes bounds the encoded events a subscriber gathers before
	// writing them.
	deliverBytes = 256 << 10
	// ringBytesMax bounds the encoded events the ring holds, whatever their
	// size; beside it, the ring holds Config.SubscriberBuffer events.
	ringBytesMax = 64 << 20
)

var (
	errTooManySubscribers = errors.New("too many subscribers")
	errShuttingDown       = errors.New("server shutting down")
	// errSlowConsumer ends a live subscriber that fell too far behind.
	errSlowConsumer = errors.New("slow consumer")
)

// entry is one event in the ring: immutable once published, shared by every
// subscriber.
type entry struct {
	pos  int64
	ev   *Event // for matching
	data []byte // the event's JSON, encoded once
	// lost, when not zero: retention removed the events between the
	// previous entry and this one, up to position lost, before the pump
	// read them. A subscriber behind lost is told of the gap.
	lost int64
	// live: a live-only event (Event.Live), not stored. Its pos is that of
	// the last event published before it, which keeps the ring in position
	// order; cursors reading the ring deliver it without moving.
	live bool
	// msg is the event as the EventService sends it, made by the first
	// gRPC stream that sends the entry and shared by the others.
	msg *rpcMessage
}

// hub fans the store's new events out to the subscribers of one Server.
//
// One pump goroutine tails the store and publishes every new event, encoded
// once, to a ring of the last ones. Each subscriber walks the ring with its
// own cursor, matches entries with its filter and writes their bytes; a
// subscriber behind the ring reads the store instead until it catches up.
// Memory is the ring, shared and bounded, plus a bounded batch per
// subscriber, and a page of at most storePage events read from the store
// per subscriber behind the ring.
type hub struct {
	store    Store
	logger   *slog.Logger
	maxLag   int64 // Config.SubscriberBuffer
	sessions *sessions
	bufs     writeBuffers // the SSE streams' write buffers

	mu    sync.RWMutex // guards the ring
	ring  []entry      // ring[seq%len(ring)] holds entry seq, start <= seq < end
	start int64
	end   int64
	bytes int   // encoded bytes held
	ready bool  // floor and head are set
	floor int64 // positions <= floor are not in the ring (evicted or before the pump started)
	head  int64 // the last position published
	wake  chan struct{}

	smu     sync.Mutex // guards the stream count
	streams int
	max     int
	closed  bool
	idle    chan struct{} // closed once closed and no stream is open
}

func newHub(store Store, logger *slog.Logger, maxSubscribers, subscriberBuffer int) *hub {
	return &hub{
		store:    store,
		logger:   logger,
		maxLag:   int64(subscriberBuffer),
		sessions: newSessions(sessionKeep, sessionsKept),
		ring:     make([]entry, subscriberBuffer),
		wake:     make(chan struct{}),
		max:      maxSubscribers,
		idle:     make(chan struct{}),
	}
}

// acquire counts a new stream in, or says why it cannot open.
func (h *hub) acquire() error {
	h.smu.Lock()
	defer h.smu.Unlock()
	switch {
	case h.closed:
		return errShuttingDown
	case h.streams >= h.max:
		return errTooManySubscribers
	}
	h.streams++
	return nil
}

// release counts a stream out.
func (h *hub) release() {
	h.smu.Lock()
	defer h.smu.Unlock()
	h.streams--
	if h.closed && h.streams == 0 {
		close(h.idle)
	}
}

// shutdown refuses new streams and waits for the open ones to end (they
// watch the server's context).
func (h *hub) shutdown() {
	h.smu.Lock()
	h.closed = true
	if h.streams == 0 {
		close(h.idle)
	}
	h.smu.Unlock()
	<-h.idle
}

// run is the pump: it tails the store until ctx ends, then waits for the
// streams to end.
func (h *hub) run(ctx context.Context) {
	defer h.shutdown()
	var head int64
	for backoff := time.Duration(0); ; {
		if !sleep(ctx, backoff) {
			return
		}
		var err error
		if head, err = h.store.Head(ctx); err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		backoff = h.retry(backoff, err)
	}
	h.mu.Lock()
	h.ready, h.floor, h.head = true, head, head
	h.signal()
	h.mu.Unlock()

	limit := int(min(pumpBatch, max(1, h.maxLag/4)))

	for backoff := time.Duration(0); ; {
		if !sleep(ctx, backoff) {
			return
		}
		changed := h.store.Changed(head)
		evs, err := h.store.Read(ctx, &ReadRequest{After: head, Limit: limit})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = h.retry(backoff, err)
			continue
		}
		backoff = 0
		if len(evs) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
			continue
		}
		// Retention may have removed events after head before this read:
		// the ring says so to the subscribers that wait for them.
		oldest, err := h.store.Oldest(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = h.retry(backoff, err)
			continue
		}
		entries := make([]entry, len(evs))
		for i := range evs {
			entries[i] = entry{pos: evs[i].Position, ev: &evs[i], data: h.encode(&evs[i]), msg: new(rpcMessage)}
		}
		if lost := min(oldest-1, evs[0].Position-1); lost > head {
			entries[0].lost = lost
		} else if oldest == 0 && evs[0].Position-1 > head {
			entries[0].lost = evs[0].Position - 1 // the store emptied since
		}
		h.publish(entries)
		head = evs[len(evs)-1].Position
	}
}

// retry logs a failed store read and returns the next backoff.
func (h *hub) retry(backoff time.Duration, err error) time.Duration {
	h.logger.Error("events API: live subscriptions cannot read the store", "error", err)
	return min(max(2*backoff, 50*time.Millisecond), 5*time.Second)
}

// sleep waits d or until ctx ends, and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// encode returns ev's JSON, as json.Marshal writes it. It has no newline
// (encoding/json compacts RawMessage data too), as the SSE framing needs.
func (h *hub) encode(ev *Event) []byte {
	b, err := appendEventJSON(make([]byte, 0, 384+len(ev.Data)), ev)
	if err != nil {
		// Only data that is not JSON gets here; stores hold validated data.
		h.logger.Error("events API: event data is not JSON; sending it as null", "position", ev.Position, "id", ev.ID, "error", err)
		e := *ev
		e.Data = json.RawMessage("null")
		b, _ = json.Marshal(&e)
	}
	return b
}

// publish appends entries to the ring, evicting the oldest, and wakes the
// subscribers.
func (h *hub) publish(entries []entry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	size := int64(len(h.ring))
	for _, e := range entries {
		if e.live {
			e.pos = h.head
		}
		for h.end > h.start && (h.end-h.start == size || h.bytes+len(e.data) > ringBytesMax) {
			old := &h.ring[h.start%size]
			h.floor = old.pos
			h.bytes -= len(old.data)
			*old = entry{}
			h.start++
		}
		h.ring[h.end%size] = e
		h.end++
		h.bytes += len(e.data)
		h.head = e.pos
	}
	h.signal()
}

// signal wakes whoever waits on h.wake; h.mu is held.
func (h *hub) signal() {
	close(h.wake)
	h.wake = make(chan struct{})
}

// join returns the ring sequence of the first entry after pos, when the ring
// holds every event after pos.
func (h *hub) join(pos int64) (int64, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if !h.ready || pos < h.floor {
		return 0, false
	}
	lo, hi := h.start, h.end
	size := int64(len(h.ring))
	for lo < hi {
		mid := lo + (hi-lo)/2
		if h.ring[mid%size].pos <= pos {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, true
}

// take appends to buf the entries from seq on, at most deliverBatch, and
// returns the channel closed on the next publish. It fails with
// errSlowConsumer when seq is more than maxLag entries behind the newest or
// out of the ring.
func (h *hub) take(seq int64, buf []entry) ([]entry, <-chan struct{}, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if seq < h.start || h.end-seq > h.maxLag {
		return buf, nil, fmt.Errorf("%w: %d events behind the newest, at most %d", errSlowConsumer, h.end-seq, h.maxLag)
	}
	size := int64(len(h.ring))
	for s := seq; s < h.end && len(buf) < deliverBatch; s++ {
		buf = append(buf, h.ring[s%size])
	}
	return buf, h.wake, nil
}

// selection is what one subscriber receives.
type selection struct {
	// match decides per event.
	match func(*Event) bool
	// store is what the store can select by when the subscriber catches up;
	// what it returns is checked with match too. Nil reads every event.
	store *Matcher
}

func selectionOf(m *Matcher) selection { return selection{match: m.Match, store: m} }

// gap says that events after Position were removed before the subscriber
// read them, or that the position resumed from is beyond the newest event.
type gap struct {
	// After is the position the subscriber resumed from; the stream goes
	// on after Position.
	After, Position int64
	Beyond          bool // After is beyond the newest event: the store was reset
}

func (g *gap) message() string {
	if g.Beyond {
		return fmt.Sprintf("position %d is beyond the newest event: the store was reset; the stream starts over from the oldest event held", g.After)
	}
	return fmt.Sprintf("events after position %d up to %d are no longer held (retention removed them); the stream goes on after %d", g.After, g.Position, g.Position)
}

// cursor walks the stream for one subscriber: from the ring while it keeps
// up, from the store while it is behind the ring. It is owned by one
// goroutine.
type cursor struct {
	h   *hub
	pos int64 // last position handled: delivered, or passed over by the filter
	seq int64 // ring sequence of the next entry, when live
	// live: the cursor reads the ring, and falling behind it ends the
	// subscriber. A cursor that is not live reads the store until it can
	// join the ring.
	live    bool
	scratch []entry
	pending *gap
	// page holds what the cursor read from the store and has yet to hand
	// out: every event after pos up to pageEnd that pageSel selects (nil:
	// every event), in position order. It is dropped when the cursor joins
	// the ring.
	page    []Event
	pageEnd int64
	pageSel *Matcher
}

// openCursor returns a cursor after position after, or after the newest
// event when after is nil. A position beyond the newest event (the store was
// reset) restarts from the oldest event held, and the cursor's first next
// reports it as a gap.
func (h *hub) openCursor(ctx context.Context, after *int64) (*cursor, error) {
	head, err := h.store.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the store's head: %w", err)
	}
	c := &cursor{h: h, pos: head, scratch: make([]entry, 0, deliverBatch)}
	if after != nil && *after <= head {
		c.pos = *after
	} else if after != nil {
		oldest, err := h.store.Oldest(ctx)
		if err != nil {
			return nil, fmt.Errorf("read the store's oldest position: %w", err)
		}
		c.pos = max(oldest-1, 0)
		c.pending = &gap{After: *after, Position: c.pos, Beyond: true}
	}
	return c, nil
}

// next appends to out the next entries after the cursor that sel matches:
// at most deliverBatch, and deliverBytes of data give or take an event. With
// none, it returns a channel closed when there may be more. A gap it passed
// over is returned beside. A live cursor that fell behind the ring fails
// with errSlowConsumer.
func (c *cursor) next(ctx context.Context, sel selection, out []entry) ([]entry, <-chan struct{}, *gap, error) {
	out = out[:0]
	g := c.pending
	c.pending = nil
	for {
		if err := ctx.Err(); err != nil {
			return out, nil, g, err
		}
		if !c.live {
			if seq, ok := c.h.join(c.pos); ok {
				c.seq, c.live = seq, true
				c.page, c.pageSel = nil, nil
			}
		}
		if !c.live {
			var g2 *gap
			var err error
			var progressed bool
			out, g2, progressed, err = c.readStore(ctx, sel, out, 0)
			g = mergeGap(g, g2)
			if err != nil || len(out) > 0 || g != nil {
				return out, nil, g, err
			}
			if !progressed {
				// At the store's head and not in the ring: the pump has not
				// started, or has yet to publish what the store holds.
				return out, c.h.store.Changed(c.pos), nil, nil
			}
			continue
		}
		var wait <-chan struct{}
		var err error
		c.scratch, wait, err = c.h.take(c.seq, c.scratch[:0])
		if err != nil {
			return out, nil, g, err
		}
		if len(c.scratch) == 0 {
			return out, wait, g, nil
		}
		n := 0
		for _, e := range c.scratch {
			c.seq++
			if e.live {
				if sel.match(e.ev) {
					out = append(out, e)
					n += len(e.data)
				}
				continue
			}
			if e.pos <= c.pos {
				continue
			}
			if e.lost > c.pos {
				if len(out) > 0 {
					c.seq-- // deliver what comes before the gap first
					break
				}
				g = mergeGap(g, &gap{After: c.pos, Position: e.lost})
			}
			c.pos = e.pos
			if sel.match(e.ev) {
				out = append(out, e)
				if n += len(e.data); n >= deliverBytes {
					break
				}
			}
		}
		if len(out) > 0 || g != nil {
			return out, nil, g, nil
		}
	}
}

// mergeGap returns the gaps a then b as one.
func mergeGap(a, b *gap) *gap {
	if a == nil {
		return b
	}
	if b != nil {
		a.Position = b.Position
	}
	return a
}

// storePage is how many events a cursor behind the ring reads from the
// store at a time. It hands them out deliverBatch at a time and keeps the
// rest for its next calls: a large page costs few queries per event,
// which is what bounds how fast a subscriber catches up.
const storePage = 1000

// readStore appends to out the next events after the cursor that sel
// matches, from the store, up to position until (the store's head when
// zero): at most deliverBatch, and deliverBytes of data give or take an
// event, from the page it holds or, when it holds none, a page it reads. It
// reports a gap when retention removed events after the cursor, and whether
// the cursor moved. The cursor is left not live: it joins the ring again on
// its next call.
func (c *cursor) readStore(ctx context.Context, sel selection, out []entry, until int64) ([]entry, *gap, bool, error) {
	c.live = false
	if c.pageSel != nil && c.pageSel != sel.store {
		// Read for another selection, which it may not cover: only a page
		// of every event, or of the same selection, serves.
		c.page = nil
	}
	var g *gap
	if len(c.page) == 0 {
		var atHead bool
		var err error
		if g, atHead, err = c.readPage(ctx, sel, until); err != nil || atHead {
			return out, g, err == nil && g != nil, err
		}
	}
	n := 0
	for len(c.page) > 0 && len(out) < deliverBatch && n < deliverBytes {
		ev := &c.page[0]
		if until > 0 && ev.Position > until {
			break
		}
		c.page = c.page[1:]
		c.pos = ev.Position
		if sel.match(ev) {
			out = append(out, entry{pos: ev.Position, ev: ev, data: c.h.encode(ev)})
			n += len(out[len(out)-1].data)
		}
	}
	if len(c.page) == 0 || (until > 0 && c.page[0].Position > until) {
		// Every event the page covers up to until was handed out.
		end := c.pageEnd
		if until > 0 {
			end = min(end, until)
		}
		c.pos = max(c.pos, end)
	}
	if len(c.page) == 0 {
		c.page = nil
	}
	return out, g, true, nil
}

// readPage reads the next page after the cursor, up to position until (the
// store's head when zero), into c.page. It reports a gap when retention
// removed events after the cursor, moving the cursor past them, and whether
// the cursor was already at the head.
func (c *cursor) readPage(ctx context.Context, sel selection, until int64) (*gap, bool, error) {
	st := c.h.store
	var g *gap
	for {
		oldest, err := st.Oldest(ctx)
		if err != nil {
			return g, false, fmt.Errorf("read the store's oldest position: %w", err)
		}
		head := until
		if head == 0 {
			if head, err = st.Head(ctx); err != nil {
				return g, false, fmt.Errorf("read the store's head: %w", err)
			}
		}
		if lost := max(oldest-1, 0); oldest == 0 && head > c.pos {
			lost = head // every event after the cursor was removed
			g = mergeGap(g, &gap{After: c.pos, Position: lost})
			c.pos = lost
		} else if lost > c.pos {
			g = mergeGap(g, &gap{After: c.pos, Position: lost})
			c.pos = lost
		}
		if c.pos >= head {
			return g, true, nil
		}
		after := c.pos
		evs, err := st.Read(ctx, &ReadRequest{After: after, Before: head + 1, Limit: storePage, Match: sel.store})
		if err != nil {
			return g, false, fmt.Errorf("read the store: %w", err)
		}
		// Retention running during the read may have removed events the
		// read then skipped: read again, and the check above reports it.
		if o, err := st.Oldest(ctx); err != nil {
			return g, false, fmt.Errorf("read the store's oldest position: %w", err)
		} else if o > after+1 && oldest <= after+1 {
			continue
		}
		c.page, c.pageSel = evs, sel.store
		if len(evs) < storePage {
			c.pageEnd = head
		} else {
			c.pageEnd = evs[len(evs)-1].Position
		}
		return g, false, nil
	}
}
