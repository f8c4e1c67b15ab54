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
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// newTestStore returns the store subscription tests run on. Tests use only
// the Store interface, so that they can run on every store.
func newTestStore(t *testing.T) Store {
	t.Helper()
	return newTestMemoryStore(t, nil)
}

func newTestMemoryStore(t *testing.T, cfg *MemoryStoreConfig) Store {
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
func newTestEnv(t *testing.T, cfg *Config, opts envOptions) *testEnv {
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
