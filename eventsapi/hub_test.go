package eventsapi

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestSlowConsumerMemoryBounded: clients that stop reading are cut off, the
// server's memory stays bounded through a burst many times its buffers, and
// a client that reads receives every event. Not parallel: it measures the
// heap.
func TestSlowConsumerMemoryBounded(t *testing.T) {
	const (
		events    = 30_000
		eventSize = 1024
		buffer    = 1000
	)
	store := newTestMemoryStore(t, &MemoryStoreConfig{Capacity: 2 * buffer})
	env := newTestEnv(t, &Config{Store: store, SubscriberBuffer: buffer, WriteTimeout: 500 * time.Millisecond}, envOptions{})

	// A stream whose client never reads, on a raw connection.
	raw, err := net.Dial("tcp", strings.TrimPrefix(env.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	if _, err := fmt.Fprintf(raw, "GET /api/stream HTTP/1.1\r\nHost: %s\r\n\r\n", raw.RemoteAddr()); err != nil {
		t.Fatal(err)
	}
	// A WebSocket that never reads after subscribing.
	ws := dialWS(t, env)
	ws.start()
	ws.subscribe("all", nil, nil)
	// A stream that reads everything.
	reader := openStream(t, env, "/api/stream", nil)
	if _, err := reader.read(); err != nil {
		t.Fatal(err)
	}
	var received atomic.Int64
	readErr := make(chan error, 1)
	go func() {
		for n := int64(1); n <= events; n++ {
			m, err := reader.next()
			if err == nil && (m.event != "" || m.id != fmt.Sprint(n)) {
				err = fmt.Errorf("got %s %s at %d", m.event, m.data, n)
			}
			if err != nil {
				readErr <- err
				return
			}
			received.Store(n)
		}
		readErr <- nil
	}()
	eventually(t, 10*time.Second, "three streams open", func() bool { return openStreams(env.srv) == 3 })

	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	before := heap()
	for i := 0; i < events; i += 100 {
		burst(t, store, 100, eventSize)
		// Keep the pace of the reading client, within its buffer.
		eventually(t, 30*time.Second, "the reading client keeps up", func() bool { return received.Load() >= int64(i+100-buffer/2) })
	}
	after := heap()
	growth := int64(after) - int64(before)
	t.Logf("heap in use %d MiB before a burst of %d MiB, %d MiB after", before>>20, events*eventSize>>20, after>>20)
	// The store and the ring hold about 6 MiB of it; a queue per slow
	// client would hold the whole burst.
	if limit := int64(events * eventSize / 2); growth > limit {
		t.Errorf("heap grew by %d MiB, more than %d MiB", growth>>20, limit>>20)
	}
	if err := <-readErr; err != nil {
		t.Fatalf("the reading client: %v", err)
	}
	eventually(t, 10*time.Second, "the slow streams are cut", func() bool { return openStreams(env.srv) == 1 })

	// The raw stream ends once what the socket buffers held is read.
	_ = raw.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(raw), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil && !isReset(err) {
		t.Fatalf("the raw stream did not end: %v", err)
	}
	// The WebSocket's end: whatever the socket held, then the close.
	for {
		if _, err := ws.recv(); err != nil {
			break
		}
	}
}

// isReset reports whether err is the peer closing with data unread: the
// server closed the connection while its own buffer still held bytes.
func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset") || strings.Contains(err.Error(), "unexpected EOF")
}

// openStreams returns how many streams srv has open.
func openStreams(srv *Server) int {
	srv.hub.smu.Lock()
	defer srv.hub.smu.Unlock()
	return srv.hub.streams
}

// pumped returns the position the pump has published up to, -1 before it
// starts.
func pumped(srv *Server) int64 {
	srv.hub.mu.RLock()
	defer srv.hub.mu.RUnlock()
	if !srv.hub.ready {
		return -1
	}
	return srv.hub.head
}

// BenchmarkFanout measures deliveries per second from one store to
// subscribers on real HTTP connections, each receiving every event.
func BenchmarkFanout(b *testing.B) {
	for _, subscribers := range []int{100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", subscribers), func(b *testing.B) {
			benchmarkFanout(b, subscribers)
		})
	}
}

func benchmarkFanout(b *testing.B, subscribers int) {
	const batch, window = 100, SubscriberBufferDefault / 2
	env := newTestEnv(b, &Config{MaxSubscribers: subscribers}, envOptions{})
	counts := make([]atomic.Int64, subscribers)
	failed := make(chan error, subscribers)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range subscribers {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, env.url+"/api/stream", nil)
		if err != nil {
			b.Fatal(err)
		}
		resp, err := env.client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			defer resp.Body.Close()
			br := bufio.NewReaderSize(resp.Body, 64<<10)
			for {
				line, err := br.ReadSlice('\n')
				switch {
				case err != nil:
					if ctx.Err() == nil {
						failed <- err
					}
					return
				case bytes.HasPrefix(line, []byte("data: ")):
					counts[i].Add(1)
				case bytes.HasPrefix(line, []byte("event: ")):
					failed <- fmt.Errorf("subscriber %d: %s", i, line)
					return
				}
			}
		}()
	}
	eventually(b, time.Minute, "the subscribers are connected", func() bool { return openStreams(env.srv) == subscribers })
	evs := make([]Event, b.N)
	for i := range evs {
		evs[i] = testEvent("billing", "Invoice", "Updated", fmt.Sprint("inv-", i%1000))
		evs[i].Data = []byte(`{"id":"inv-1","amount":1234,"currency":"EUR","lines":[{"sku":"a-1","qty":2},{"sku":"b-2","qty":1}]}`)
	}
	slowest := func() int64 {
		low := counts[0].Load()
		for i := range counts {
			low = min(low, counts[i].Load())
		}
		return low
	}

	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		appendEvents(b, env.store, evs[i:min(i+batch, b.N)]...)
		// Stay within the subscribers' buffer: a steady load, not a burst
		// that cuts them off.
		for slowest() < int64(i-window) {
			select {
			case err := <-failed:
				b.Fatal(err)
			case <-time.After(time.Millisecond):
			}
		}
	}
	for slowest() < int64(b.N) {
		select {
		case err := <-failed:
			b.Fatal(err)
		case <-time.After(time.Millisecond):
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)*float64(subscribers)/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(0, "ns/op")
}

// gatedStore holds the pump back until the gate opens: Changed answers the
// gate until then.
type gatedStore struct {
	Store
	gate chan struct{}
}

func (s *gatedStore) Changed(after int64) <-chan struct{} {
	select {
	case <-s.gate:
		return s.Store.Changed(after)
	default:
		return s.gate
	}
}

// TestStreamGapBeforeThePump: retention removes events before the pump
// reads them; a subscriber waiting for them in the ring is told of the gap.
func TestStreamGapBeforeThePump(t *testing.T) {
	t.Parallel()
	forEachSubscriptionStore(t, testStreamGapBeforeThePump)
}

func testStreamGapBeforeThePump(t *testing.T, st Store) {
	gated := &gatedStore{Store: st, gate: make(chan struct{})}
	env := newTestEnv(t, &Config{Store: gated}, envOptions{})
	eventually(t, 10*time.Second, "the pump starts", func() bool { return pumped(env.srv) == 0 })
	for i := range 10 {
		appendEvents(t, st, testEvent("billing", "Invoice", "Created", fmt.Sprint(i)))
	}
	if _, err := st.Prune(context.Background(), time.Time{}, 3); err != nil {
		t.Fatal(err)
	}
	s := openStream(t, env, "/api/stream?last_event_id=2", nil)
	if _, err := s.read(); err != nil {
		t.Fatal(err)
	}
	close(gated.gate)
	s.notice(codeGap)
	if got := positions(s.events(3)); !slices.Equal(got, []int64{8, 9, 10}) {
		t.Errorf("positions %v, want [8 9 10]", got)
	}
}
