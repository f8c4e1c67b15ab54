package eventsapi

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// catchUpEvents is how many events the catch-up tests store: more than two
// store pages, and not a multiple of one.
const catchUpEvents = 2*storePage + 503

// fillCatchUp stores catchUpEvents events, every third an InvoicePaid, the
// others InvoiceCreated, and returns the positions of each kind.
func fillCatchUp(t testing.TB, st Store) (all, paid []int64) {
	t.Helper()
	evs := make([]Event, catchUpEvents)
	for i := range evs {
		action := "Created"
		if i%3 == 2 {
			action = "Paid"
		}
		evs[i] = testEvent("billing", "Invoice", action, "inv-"+strconv.Itoa(i))
	}
	for i := 0; i < len(evs); i += 500 {
		all = append(all, appendEvents(t, st, evs[i:min(i+500, len(evs))]...)...)
	}
	for i, p := range all {
		if i%3 == 2 {
			paid = append(paid, p)
		}
	}
	return all, paid
}

var paidOnly = Filter{Include: []Selector{{Topic: []string{"billing.InvoicePaid"}}}}

// drainCursor calls next until the cursor reaches the store's head and
// returns the positions handed out, checking every batch's bounds.
func drainCursor(t *testing.T, c *cursor, sel selection) []int64 {
	t.Helper()
	var got []int64
	batch := make([]entry, 0, deliverBatch)
	for {
		var wait <-chan struct{}
		var err error
		var g *gap
		batch, wait, g, err = c.next(t.Context(), sel, batch)
		if err != nil || g != nil {
			t.Fatalf("next: %v, gap %+v", err, g)
		}
		if len(batch) > deliverBatch {
			t.Fatalf("a batch of %d events, at most %d", len(batch), deliverBatch)
		}
		for _, e := range batch {
			got = append(got, e.pos)
		}
		if wait != nil {
			return got
		}
	}
}

// TestCatchUpStorePages: a cursor behind the ring reads the store a page at a
// time and hands each page out in bounded batches, with nothing lost or
// repeated: when it follows a filter, when a WebSocket state request reads
// up to a position in the middle of a page, and when the selection changes
// while it holds a page. A subscriber resuming further back than the ring
// reaches, over SSE with a filter and over WebSocket, receives every event
// it selects once and in order, and WebSocket events messages hold at most
// 256 events, as PROTOCOL.md says, though the store is read 1,000 at a
// time.
func TestCatchUpStorePages(t *testing.T) {
	t.Parallel()
	for _, k := range storeKinds() {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			st, _ := openStore(t, k)
			all, paid := fillCatchUp(t, st)
			// No pump: the ring never holds anything, every read is the
			// store's.
			h := newHub(st, slog.New(slog.NewTextHandler(io.Discard, nil)), 10, SubscriberBufferDefault)
			open := func() *cursor {
				zero := int64(0)
				c, err := h.openCursor(t.Context(), &zero)
				if err != nil {
					t.Fatal(err)
				}
				return c
			}
			every := selectionOf(nil)
			onlyPaid := selectionOf(MustCompile(paidOnly))

			t.Run("every event", func(t *testing.T) {
				if got := drainCursor(t, open(), every); !slices.Equal(got, all) {
					t.Errorf("handed out %d events, want the %d stored, in order", len(got), len(all))
				}
			})
			t.Run("filtered", func(t *testing.T) {
				if got := drainCursor(t, open(), onlyPaid); !slices.Equal(got, paid) {
					t.Errorf("handed out %d events, want the %d matching, in order", len(got), len(paid))
				}
			})
			t.Run("up to a position inside a page", func(t *testing.T) {
				c := open()
				first, _, _, err := c.next(t.Context(), every, nil)
				if err != nil || len(first) != deliverBatch {
					t.Fatalf("first batch: %d events, %v", len(first), err)
				}
				got := positions(entriesEvents(first))
				until := all[storePage/2+1]
				for c.pos < until {
					out, g, _, err := c.readStore(t.Context(), every, nil, until)
					if err != nil || g != nil {
						t.Fatalf("readStore: %v, gap %+v", err, g)
					}
					for _, e := range out {
						if e.pos > until {
							t.Fatalf("handed out position %d, beyond %d", e.pos, until)
						}
						got = append(got, e.pos)
					}
				}
				if c.pos != until {
					t.Fatalf("cursor at %d, want %d", c.pos, until)
				}
				got = append(got, drainCursor(t, c, every)...)
				if !slices.Equal(got, all) {
					t.Errorf("handed out %d events, want the %d stored, in order", len(got), len(all))
				}
			})
			t.Run("selection changes", func(t *testing.T) {
				c := open()
				first, _, _, err := c.next(t.Context(), onlyPaid, nil)
				if err != nil || len(first) != deliverBatch {
					t.Fatalf("first batch: %d events, %v", len(first), err)
				}
				got := positions(entriesEvents(first))
				last := got[len(got)-1]
				// The page holds only InvoicePaid events: a selection of
				// every event must not be served from it.
				got = append(got, drainCursor(t, c, every)...)
				want := append(slices.Clone(paid[:deliverBatch]), all[slices.Index(all, last)+1:]...)
				if !slices.Equal(got, want) {
					t.Errorf("handed out %d events, want %d: the Paid ones up to %d, then every one", len(got), len(want), last)
				}
			})
			t.Run("streams", func(t *testing.T) {
				// A ring smaller than a page: the subscribers read the store.
				env := newTestEnv(t, &Config{Store: st, SubscriberBuffer: 100}, envOptions{})

				s := openStream(t, env, "/api/stream?last_event_id=0&topic=billing.InvoicePaid", nil)
				if _, err := s.read(); err != nil {
					t.Fatal(err)
				}
				if got := positions(s.events(len(paid))); !slices.Equal(got, paid) {
					t.Errorf("SSE: %d events, want the %d matching, in order", len(got), len(paid))
				}

				ws := dialWS(t, env)
				ws.send(map[string]any{"type": "start", "last_event_id": 0})
				ws.expect("session")
				ws.subscribe("all", nil, nil)
				var got []int64
				deadline := time.Now().Add(time.Minute)
				for len(got) < len(all) && time.Now().Before(deadline) {
					m, err := ws.recv()
					if err != nil {
						t.Fatal(err)
					}
					if m.Type != "events" {
						t.Fatalf("after %d events: %+v", len(got), m)
					}
					if len(m.Events) > deliverBatch {
						t.Fatalf("an events message of %d events, at most %d", len(m.Events), deliverBatch)
					}
					got = append(got, positions(m.Events)...)
				}
				if !slices.Equal(got, all) {
					t.Errorf("WebSocket: %d events, want the %d stored, in order", len(got), len(all))
				}
			})
		})
	}
}

// TestIdleStreamsHoldNoWriteBuffers: a stream gathers its events in a
// buffer of deliverBytes only while it writes, so that many streams that
// received a burst and went idle hold none. Not parallel: it measures the
// heap.
func TestIdleStreamsHoldNoWriteBuffers(t *testing.T) {
	const streams, events, eventSize = 200, 1000, 1024
	env := newTestEnv(t, &Config{MaxSubscribers: streams}, envOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var received atomic.Int64
	failed := make(chan error, streams)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range streams {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, env.url+"/api/stream", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := env.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			for {
				line, err := br.ReadSlice('\n')
				switch {
				case err != nil:
					if ctx.Err() == nil {
						failed <- err
					}
					return
				case bytes.HasPrefix(line, []byte("data: ")):
					received.Add(1)
				}
			}
		})
	}
	eventually(t, 30*time.Second, "the streams are open", func() bool { return openStreams(env.srv) == streams })
	before := heapInUse()
	burst(t, env.store, events, eventSize)
	eventually(t, time.Minute, "every stream has every event", func() bool {
		select {
		case err := <-failed:
			t.Fatal(err)
		default:
		}
		return received.Load() == streams*events
	})
	growth := heapInUse() - before
	t.Logf("heap in use grew by %d KiB with %d idle streams after a burst of %d KiB", growth>>10, streams, events*eventSize>>10)
	// The store and the ring hold about twice the burst; a buffer kept
	// per stream would add streams × deliverBytes.
	if limit := int64(streams * deliverBytes / 4); growth > limit {
		t.Errorf("heap grew by %d MiB, more than %d MiB", growth>>20, limit>>20)
	}
}

func entriesEvents(es []entry) []Event {
	evs := make([]Event, len(es))
	for i, e := range es {
		evs[i] = *e.ev
	}
	return evs
}

// TestIdleWebSocketsHoldNoWriteBuffers: as for SSE streams, a WebSocket
// connection gathers its events messages in a pooled buffer it gives back
// after each write, so idle connections hold none.
func TestIdleWebSocketsHoldNoWriteBuffers(t *testing.T) {
	const conns, events, eventSize = 100, 500, 1024
	env := newTestEnv(t, &Config{MaxSubscribers: conns}, envOptions{})
	clients := make([]*wsClient, conns)
	for i := range clients {
		clients[i] = dialWS(t, env)
		clients[i].start()
		clients[i].subscribe("all", nil, nil)
	}
	before := heapInUse()
	burst(t, env.store, events, eventSize)
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Go(func() {
			for got := 0; got < events; {
				if _, err := c.recv(); err != nil {
					errs <- err
					return
				}
				got += len(c.events)
				c.events = nil // count them; keeping them would weigh more than the server
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	growth := heapInUse() - before
	t.Logf("heap in use grew by %d KiB with %d idle connections after a burst of %d KiB", growth>>10, conns, events*eventSize>>10)
	// A buffer kept per connection would add conns × deliverBytes (25 MiB);
	// the store and the ring hold about twice the burst.
	if limit := int64(conns * deliverBytes / 2); growth > limit {
		t.Errorf("heap grew by %d MiB, more than %d MiB", growth>>20, limit>>20)
	}
}

// heapInUse is the heap in use after two collections.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}
