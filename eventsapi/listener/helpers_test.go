package listener_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/eventsapi/listener"
	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/internal/wire"
)

// stores are the stores the listener's tests run their server on.
var stores = []struct {
	name string
	new  func(t testing.TB) eventsapi.Store
}{
	{"memory", newMemoryStore},
	{"postgres", func(t testing.TB) eventsapi.Store {
		pool := pgtest.NewPool(t)
		if err := eventsapi.MigratePostgres(t.Context(), pool, nil); err != nil {
			t.Fatal(err)
		}
		st, err := eventsapi.NewPostgresStore(t.Context(), pool, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}},
}

func newMemoryStore(t testing.TB) eventsapi.Store {
	t.Helper()
	st, err := eventsapi.NewMemoryStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// discard is a logger that drops everything.
var discard = slog.New(slog.DiscardHandler)

// server is an events API on a real HTTP server on 127.0.0.1.
type server struct {
	store   eventsapi.Store
	url     string
	streams *streamCounter
}

// streamCounter counts the streams a handler has open: those that wrote
// their opening, so that a listener connected to one misses no event
// appended from then on.
type streamCounter struct {
	next http.Handler
	open atomic.Int64
}

func (c *streamCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/stream" {
		c.next.ServeHTTP(w, r)
		return
	}
	cw := &countingWriter{ResponseWriter: w, c: c}
	defer func() {
		if cw.opened {
			c.open.Add(-1)
		}
	}()
	c.next.ServeHTTP(cw, r)
}

// countingWriter counts its stream open at the first write.
type countingWriter struct {
	http.ResponseWriter
	c      *streamCounter
	opened bool
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if !w.opened {
		w.opened = true
		w.c.open.Add(1)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// openStreams returns how many streams srv has open.
func openStreams(_ testing.TB, srv *server) int64 { return srv.streams.open.Load() }

// newServer starts an events API on st with cfg (nil: development mode).
func newServer(t testing.TB, st eventsapi.Store, cfg *eventsapi.Config) *server {
	t.Helper()
	c := eventsapi.Config{}
	if cfg != nil {
		c = *cfg
	}
	c.Store, c.Logger = st, discard
	srv, err := eventsapi.New(&c)
	if err != nil {
		t.Fatal(err)
	}
	counter := &streamCounter{next: srv}
	hs := httptest.NewServer(counter)
	t.Cleanup(func() {
		_ = srv.Close()
		hs.Close()
	})
	return &server{store: st, url: hs.URL, streams: counter}
}

// serveOn serves an events API on st (a new MemoryStore when nil) on ln
// until the returned stop is called, or the test ends.
func serveOn(t testing.TB, ln net.Listener, st eventsapi.Store) (counter *streamCounter, stop func()) {
	t.Helper()
	if st == nil {
		st = newMemoryStore(t)
	}
	srv, err := eventsapi.New(&eventsapi.Config{Store: st, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	counter = &streamCounter{next: srv}
	hs := &http.Server{Handler: counter}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(ln)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			_ = srv.Close()
			_ = hs.Close()
			<-done
		})
	}
	t.Cleanup(stop)
	return counter, stop
}

// appendEvents appends n events to st directly.
func appendEvents(t testing.TB, st eventsapi.Store, n int) {
	t.Helper()
	evs := make([]eventsapi.Event, n)
	for i := range evs {
		evs[i] = event("billing", "Invoice", "Created", fmt.Sprint("inv-", i))
	}
	if _, err := st.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond for up to 10 s, and fails the test then.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// countingBody counts the data lines of a stream as it is read.
type countingBody struct {
	io.ReadCloser
	events *atomic.Int64
	match  int // bytes of "data: " matched at the start of a line; -1 in the middle of a line
}

func (b *countingBody) Read(p []byte) (int, error) {
	const prefix = "data: "
	n, err := b.ReadCloser.Read(p)
	for _, c := range p[:n] {
		switch {
		case c == '\n':
			b.match = 0
		case b.match >= 0 && c == prefix[b.match]:
			if b.match++; b.match == len(prefix) {
				b.events.Add(1)
				b.match = -1
			}
		default:
			b.match = -1
		}
	}
	return n, err
}

// event returns a new event of topic category.EntityAction about key.
func event(category, entity, action, key string) eventsapi.Event {
	return eventsapi.Event{
		ID: uuid.NewString(), Topic: category + "." + entity + action,
		Category: category, Entity: entity, Action: action, Key: key,
		Data: json.RawMessage(fmt.Sprintf(`{"key":%q}`, key)),
	}
}

// ingest posts evs to base's HTTP API as one CloudEvents batch, with secret
// as the key when not empty.
func ingest(client *http.Client, base, secret string, evs ...eventsapi.Event) error {
	ws := make([]wire.Event, len(evs))
	for i := range evs {
		ev := &evs[i]
		ws[i] = wire.Event{ID: ev.ID, Topic: ev.Topic, Data: ev.Data, Key: ev.Key, Tenant: ev.Tenant,
			ActorID: "user-4711", ActorType: "user"}
	}
	body, err := wire.AppendCloudEventBatch(nil, ws)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, base+"/cloudevents", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", wire.ContentTypeCloudEventBatch)
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST /cloudevents: %s %s", resp.Status, b)
	}
	return nil
}

// mustIngest is ingest failing the test on error.
func mustIngest(t testing.TB, base string, evs ...eventsapi.Event) {
	t.Helper()
	if err := ingest(http.DefaultClient, base, "", evs...); err != nil {
		t.Fatal(err)
	}
}

// storedPositions returns the positions of every event st holds.
func storedPositions(t testing.TB, st eventsapi.Store) []int64 {
	t.Helper()
	var out []int64
	for after := int64(0); ; {
		evs, err := st.Read(context.Background(), &eventsapi.ReadRequest{After: after, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs {
			out = append(out, ev.Position)
		}
		if len(evs) < 1000 {
			return out
		}
		after = evs[len(evs)-1].Position
	}
}

// recorder is a Handler that records what it handles, and may fail.
type recorder struct {
	mu      sync.Mutex
	events  []eventsapi.Event
	failOn  func(ev *eventsapi.Event) error // called under mu; nil: never fail
	changed chan struct{}                   // signalled on every event handled
	handled atomic.Int64                    // events handled
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{}, 1)} }

func (r *recorder) handle(_ context.Context, ev *eventsapi.Event) error {
	r.mu.Lock()
	var err error
	if r.failOn != nil {
		err = r.failOn(ev)
	}
	if err == nil {
		r.events = append(r.events, *ev)
		r.handled.Add(1)
	}
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
	return err
}

// positions returns the positions handled, in order.
func (r *recorder) positions() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]int64, len(r.events))
	for i := range r.events {
		out[i] = r.events[i].Position
	}
	return out
}

// waitFor waits until the recorder handled an event at position pos or
// later, and fails the test after d.
func (r *recorder) waitFor(t testing.TB, pos int64, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for {
		if got := r.positions(); len(got) > 0 && got[len(got)-1] >= pos {
			return
		}
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatalf("after %s: handled %v, want up to %d", d, r.positions(), pos)
		}
	}
}

// run starts l and returns a function that stops it and returns Run's
// error.
func run(t testing.TB, l *listener.Listener) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				err = errors.New("Run did not return within 10 s of its context ending")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// follow starts a listener of cfg whose handler is rec (a new recorder
// when nil), and returns the recorder, the listener and its stop.
func follow(t testing.TB, cfg *listener.Config, rec *recorder) (*recorder, *listener.Listener, func() error) {
	t.Helper()
	if rec == nil {
		rec = newRecorder()
	}
	l, err := listener.New(cfg, rec.handle)
	if err != nil {
		t.Fatal(err)
	}
	return rec, l, run(t, l)
}

// newClient returns an HTTP client of its own, whose idle connections are
// closed when the test ends.
func newClient(t testing.TB, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	tr := &http.Transport{DialContext: dial}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// cut says what a proxy does with one connection: it forwards the
// server's first messages SSE messages (the opening is the first), then
// extra bytes more, then closes the connection, or freezes it (stops
// forwarding, keeps it open). messages < 0 forwards everything.
type cut struct {
	messages, extra int
	freeze          bool
}

// proxy is a TCP proxy in front of a server that cuts or freezes the
// connections as its plan says.
type proxy struct {
	ln     net.Listener
	target string
	plan   func(conn int) cut
	conns  atomic.Int64 // connections accepted
	cuts   atomic.Int64 // connections cut or frozen
	done   chan struct{}
	wg     sync.WaitGroup
	mu     sync.Mutex
	open   map[net.Conn]struct{}
}

func newProxy(t testing.TB, target string, plan func(conn int) cut) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, plan: plan, done: make(chan struct{}), open: make(map[net.Conn]struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// url is the proxy's base URL.
func (p *proxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *proxy) close() {
	select {
	case <-p.done:
		return
	default:
	}
	close(p.done)
	p.ln.Close()
	p.mu.Lock()
	for c := range p.open {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// track records c as open, or closes it when the proxy is closing.
func (p *proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.done:
		c.Close()
		return false
	default:
	}
	p.open[c] = struct{}{}
	return true
}

func (p *proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(p.open, c)
	}
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		n := int(p.conns.Add(1)) - 1
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		if !p.track(client) || !p.track(server) {
			client.Close()
			server.Close()
			continue
		}
		plan := p.plan(n)
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(server, client)
			p.untrack(client, server)
		}()
		go func() {
			defer p.wg.Done()
			if p.forward(client, server, plan) {
				<-p.done // frozen: hold the connection until the proxy closes
			}
			p.untrack(client, server)
		}()
	}
}

// forward copies the server's bytes to the client as plan says, and
// reports whether it froze the connection.
func (p *proxy) forward(client, server net.Conn, plan cut) bool {
	buf := make([]byte, 32<<10)
	seen := 0
	var prev byte
	left := -1 // bytes still to forward before the cut; -1 before the last message
	for {
		n, err := server.Read(buf)
		b := buf[:n]
		if plan.messages >= 0 && left < 0 {
			for i, c := range b {
				if c == '\n' && prev == '\n' {
					if seen++; seen == plan.messages {
						left = plan.extra + i + 1 // this chunk's bytes up to the message end count too
						break
					}
				}
				prev = c
			}
		}
		if left >= 0 {
			if len(b) >= left {
				_, _ = client.Write(b[:left])
				p.cuts.Add(1)
				return plan.freeze
			}
			left -= len(b)
		}
		if _, werr := client.Write(b); werr != nil || err != nil {
			return false
		}
	}
}

// sameSet reports whether got holds every position of want once, in
// order, and nothing else; and says what differs.
func sameSet(want, got []int64) string {
	if slices.Equal(want, got) {
		return ""
	}
	seen := map[int64]int{}
	var dup, missing []int64
	for i, p := range got {
		if seen[p]++; seen[p] > 1 || i > 0 && p < got[i-1] {
			dup = append(dup, p)
		}
	}
	for _, p := range want {
		if seen[p] == 0 {
			missing = append(missing, p)
		}
	}
	return fmt.Sprintf("handled %d events, want %d: missing %v, repeated or out of order %v", len(got), len(want), missing, dup)
}
