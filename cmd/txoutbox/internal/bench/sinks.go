package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relayhttp"
)

// counter counts events arriving at a sink and says when target arrived.
// With latencies set it also records when each event arrived.
type counter struct {
	n       atomic.Int64
	target  int64
	once    sync.Once
	reached chan struct{}
	lat     *latencies
}

func newCounter(target int64, lat *latencies) *counter {
	return &counter{target: target, reached: make(chan struct{}), lat: lat}
}

func (c *counter) arrived(ids []string) { c.arrivedN(ids, len(ids)) }

// arrivedN counts n events; ids, their ids, may be nil unless latencies are
// recorded.
func (c *counter) arrivedN(ids []string, n int) {
	if c.lat != nil {
		c.lat.received(ids, time.Now())
	}
	if c.n.Add(int64(n)) >= c.target && c.target > 0 {
		c.once.Do(func() { close(c.reached) })
	}
}

// wait blocks until target events arrived, ctx ends or no event arrived for
// stall, and returns how many arrived.
func (c *counter) wait(ctx context.Context, stall time.Duration) (int64, error) {
	t := time.NewTicker(stall)
	defer t.Stop()
	last := c.n.Load()
	for {
		select {
		case <-c.reached:
			return c.n.Load(), nil
		case <-ctx.Done():
			return c.n.Load(), ctx.Err()
		case <-t.C:
			n := c.n.Load()
			if n == last {
				return n, fmt.Errorf("%d of %d events arrived, none in the last %s", n, c.target, stall)
			}
			last = n
		}
	}
}

// noopSink takes every event and does nothing with it but count: a relay
// sink, and a watermill publisher for the watermill-sql forwarder's drain.
type noopSink struct{ c *counter }

func (s noopSink) Send(_ context.Context, events []*outbox.Event) error {
	var ids []string // only the latencies need them
	if s.c.lat != nil {
		ids = make([]string, len(events))
		for i, e := range events {
			ids[i] = e.ID.String()
		}
	}
	s.c.arrivedN(ids, len(events))
	return nil
}

func (s noopSink) Publish(_ string, msgs ...*message.Message) error {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.UUID
	}
	s.c.arrived(ids)
	return nil
}

func (s noopSink) Close() error { return nil }

// httpSink is an events API on loopback and a relayhttp.Sink posting
// CloudEvents batches to it. The server reads each body and answers 202
// without decoding it, so that what is measured is the relay's work, not
// the API's; events count as arrived when the sink's Send returns without
// error, that is once the API has answered.
type httpSink struct {
	*loopback
	sink *relayhttp.Sink
	c    *counter
}

func startHTTPSink(c *counter) (*httpSink, error) {
	h := &httpSink{c: c}
	var err error
	h.loopback, err = serveLoopback(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ok, batch := wire.IsCloudEventsContentType(r.Header.Get("Content-Type")); !ok || !batch {
			http.Error(w, "want a CloudEvents batch", http.StatusUnsupportedMediaType)
			return
		}
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	if err != nil {
		return nil, err
	}
	h.sink, err = relayhttp.New(&relayhttp.Config{
		URL:    "http://" + h.addr + "/",
		Format: relayhttp.FormatCloudEvents,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		h.close()
		return nil, fmt.Errorf("http sink: %w", err)
	}
	return h, nil
}

// Send posts events through the sink and counts them once the API has
// taken them all.
func (h *httpSink) Send(ctx context.Context, events []*outbox.Event) error {
	if err := h.sink.Send(ctx, events); err != nil {
		return err
	}
	return noopSink{h.c}.Send(ctx, events)
}

var _ relay.Sink = (*httpSink)(nil)

// Close does nothing: close stops the server once the relays are done.
func (h *httpSink) Close() error { return nil }

func (h *httpSink) close() {
	if h.sink != nil {
		_ = h.sink.Close()
	}
	h.loopback.close()
}

// loopback is an http.Server on 127.0.0.1, on a port of its own.
type loopback struct {
	srv  *http.Server
	addr string // host:port
	done chan struct{}
}

func serveLoopback(h http.Handler) (*loopback, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	l := &loopback{
		// HTTP/1.1 and unencrypted HTTP/2, as txoutbox serve listens (gRPC
		// subscribers speak the latter).
		srv:  &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, Protocols: new(http.Protocols)},
		addr: ln.Addr().String(),
		done: make(chan struct{}),
	}
	l.srv.Protocols.SetHTTP1(true)
	l.srv.Protocols.SetUnencryptedHTTP2(true)
	go func() {
		defer close(l.done)
		_ = l.srv.Serve(ln)
	}()
	return l, nil
}

// close shuts the server down, waiting up to 5 seconds for its requests.
func (l *loopback) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		_ = l.srv.Close()
	}
	<-l.done
}

// latencies joins the time each event's transaction committed with the time
// it arrived at the sink.
type latencies struct {
	mu        sync.Mutex
	committed map[string]time.Time
	arrived   map[string]time.Time
}

func newLatencies() *latencies {
	return &latencies{committed: make(map[string]time.Time), arrived: make(map[string]time.Time)}
}

func (l *latencies) commit(id string, at time.Time) {
	l.mu.Lock()
	l.committed[id] = at
	l.mu.Unlock()
}

func (l *latencies) received(ids []string, at time.Time) {
	l.mu.Lock()
	for _, id := range ids {
		l.arrived[id] = at
	}
	l.mu.Unlock()
}

// reset forgets every event.
func (l *latencies) reset() {
	l.mu.Lock()
	clear(l.committed)
	clear(l.arrived)
	l.mu.Unlock()
}

// pending returns how many committed events have not arrived.
func (l *latencies) pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for id := range l.committed {
		if _, ok := l.arrived[id]; !ok {
			n++
		}
	}
	return n
}

// window returns the commit→arrival latencies, sorted, of the events
// committed between from and to, and how many of them never arrived. An
// event can reach the sink a moment before its COMMIT returns to the
// producer; its latency counts as zero.
func (l *latencies) window(from, to time.Time) (lat []time.Duration, missing int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id, c := range l.committed {
		if c.Before(from) || !c.Before(to) {
			continue
		}
		a, ok := l.arrived[id]
		if !ok {
			missing++
			continue
		}
		lat = append(lat, max(a.Sub(c), 0))
	}
	slices.Sort(lat)
	return lat, missing
}

// percentile returns the p-th percentile (0 < p <= 1) of sorted, in
// milliseconds.
func percentile(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(float64(len(sorted)) * p)) // nearest rank
	return float64(sorted[min(max(rank, 1), len(sorted))-1]) / float64(time.Millisecond)
}
