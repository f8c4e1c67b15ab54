package listener_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/eventsapi/listener"
	"github.com/txoutbox/txoutbox/internal/testlog"
)

// fast are the listener settings of the tests: reconnections within a few
// milliseconds.
func fast(url string, client *http.Client) *listener.Config {
	return &listener.Config{URL: url, HTTPClient: client, BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond, Logger: discard}
}

func TestListenerReceivesInOrder(t *testing.T) {
	t.Parallel()
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, st.new(t), nil)
			rec, l, stop := follow(t, fast(srv.url, newClient(t, nil)), nil)
			eventually(t, "the listener connects", func() bool { return openStreams(t, srv) == 1 })
			for i := range 10 {
				mustIngest(t, srv.url, event("billing", "Invoice", "Created", fmt.Sprint("inv-", i)), event("billing", "Invoice", "Paid", fmt.Sprint("inv-", i)))
			}
			rec.waitFor(t, 20, 10*time.Second)
			if d := sameSet(storedPositions(t, srv.store), rec.positions()); d != "" {
				t.Error(d)
			}
			if err := stop(); !errors.Is(err, context.Canceled) {
				t.Errorf("Run = %v, want context.Canceled", err)
			}
			if l.Position() != 20 {
				t.Errorf("Position = %d, want 20", l.Position())
			}
		})
	}
}

// TestListenerResumesAcrossDroppedConnections cuts the listener's
// connection 100 times, at random places (mostly in the middle of an
// event), while 8 goroutines ingest through the HTTP API: the handler sees
// every event once, in position order.
func TestListenerResumesAcrossDroppedConnections(t *testing.T) {
	t.Parallel()
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, st.new(t), nil)
			const drops = 100
			p := newProxy(t, strings.TrimPrefix(srv.url, "http://"), func(conn int) cut {
				if conn >= drops {
					return cut{messages: -1}
				}
				return cut{messages: 1 + rand.IntN(8), extra: rand.IntN(400)}
			})
			rec, _, _ := follow(t, fast(p.url(), newClient(t, nil)), nil)
			eventually(t, "the listener connects", func() bool { return openStreams(t, srv) == 1 })

			const writers, maxPerWriter = 8, 1000
			client := newClient(t, nil)
			var wg sync.WaitGroup
			var ingested atomic.Int64
			for w := range writers {
				wg.Go(func() {
					for n := 0; n < maxPerWriter && p.cuts.Load() < drops; {
						// Within 200 events of the listener, so that a slow
						// machine makes the test slower, not longer.
						for ingested.Load()-rec.handled.Load() > 200 && p.cuts.Load() < drops {
							time.Sleep(time.Millisecond)
						}
						batch := make([]eventsapi.Event, 1+rand.IntN(5))
						for i := range batch {
							batch[i] = event("billing", "Invoice", "Updated", fmt.Sprintf("w%d-%d", w, n))
							n++
						}
						if err := ingest(client, srv.url, "", batch...); err != nil {
							t.Error(err)
							return
						}
						ingested.Add(int64(len(batch)))
						time.Sleep(time.Duration(2+rand.IntN(8)) * time.Millisecond)
					}
				})
			}
			wg.Wait()
			want := storedPositions(t, srv.store)
			rec.waitFor(t, want[len(want)-1], 30*time.Second)
			if d := sameSet(want, rec.positions()); d != "" {
				t.Fatal(d)
			}
			t.Logf("%d events ingested by %d goroutines, handled once each over %d connections (%d cut)", ingested.Load(), writers, p.conns.Load(), p.cuts.Load())
			if p.cuts.Load() < drops {
				t.Errorf("%d connections cut, want %d", p.cuts.Load(), drops)
			}
		})
	}
}

// TestListenerReconnectsBeforeTheFirstEvent: a listener starting at the
// newest event whose connection drops before any event comes resumes
// where the first connection started, not at the newest event of the
// second; also when the store was empty (the stream started after 0).
func TestListenerReconnectsBeforeTheFirstEvent(t *testing.T) {
	t.Parallel()
	for _, old := range []int{0, 2} {
		t.Run(fmt.Sprintf("%d events before", old), func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, newMemoryStore(t), nil)
			if old > 0 {
				appendEvents(t, srv.store, old)
			}
			// The first connection is cut right after the stream's opening;
			// the proxy holds the second back until the events are in.
			hold := make(chan struct{})
			p := newProxy(t, strings.TrimPrefix(srv.url, "http://"), func(conn int) cut {
				if conn == 0 {
					return cut{messages: 1}
				}
				<-hold
				return cut{messages: -1}
			})
			rec, _, _ := follow(t, fast(p.url(), newClient(t, nil)), nil)
			eventually(t, "the first connection is cut", func() bool { return p.conns.Load() >= 2 })
			mustIngest(t, srv.url, event("billing", "Invoice", "Created", "new-1"), event("billing", "Invoice", "Created", "new-2"))
			close(hold)
			mustIngest(t, srv.url, event("billing", "Invoice", "Created", "new-3"))
			want := []int64{int64(old) + 1, int64(old) + 2, int64(old) + 3}
			rec.waitFor(t, want[2], 10*time.Second)
			if got := rec.positions(); !slices.Equal(got, want) {
				t.Errorf("handled %v, want %v", got, want)
			}
		})
	}
}

// TestListenerHandlerError: an event whose handler fails comes again after
// a reconnection, and the events before it do not.
func TestListenerHandlerError(t *testing.T) {
	t.Parallel()
	srv := newServer(t, newMemoryStore(t), nil)
	rec := newRecorder()
	var calls []int64 // under rec.mu
	tries := map[int64]int{}
	rec.failOn = func(ev *eventsapi.Event) error {
		calls = append(calls, ev.Position)
		tries[ev.Position]++
		if ev.Position == 3 && tries[3] == 1 || ev.Position == 5 && tries[5] <= 3 {
			return errors.New("not now")
		}
		return nil
	}
	follow(t, fast(srv.url, newClient(t, nil)), rec)
	eventually(t, "the listener connects", func() bool { return openStreams(t, srv) == 1 })
	for i := range 6 {
		mustIngest(t, srv.url, event("billing", "Invoice", "Created", fmt.Sprint("inv-", i)))
	}
	rec.waitFor(t, 6, 10*time.Second)
	if got := rec.positions(); !slices.Equal(got, []int64{1, 2, 3, 4, 5, 6}) {
		t.Errorf("handled %v, want [1 2 3 4 5 6]", got)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if want := []int64{1, 2, 3, 3, 4, 5, 5, 5, 5, 6}; !slices.Equal(calls, want) {
		t.Errorf("handler calls %v, want %v", calls, want)
	}
}

// TestListenerRefused: credentials the server refuses stop Run with a
// *StatusError at once.
func TestListenerRefused(t *testing.T) {
	t.Parallel()
	keys, err := eventsapi.NewKeys(
		eventsapi.Key{Name: "relay", Rights: []eventsapi.Right{eventsapi.RightIngest}, SecretSHA256: eventsapi.HashSecret("relay-secret-0123456789")},
		eventsapi.Key{Name: "watch", Rights: []eventsapi.Right{eventsapi.RightSubscribe}, SecretSHA256: eventsapi.HashSecret("watch-secret-0123456789")},
	)
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, newMemoryStore(t), &eventsapi.Config{Keys: keys})
	tests := []struct {
		name, token string
		status      int
	}{
		{"no key", "", http.StatusUnauthorized},
		{"unknown key", "nobody-0123456789", http.StatusUnauthorized},
		{"no subscribe right", "relay-secret-0123456789", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := fast(srv.url, newClient(t, nil))
			cfg.Token = tt.token
			l, err := listener.New(cfg, newRecorder().handle)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = l.Run(ctx)
			var se *listener.StatusError
			if !errors.As(err, &se) || se.StatusCode != tt.status || se.Message == "" {
				t.Fatalf("Run = %v; want a *StatusError %d with the server's message", err, tt.status)
			}
		})
	}
	// The right key follows the stream.
	cfg := fast(srv.url, newClient(t, nil))
	cfg.Token = "watch-secret-0123456789"
	rec, _, _ := follow(t, cfg, nil)
	eventually(t, "the listener connects", func() bool { return openStreams(t, srv) == 1 })
	if err := ingest(http.DefaultClient, srv.url, "relay-secret-0123456789", event("billing", "Invoice", "Created", "a")); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 1, 10*time.Second)
}

// TestListenerServerRestart: the server goes away and comes back on the
// same address, with the same store; the listener retries with backoff
// meanwhile and then resumes where it was.
func TestListenerServerRestart(t *testing.T) {
	t.Parallel()
	st := newMemoryStore(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	streams, stop1 := serveOn(t, ln, st)

	var dials atomic.Int64
	client := newClient(t, func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	})
	cfg := fast("http://"+addr, client)
	cfg.BackoffBase, cfg.BackoffMax = 10*time.Millisecond, 80*time.Millisecond
	appendEvents(t, st, 2) // before the listener: it starts after them
	rec, _, stop := follow(t, cfg, nil)
	eventually(t, "the listener connects", func() bool { return streams.open.Load() == 1 })
	appendEvents(t, st, 3) // 3..5
	rec.waitFor(t, 5, 10*time.Second)

	stop1()
	down := dials.Load()
	appendEvents(t, st, 3) // 6..8, while the server is down
	time.Sleep(500 * time.Millisecond)
	retries := dials.Load() - down
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, ln, st)
	appendEvents(t, st, 1) // 9
	rec.waitFor(t, 9, 10*time.Second)
	if got := rec.positions(); !slices.Equal(got, []int64{3, 4, 5, 6, 7, 8, 9}) {
		t.Errorf("handled %v, want [3 … 9]", got)
	}
	// Backoff up to 80 ms: a handful of tries in 500 ms, not hundreds.
	t.Logf("%d connection attempts in the 500 ms the server was down", retries)
	if retries < 3 || retries > 60 {
		t.Errorf("%d connection attempts in 500 ms with backoff from 10 to 80 ms", retries)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %v", err)
	}
}

// TestListenerServerReset: a development server restarts with an empty
// store, so positions start over; the listener is told (a gap notice) and
// handles the new events, whatever their positions.
func TestListenerServerReset(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	st1 := newMemoryStore(t)
	streams1, stop1 := serveOn(t, ln, st1)
	cfg := fast("http://"+addr, newClient(t, nil))
	logger, log := testlog.New()
	cfg.Logger = logger
	rec, l, _ := follow(t, cfg, nil)
	eventually(t, "the listener connects", func() bool { return streams1.open.Load() == 1 })
	appendEvents(t, st1, 5)
	rec.waitFor(t, 5, 10*time.Second)
	stop1()

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	st2 := newMemoryStore(t)
	streams2, _ := serveOn(t, ln, st2)
	eventually(t, "the listener reconnects", func() bool { return streams2.open.Load() == 1 })
	appendEvents(t, st2, 2) // positions 1 and 2 again
	eventually(t, "the listener handles the new events", func() bool { return len(rec.positions()) >= 7 })
	if got := rec.positions(); !slices.Equal(got, []int64{1, 2, 3, 4, 5, 1, 2}) {
		t.Errorf("handled %v, want [1 2 3 4 5 1 2]", got)
	}
	if l.Position() != 2 {
		t.Errorf("Position = %d, want 2", l.Position())
	}
	if !strings.Contains(log.String(), `"level":"WARN","msg":"events listener: server notice","code":"gap"`) {
		t.Errorf("no gap notice logged as a warning:\n%s", log)
	}
}

// TestListenerAfter: a listener resumes after the position it is given.
func TestListenerAfter(t *testing.T) {
	t.Parallel()
	srv := newServer(t, newMemoryStore(t), nil)
	appendEvents(t, srv.store, 10)
	cfg := fast(srv.url, newClient(t, nil))
	cfg.After = 6
	rec := newRecorder()
	l, err := listener.New(cfg, rec.handle)
	if err != nil {
		t.Fatal(err)
	}
	if l.Position() != 6 {
		t.Errorf("Position before Run = %d, want 6", l.Position())
	}
	run(t, l)
	rec.waitFor(t, 10, 10*time.Second)
	if got := rec.positions(); !slices.Equal(got, []int64{7, 8, 9, 10}) {
		t.Errorf("handled %v, want [7 8 9 10]", got)
	}
}

// TestListenerFilter: the filter is applied by the server; events it
// excludes never cross the wire.
func TestListenerFilter(t *testing.T) {
	t.Parallel()
	srv := newServer(t, newMemoryStore(t), &eventsapi.Config{Heartbeat: 20 * time.Millisecond})
	var wireEvents atomic.Int64
	client := &http.Client{Transport: countingTransport{next: newClient(t, nil).Transport, events: &wireEvents}}
	cfg := fast(srv.url, client)
	cfg.Filter = eventsapi.Filter{
		Include: []eventsapi.Selector{{Category: []string{"billing", "shipping"}}},
		Exclude: []eventsapi.Selector{{Action: []string{"Deleted"}}},
	}
	rec, l, _ := follow(t, cfg, nil)
	eventually(t, "the listener connects", func() bool { return openStreams(t, srv) == 1 })
	mustIngest(t, srv.url,
		event("billing", "Invoice", "Created", "inv-1"), // 1 in
		event("audit", "Login", "Done", "u-1"),          // 2 out
		event("billing", "Invoice", "Deleted", "inv-1"), // 3 out
		event("shipping", "Parcel", "Sent", "p-1"),      // 4 in
		event("audit", "Login", "Done", "u-2"),          // 5 out
	)
	rec.waitFor(t, 4, 10*time.Second)
	// The heartbeat moves the listener past the events the filter passed
	// over.
	eventually(t, "the position passes the events filtered out", func() bool { return l.Position() == 5 })
	if got := rec.positions(); !slices.Equal(got, []int64{1, 4}) {
		t.Errorf("handled %v, want [1 4]", got)
	}
	if n := wireEvents.Load(); n != 2 {
		t.Errorf("%d events crossed the wire, want 2", n)
	}
}

// TestListenerIdleTimeout: a connection that goes silent (no event, no
// heartbeat) is dropped after IdleTimeout and the stream resumes on a new
// one, with what came meanwhile.
func TestListenerIdleTimeout(t *testing.T) {
	t.Parallel()
	srv := newServer(t, newMemoryStore(t), nil)
	// The first connection freezes after the opening and the first event.
	p := newProxy(t, strings.TrimPrefix(srv.url, "http://"), func(conn int) cut {
		if conn == 0 {
			return cut{messages: 2, freeze: true}
		}
		return cut{messages: -1}
	})
	cfg := fast(p.url(), newClient(t, nil))
	cfg.IdleTimeout = 300 * time.Millisecond
	rec, _, _ := follow(t, cfg, nil)
	eventually(t, "the listener connects", func() bool { return openStreams(t, srv) == 1 })
	mustIngest(t, srv.url, event("billing", "Invoice", "Created", "a")) // 1
	eventually(t, "the proxy freezes the connection", func() bool { return p.cuts.Load() == 1 })
	mustIngest(t, srv.url, event("billing", "Invoice", "Created", "b"), event("billing", "Invoice", "Created", "c")) // 2, 3
	start := time.Now()
	rec.waitFor(t, 3, 10*time.Second)
	if got := rec.positions(); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Errorf("handled %v, want [1 2 3]", got)
	}
	t.Logf("resumed %s after the freeze, on connection %d", time.Since(start).Round(time.Millisecond), p.conns.Load())
}

// countingTransport counts the events (data lines) of the streams it
// carries.
type countingTransport struct {
	next   http.RoundTripper
	events *atomic.Int64
}

func (c countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err == nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, events: c.events}
	}
	return resp, err
}

// TestListenerSlowHandler: time the handler takes is not silence of the
// stream: a handler slower than IdleTimeout finishes each event, once.
func TestListenerSlowHandler(t *testing.T) {
	t.Parallel()
	srv := newServer(t, newMemoryStore(t), nil)
	var mu sync.Mutex
	var calls []int64
	handler := func(ctx context.Context, ev *eventsapi.Event) error {
		mu.Lock()
		calls = append(calls, ev.Position)
		mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
			return nil
		}
	}
	cfg := fast(srv.url, newClient(t, nil))
	cfg.IdleTimeout = 100 * time.Millisecond
	l, err := listener.New(cfg, handler)
	if err != nil {
		t.Fatal(err)
	}
	run(t, l)
	eventually(t, "the listener connects", func() bool { return openStreams(t, srv) == 1 })
	mustIngest(t, srv.url, event("billing", "Invoice", "Created", "a"), event("billing", "Invoice", "Created", "b"))
	eventually(t, "the handler finishes both events", func() bool { return l.Position() == 2 })
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(calls, []int64{1, 2}) {
		t.Errorf("handler calls %v, want [1 2]", calls)
	}
}

// TestListenerHonoursRetryAfter: a server that answers 503 with
// Retry-After is not asked again before that time, even when the
// listener's own backoff is much shorter.
func TestListenerHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	var (
		mu    sync.Mutex
		times []time.Time
	)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		n := len(times)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, `{"error":{"code":"Unavailable","message":"busy"}}`, http.StatusServiceUnavailable)
			return
		}
		http.Error(w, `{"error":{"code":"Unauthorized","message":"stop here"}}`, http.StatusUnauthorized)
	}))
	defer ts.Close()
	l, err := listener.New(fast(ts.URL, ts.Client()), newRecorder().handle)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var se *listener.StatusError
	if err := l.Run(ctx); !errors.As(err, &se) || se.StatusCode != http.StatusUnauthorized {
		t.Fatalf("Run = %v, want the second answer's 401", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(times) != 2 {
		t.Fatalf("%d requests, want 2", len(times))
	}
	if gap := times[1].Sub(times[0]); gap < time.Second {
		t.Errorf("reconnected %s after a 503 with Retry-After: 1, want at least 1s", gap)
	}
}
