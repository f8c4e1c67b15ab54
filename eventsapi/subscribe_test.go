package eventsapi

import (
	"bufio"
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
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/txoutbox/txoutbox/internal/pgtest"
)

// newTestStore returns the store subscription tests run on. Tests use only
// the Store interface, so that they can run on every store.
func newTestStore(t testing.TB) Store {
	t.Helper()
	return newTestMemoryStore(t, nil)
}

// newTestPostgresStore returns a PostgresStore on a fresh database.
func newTestPostgresStore(t testing.TB) Store {
	t.Helper()
	return newPgStore(t, pgtest.NewPool(t), nil)
}

// subscriptionStores are the stores the main subscription tests run on, each
// test on a fresh one: the hub relies only on the Store interface, and each
// store keeps its rules (positions visible in order, Changed) in its own way.
var subscriptionStores = []struct {
	name string
	new  func(t testing.TB) Store
}{
	{"memory", newTestStore},
	{"postgres", newTestPostgresStore},
}

// forEachSubscriptionStore runs test as a parallel subtest per store of
// subscriptionStores.
func forEachSubscriptionStore(t *testing.T, test func(t *testing.T, st Store)) {
	t.Helper()
	for _, st := range subscriptionStores {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			test(t, st.new(t))
		})
	}
}

func newTestMemoryStore(t testing.TB, cfg *MemoryStoreConfig) Store {
	t.Helper()
	st, err := NewMemoryStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// testEnv is a Server on a real HTTP server on 127.0.0.1, and a client.
type testEnv struct {
	srv    *Server
	store  Store
	url    string // http://127.0.0.1:port
	client *http.Client
}

// envOptions adjust newTestEnv.
type envOptions struct {
	// as, when set, is the principal the subscription routes serve, as the
	// access check would once it has authenticated a key.
	as *Principal
	// tinySockets shrinks the sockets' buffers, so that a client that does
	// not read blocks the server's writes after a few kilobytes.
	tinySockets bool
}

// newTestEnv starts a Server with cfg (its Store defaults to newTestStore).
func newTestEnv(t testing.TB, cfg *Config, opts envOptions) *testEnv {
	t.Helper()
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	if c.Store == nil {
		c.Store = newTestStore(t)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv, err := New(&c)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = srv
	if p := opts.as; p != nil {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /api/stream", func(w http.ResponseWriter, r *http.Request) { srv.serveStream(w, r, p) })
		mux.HandleFunc("GET /api/ws", func(w http.ResponseWriter, r *http.Request) { srv.serveWebSocket(w, r, p) })
		mux.Handle("/", srv)
		h = mux
	}
	hs := httptest.NewUnstartedServer(h)
	tr := &http.Transport{}
	if opts.tinySockets {
		hs.Config.ConnState = func(conn net.Conn, state http.ConnState) {
			if tc, ok := conn.(*net.TCPConn); ok && state == http.StateNew {
				_ = tc.SetWriteBuffer(tinySocketBuffer)
			}
		}
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(tinySocketBuffer)
			}
			return conn, err
		}
	}
	hs.Start()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
		hs.Close()
		tr.CloseIdleConnections()
	})
	return &testEnv{srv: srv, store: c.Store, url: hs.URL, client: &http.Client{Transport: tr}}
}

// tinySocketBuffer is the socket buffer size of envOptions.tinySockets.
const tinySocketBuffer = 32 << 10

// testEvent returns a new event of topic category.EntityAction about key.
func testEvent(category, entity, action, key string) Event {
	return Event{
		ID:       uuid.NewString(),
		Topic:    category + "." + entity + action,
		Category: category,
		Entity:   entity,
		Action:   action,
		Key:      key,
		Data:     json.RawMessage(fmt.Sprintf(`{"key":%q}`, key)),
	}
}

// appendEvents stores evs and returns their positions.
func appendEvents(t testing.TB, st Store, evs ...Event) []int64 {
	t.Helper()
	ans, err := st.Append(context.Background(), evs)
	if err != nil {
		t.Error(err)
		return nil
	}
	pos := make([]int64, len(ans))
	for i, a := range ans {
		if a.Duplicate {
			t.Errorf("event %d stored before", i)
		}
		pos[i] = a.Position
	}
	return pos
}

// sseStream is a test client of GET /api/stream.
type sseStream struct {
	t      testing.TB
	resp   *http.Response
	br     *bufio.Reader
	cancel context.CancelFunc
	lastID string // as EventSource keeps it
}

// sseMsg is one server-sent message.
type sseMsg struct {
	event, data, id, retry string
	hasID                  bool
	comments               []string
}

// openStream connects to path (with its query) and checks the answer is a
// stream.
func openStream(t testing.TB, env *testEnv, path string, header http.Header) *sseStream {
	t.Helper()
	s, resp := tryStream(t, env, path, header)
	if s == nil {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", path, resp.Status, b)
	}
	return s
}

// tryStream connects to path, and returns the stream, or nil and the answer
// when it is not one.
func tryStream(t testing.TB, env *testEnv, path string, header http.Header) (*sseStream, *http.Response) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, env.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := env.client.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Cleanup(func() { resp.Body.Close(); cancel() })
		return nil, resp
	}
	s := &sseStream{t: t, resp: resp, br: bufio.NewReader(resp.Body), cancel: cancel}
	t.Cleanup(s.close)
	return s, resp
}

func (s *sseStream) close() {
	s.cancel()
	s.resp.Body.Close()
}

// read returns the next message (comments and id-only blocks included).
func (s *sseStream) read() (sseMsg, error) {
	var m sseMsg
	var data []string
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			return m, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if len(data) > 0 || m.hasID || m.retry != "" || len(m.comments) > 0 {
				m.data = strings.Join(data, "\n")
				if m.hasID {
					s.lastID = m.id
				}
				return m, nil
			}
			continue
		}
		if c, ok := strings.CutPrefix(line, ":"); ok {
			m.comments = append(m.comments, strings.TrimSpace(c))
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch name {
		case "id":
			m.id, m.hasID = value, true
		case "event":
			m.event = value
		case "data":
			data = append(data, value)
		case "retry":
			m.retry = value
		default:
			return m, fmt.Errorf("unexpected line %q", line)
		}
	}
}

// next returns the next event or notice, passing over comments and id-only
// blocks.
func (s *sseStream) next() (sseMsg, error) {
	for {
		m, err := s.read()
		if err != nil || m.data != "" {
			return m, err
		}
	}
}

// events reads n events, failing on anything else.
func (s *sseStream) events(n int) []Event {
	s.t.Helper()
	out := make([]Event, 0, n)
	for len(out) < n {
		m, err := s.next()
		if err != nil {
			s.t.Fatalf("after %d of %d events: %v", len(out), n, err)
		}
		out = append(out, s.decode(m))
	}
	return out
}

// decode returns the event m carries, failing when it is not one.
func (s *sseStream) decode(m sseMsg) Event {
	s.t.Helper()
	if m.event != "" {
		s.t.Fatalf("want an event, got event: %s data: %s", m.event, m.data)
	}
	var ev Event
	if err := json.Unmarshal([]byte(m.data), &ev); err != nil {
		s.t.Fatalf("data %q: %v", m.data, err)
	}
	if m.id != strconv.FormatInt(ev.Position, 10) {
		s.t.Fatalf("id %q for the event at position %d", m.id, ev.Position)
	}
	return ev
}

// notice reads the next message and checks it is a notice with code.
func (s *sseStream) notice(code string) subscribeError {
	s.t.Helper()
	m, err := s.next()
	if err != nil {
		s.t.Fatalf("want notice %s: %v", code, err)
	}
	var n subscribeError
	if m.event != "notice" || json.Unmarshal([]byte(m.data), &n) != nil || n.Code != code {
		s.t.Fatalf("want notice %s, got event: %q data: %s", code, m.event, m.data)
	}
	if n.Message == "" {
		s.t.Errorf("notice %s without a message", code)
	}
	return n
}

// expectEnd checks the server ends the stream.
func (s *sseStream) expectEnd() {
	s.t.Helper()
	m, err := s.read()
	if !errors.Is(err, io.EOF) {
		s.t.Fatalf("want the end of the stream, got %+v, %v", m, err)
	}
}

func positions(evs []Event) []int64 {
	out := make([]int64, len(evs))
	for i := range evs {
		out[i] = evs[i].Position
	}
	return out
}

// eventually polls cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTenantIsolation: a principal bound to a tenant receives its tenant's
// events only, over both transports, live and from the store, whatever it
// asks for.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	forEachSubscriptionStore(t, testTenantIsolation)
}

func testTenantIsolation(t *testing.T, st Store) {
	env := newTestEnv(t, &Config{Store: st}, envOptions{as: &Principal{Name: "acme-key", Tenant: "acme"}})
	mk := func(tenant, key string) Event {
		ev := testEvent("billing", "Invoice", "Created", key)
		ev.Tenant = tenant
		return ev
	}
	appendEvents(t, env.store, mk("acme", "a1"), mk("globex", "g1"), mk("", "none1")) // 1..3
	s := openStream(t, env, "/api/stream", nil)
	fromStore := openStream(t, env, "/api/stream?last_event_id=0&tenant=acme", nil)
	ws := dialWS(t, env)
	ws.start()
	ws.subscribe("all", nil, nil)
	ws.send(map[string]any{"type": "subscribe", "id": "theirs", "tenant": "globex", "ref": 1})
	ws.expectError(codeForbidden, "1")
	_, resp := tryStream(t, env, "/api/stream?tenant=globex", nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("another tenant's stream: %s, want 403", resp.Status)
	}

	appendEvents(t, env.store, mk("globex", "g2"), mk("acme", "a2"), mk("", "none2"), mk("acme", "a3")) // 4..7
	for _, got := range [][]Event{s.events(2), fromStore.events(3), ws.waitEvents(2)} {
		for _, ev := range got {
			if ev.Tenant != "acme" {
				t.Errorf("event of tenant %q at %d", ev.Tenant, ev.Position)
			}
		}
	}
	ws.send(map[string]any{"type": "state", "id": "all"})
	for _, ev := range ws.expect("state").Events {
		if ev.Tenant != "acme" {
			t.Errorf("state: event of tenant %q at %d", ev.Tenant, ev.Position)
		}
	}
	// Nothing else came.
	appendEvents(t, env.store, mk("acme", "a4")) // 8
	if got := s.events(1); got[0].Position != 8 {
		t.Errorf("stream: %d after the acme events, want 8", got[0].Position)
	}
	if got := ws.waitEvents(3); got[2].Position != 8 {
		t.Errorf("WebSocket: %d after the acme events, want 8", got[2].Position)
	}

	// A principal of every tenant may narrow to one.
	all := newTestEnv(t, &Config{Store: env.store}, envOptions{})
	g := openStream(t, all, "/api/stream?last_event_id=0&tenant=globex", nil)
	if got := positions(g.events(2)); !slices.Equal(got, []int64{2, 4}) {
		t.Errorf("globex: %v, want [2 4]", got)
	}
}

// TestSubscriberLimit: connections beyond MaxSubscribers get 503 and a
// message; the open ones go on.
func TestSubscriberLimit(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, &Config{MaxSubscribers: 4}, envOptions{})
	streams := []*sseStream{openStream(t, env, "/api/stream", nil), openStream(t, env, "/api/stream", nil)}
	sockets := []*wsClient{dialWS(t, env), dialWS(t, env)}
	for _, c := range sockets {
		c.start()
		c.subscribe("all", nil, nil)
	}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var resp *http.Response
			if i%2 == 0 {
				var s *sseStream
				if s, resp = tryStream(t, env, "/api/stream", nil); s != nil {
					t.Error("a stream beyond the limit opened")
					return
				}
			} else {
				var err error
				if _, resp, err = tryWS(t, env); err == nil {
					t.Error("a WebSocket beyond the limit opened")
					return
				}
			}
			var body subscribeError
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Error(err)
			}
			if resp.StatusCode != http.StatusServiceUnavailable || body.Code != codeTooManySubscribers || !strings.Contains(body.Message, "4") {
				t.Errorf("%s %+v; want 503 %s saying the limit", resp.Status, body, codeTooManySubscribers)
			}
		}()
	}
	wg.Wait()
	appendEvents(t, env.store, testEvent("billing", "Invoice", "Created", "a"))
	for _, s := range streams {
		s.events(1)
	}
	for _, c := range sockets {
		c.waitEvents(1)
	}
	// A place freed is a place taken.
	streams[0].close()
	eventually(t, 10*time.Second, "a stream opens once another closed", func() bool {
		s, _ := tryStream(t, env, "/api/stream", nil)
		return s != nil
	})
}
