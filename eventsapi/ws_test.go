package eventsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsClient is a test client of GET /api/ws.
type wsClient struct {
	t      testing.TB
	conn   *websocket.Conn
	ctx    context.Context
	events []Event // events received, in order
}

// wsMsg is any server message.
type wsMsg struct {
	wsReply
	Events []Event `json:"events"`
}

func dialWS(t testing.TB, env *testEnv) *wsClient {
	t.Helper()
	c, resp, err := tryWS(t, env)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	return c
}

func tryWS(t testing.TB, env *testEnv) (*wsClient, *http.Response, error) {
	t.Helper()
	return tryWSWith(t, env.url, env.client, "", nil)
}

// tryWSWith dials /api/ws of the server at base with the query (without
// its "?") and header given.
func tryWSWith(t testing.TB, base string, client *http.Client, query string, header http.Header) (*wsClient, *http.Response, error) {
	t.Helper()
	u := "ws" + strings.TrimPrefix(base, "http") + "/api/ws"
	if query != "" {
		u += "?" + query
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: client, HTTPHeader: header})
	if err != nil {
		cancel()
		return nil, resp, err
	}
	conn.SetReadLimit(-1)
	t.Cleanup(func() {
		_ = conn.CloseNow()
		cancel()
	})
	return &wsClient{t: t, conn: conn, ctx: ctx}, resp, nil
}

// send writes v as a JSON text message.
func (c *wsClient) send(v any) {
	c.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(string(b))
}

func (c *wsClient) sendRaw(s string) {
	c.t.Helper()
	if err := c.conn.Write(c.ctx, websocket.MessageText, []byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// recv reads the next message; events messages are added to c.events too.
func (c *wsClient) recv() (wsMsg, error) {
	var m wsMsg
	typ, b, err := c.conn.Read(c.ctx)
	if err != nil {
		return m, err
	}
	if typ != websocket.MessageText {
		return m, errors.New("binary message")
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%w: %s", err, b)
	}
	if m.Type == "events" {
		if len(m.Events) == 0 {
			return m, errors.New("an events message without events")
		}
		c.events = append(c.events, m.Events...)
	}
	return m, nil
}

// expect reads past events messages to the next other message and checks
// its type.
func (c *wsClient) expect(typ string) wsMsg {
	c.t.Helper()
	for {
		m, err := c.recv()
		if err != nil {
			c.t.Fatalf("want %s: %v", typ, err)
		}
		if m.Type == "events" {
			continue
		}
		if m.Type != typ {
			c.t.Fatalf("want %s, got %+v", typ, m)
		}
		return m
	}
}

// expectError reads the next message other than events and checks it is an
// error with code and ref.
func (c *wsClient) expectError(code, ref string) wsMsg {
	c.t.Helper()
	m := c.expect("error")
	if m.Code != code || string(m.Ref) != ref || m.Message == "" {
		c.t.Fatalf("want error %s ref %s with a message, got %+v (ref %s)", code, ref, m, m.Ref)
	}
	return m
}

// waitEvents reads until n events have been received in all.
func (c *wsClient) waitEvents(n int) []Event {
	c.t.Helper()
	for len(c.events) < n {
		m, err := c.recv()
		if err != nil {
			c.t.Fatalf("after %d of %d events: %v", len(c.events), n, err)
		}
		if m.Type != "events" {
			c.t.Fatalf("after %d of %d events: %+v", len(c.events), n, m)
		}
	}
	return c.events
}

// start starts a session and returns its id.
func (c *wsClient) start() string {
	c.t.Helper()
	c.send(map[string]any{"type": "start"})
	m := c.expect("session")
	if m.Status != "created" || m.SessionID == "" || m.Position == nil {
		c.t.Fatalf("session %+v", m)
	}
	return m.SessionID
}

// subscribe creates or replaces subscription id.
func (c *wsClient) subscribe(id string, include, exclude []Selector) {
	c.t.Helper()
	c.send(map[string]any{"type": "subscribe", "id": id, "include": include, "exclude": exclude, "ref": id})
	if m := c.expect("subscribed"); m.ID != id || string(m.Ref) != strconv.Quote(id) {
		c.t.Fatalf("subscribed %+v", m)
	}
}

// expectClose reads until the connection closes and checks its status.
func (c *wsClient) expectClose(status websocket.StatusCode) error {
	c.t.Helper()
	for {
		_, err := c.recv()
		if err == nil {
			continue
		}
		if got := websocket.CloseStatus(err); got != status {
			c.t.Fatalf("want close status %v, got %v", status, err)
		}
		return err
	}
}

func TestWSSession(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil, envOptions{})
	appendEvents(t, env.store, testEvent("billing", "Invoice", "Created", "a"), testEvent("billing", "Invoice", "Created", "b"))

	c := dialWS(t, env)
	c.send(map[string]any{"type": "subscribe", "id": "x", "ref": 1})
	c.expectError(codeNoSession, "1")
	c.send(map[string]any{"type": "start", "ref": "s"})
	m := c.expect("session")
	if m.Status != "created" || m.SessionID == "" || *m.Position != 2 || string(m.Ref) != `"s"` {
		t.Fatalf("session %+v, want created at the head, 2", m)
	}
	id := m.SessionID
	c.send(map[string]any{"type": "start", "ref": 2})
	c.expectError(codeSessionStarted, "2")
	c.subscribe("all", nil, nil)
	appendEvents(t, env.store, testEvent("billing", "Invoice", "Paid", "a"))
	if got := positions(c.waitEvents(1)); !slices.Equal(got, []int64{3}) {
		t.Fatalf("positions %v", got)
	}
	_ = c.conn.Close(websocket.StatusNormalClosure, "")

	// The session outlives the connection: resuming restores its
	// subscription and position.
	appendEvents(t, env.store, testEvent("billing", "Invoice", "Paid", "b"))
	c = dialWS(t, env)
	c.send(map[string]any{"type": "resume", "session_id": id})
	if m := c.expect("session"); m.Status != "resumed" || m.SessionID != id || *m.Position != 3 {
		t.Fatalf("session %+v, want %s resumed at 3", m, id)
	}
	if got := positions(c.waitEvents(1)); !slices.Equal(got, []int64{4}) {
		t.Fatalf("positions %v", got)
	}

	// Another connection resuming the session takes it over, from the
	// last event id it gives.
	c2 := dialWS(t, env)
	c2.send(map[string]any{"type": "resume", "session_id": id, "last_event_id": "2"})
	if m := c2.expect("session"); m.Status != "resumed" || m.SessionID != id || *m.Position != 2 {
		t.Fatalf("session %+v, want %s resumed at 2", m, id)
	}
	if got := positions(c2.waitEvents(2)); !slices.Equal(got, []int64{3, 4}) {
		t.Fatalf("positions %v", got)
	}
	if m := c.expect("notice"); m.Code != codeReplaced {
		t.Fatalf("notice %+v", m)
	}
	c.expectClose(websocket.StatusPolicyViolation)

	// An unknown session: a new one, from the last event id given.
	c3 := dialWS(t, env)
	c3.send(map[string]any{"type": "resume", "session_id": "nope", "last_event_id": 1})
	if m := c3.expect("session"); m.Status != "created" || m.SessionID == "nope" || m.SessionID == "" || *m.Position != 1 {
		t.Fatalf("session %+v, want a new one at 1", m)
	}
	c3.subscribe("all", nil, nil)
	if got := positions(c3.waitEvents(3)); !slices.Equal(got, []int64{2, 3, 4}) {
		t.Fatalf("positions %v", got)
	}
}

func TestWSSubscriptions(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil, envOptions{})
	c := dialWS(t, env)
	c.start()
	c.subscribe("a", []Selector{{Category: []string{"billing"}}}, nil)
	c.subscribe("b", []Selector{{Key: []string{"k-*"}}}, []Selector{{Action: []string{"Deleted"}}})
	appendEvents(t, env.store,
		testEvent("billing", "Invoice", "Created", "k-1"), // 1: a and b, once
		testEvent("shipping", "Parcel", "Sent", "k-2"),    // 2: b
		testEvent("shipping", "Parcel", "Sent", "x"),      // 3: none
		testEvent("billing", "Invoice", "Deleted", "x"),   // 4: a
		testEvent("shipping", "Parcel", "Deleted", "k-3"), // 5: none (b excludes it)
		testEvent("billing", "Invoice", "Paid", "k-4"),    // 6: a and b
	)
	if got := positions(c.waitEvents(4)); !slices.Equal(got, []int64{1, 2, 4, 6}) {
		t.Fatalf("positions %v, want [1 2 4 6]", got)
	}

	// Replacing a applies to the events after the session's position.
	c.subscribe("a", []Selector{{Category: []string{"shipping"}}}, nil)
	appendEvents(t, env.store,
		testEvent("billing", "Invoice", "Created", "y"), // 7: none now
		testEvent("shipping", "Parcel", "Sent", "y"),    // 8: a
	)
	if got := positions(c.waitEvents(5)); got[4] != 8 {
		t.Fatalf("positions %v, want 8 last", got)
	}
	c.send(map[string]any{"type": "unsubscribe", "id": "b", "ref": 1})
	if m := c.expect("unsubscribed"); m.ID != "b" || string(m.Ref) != "1" {
		t.Fatalf("unsubscribed %+v", m)
	}
	c.send(map[string]any{"type": "unsubscribe", "id": "b", "ref": 2})
	c.expectError(codeUnknownSubscription, "2")
	c.send(map[string]any{"type": "state", "id": "b", "ref": 3})
	c.expectError(codeUnknownSubscription, "3")
	appendEvents(t, env.store,
		testEvent("billing", "Invoice", "Created", "k-9"), // 9: none (b is gone)
		testEvent("shipping", "Parcel", "Sent", "z"),      // 10: a
	)
	if got := positions(c.waitEvents(6)); got[5] != 10 {
		t.Fatalf("positions %v, want 10 last", got)
	}

	// With no subscription, the session's position stays: a subscription
	// made later gets what came meanwhile.
	c.send(map[string]any{"type": "unsubscribe", "id": "a"})
	c.expect("unsubscribed")
	appendEvents(t, env.store, testEvent("audit", "Login", "Done", "u")) // 11
	c.send(map[string]any{"type": "subscribe", "id": "audit", "include": []Selector{{Category: []string{"audit"}}}})
	if m := c.expect("subscribed"); *m.Position != 10 {
		t.Fatalf("subscribed %+v, want position 10", m)
	}
	if got := positions(c.waitEvents(7)); got[6] != 11 {
		t.Fatalf("positions %v, want 11 last", got)
	}

	for i := range wsMaxSubscriptions - 1 {
		c.subscribe(fmt.Sprint("s", i), []Selector{{Key: []string{"none"}}}, nil)
	}
	c.send(map[string]any{"type": "subscribe", "id": "one-too-many", "ref": 4})
	c.expectError(codeTooManySubs, "4")
}

func TestWSBadInput(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil, envOptions{})
	c := dialWS(t, env)
	ping := func(ref string) {
		t.Helper()
		c.sendRaw(`{"type":"ping","ref":` + ref + `}`)
		if m := c.expect("pong"); string(m.Ref) != ref {
			t.Fatalf("pong %+v, want ref %s", m, ref)
		}
	}
	ping(`"p1"`)
	ping(`{"any":"json"}`)

	tests := []struct{ name, msg, code, ref, mention string }{
		{"malformed", `{"type":"ping"`, codeBadRequest, "", "malformed"},
		{"not an object", `[1,2]`, codeBadRequest, "", "malformed"},
		{"two values", `{"type":"ping"} {"type":"ping"}`, codeBadRequest, "", "more than one"},
		{"no type", `{"ref":5}`, codeBadRequest, "5", "type"},
		{"unknown field", `{"type":"ping","ref":6,"colour":"red"}`, codeBadRequest, "6", "colour"},
		{"unknown type", `{"type":"frobnicate","ref":7}`, codeUnknownType, "7", "frobnicate"},
		{"a field of another type", `{"type":"ping","ref":11,"id":"x"}`, codeBadRequest, "11", "ping takes no id"},
		{"a filter to unsubscribe", `{"type":"unsubscribe","ref":12,"id":"x","include":[]}`, codeBadRequest, "12", "include"},
		{"start with a session id", `{"type":"start","ref":8,"session_id":"x"}`, codeBadRequest, "8", "resume"},
		{"resume without a session id", `{"type":"resume","ref":9}`, codeBadRequest, "9", "session_id"},
		{"bad last event id", `{"type":"start","ref":10,"last_event_id":"abc"}`, codeBadRequest, "10", "last_event_id"},
	}
	for _, tt := range tests {
		c.sendRaw(tt.msg)
		if m := c.expectError(tt.code, tt.ref); !strings.Contains(m.Message, tt.mention) {
			t.Errorf("%s: message %q does not mention %q", tt.name, m.Message, tt.mention)
		}
	}
	if err := c.conn.Write(c.ctx, websocket.MessageBinary, []byte(`{"type":"ping"}`)); err != nil {
		t.Fatal(err)
	}
	c.expectError(codeBadRequest, "")

	c.start()
	filters := []struct{ name, msg, code, mention string }{
		{"unknown filter field", `{"type":"subscribe","id":"x","ref":1,"include":[{"topik":"billing.*"}]}`, codeInvalidFilter, "topik"},
		{"unknown exclude field", `{"type":"subscribe","id":"x","ref":1,"exclude":[{"tenant":"acme"}]}`, codeInvalidFilter, "tenant"},
		{"empty pattern", `{"type":"subscribe","id":"x","ref":1,"include":[{"topic":""}]}`, codeInvalidFilter, "empty pattern"},
		{"not a list", `{"type":"subscribe","id":"x","ref":1,"include":{"topic":"a"}}`, codeInvalidFilter, "list"},
		{"not patterns", `{"type":"subscribe","id":"x","ref":1,"include":[{"topic":[1]}]}`, codeInvalidFilter, "topic"},
		{"no id", `{"type":"subscribe","ref":1}`, codeBadRequest, "id"},
	}
	for _, tt := range filters {
		c.sendRaw(tt.msg)
		if m := c.expectError(tt.code, "1"); !strings.Contains(m.Message, tt.mention) {
			t.Errorf("%s: message %q does not mention %q", tt.name, m.Message, tt.mention)
		}
	}
	// The connection is still of use; a pattern may come alone.
	c.sendRaw(`{"type":"subscribe","id":"x","include":[{"topic":"billing.*","key":["a","b"]}]}`)
	c.expect("subscribed")
	appendEvents(t, env.store, testEvent("billing", "Invoice", "Created", "c"), testEvent("billing", "Invoice", "Created", "b"))
	if got := positions(c.waitEvents(1)); !slices.Equal(got, []int64{2}) {
		t.Fatalf("positions %v", got)
	}
	ping("3")
}

// TestWSOversized: a message over the limit closes that connection only.
func TestWSOversized(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil, envOptions{})
	c1, c2 := dialWS(t, env), dialWS(t, env)
	c1.start()
	c2.start()
	c2.subscribe("all", nil, nil)
	c1.sendRaw(`{"type":"ping","ref":"` + strings.Repeat("x", wsMaxMessage) + `"}`)
	err := c1.expectClose(websocket.StatusMessageTooBig)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || !strings.Contains(ce.Reason, strconv.Itoa(wsMaxMessage)) {
		t.Errorf("close %v: the reason does not say the limit", err)
	}
	c2.send(map[string]any{"type": "ping"})
	c2.expect("pong")
	appendEvents(t, env.store, testEvent("billing", "Invoice", "Created", "a"))
	c2.waitEvents(1)
}

func TestWSShutdown(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil, envOptions{})
	c := dialWS(t, env)
	c.start()
	done := make(chan error, 1)
	go func() { done <- env.srv.Close() }()
	if m := c.expect("notice"); m.Code != codeShutdown {
		t.Fatalf("notice %+v", m)
	}
	c.expectClose(websocket.StatusGoingAway)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestWSState asks for a state while events are appended: the snapshot is
// the latest event of every key as of its position, the stream before it
// stops at that position and the stream after it starts there.
func TestWSState(t *testing.T) {
	t.Parallel()
	forEachSubscriptionStore(t, testWSState)
}

func testWSState(t *testing.T, st Store) {
	env := newTestEnv(t, &Config{Store: st}, envOptions{})
	for i := range 20 {
		appendEvents(t, env.store, testEvent("billing", "Invoice", "Created", fmt.Sprint("inv-", i)))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 2000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				ev := testEvent("billing", "Invoice", "Updated", fmt.Sprint("inv-", rand.IntN(30)))
				if w == 0 {
					ev = testEvent("shipping", "Parcel", "Sent", fmt.Sprint("p-", rand.IntN(5)))
				}
				appendEvents(t, env.store, ev)
				time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
			}
		}()
	}

	c := dialWS(t, env)
	c.send(map[string]any{"type": "start"})
	start := *c.expect("session").Position
	include := []Selector{{Category: []string{"billing"}}}
	c.subscribe("inv", include, nil)
	// A subscription applies from the session's position when it is made,
	// which the answer says.
	c.send(map[string]any{"type": "subscribe", "id": "parcels", "include": []Selector{{Category: []string{"shipping"}}}})
	parcelsFrom := *c.expect("subscribed").Position
	time.Sleep(20 * time.Millisecond)
	c.send(map[string]any{"type": "state", "id": "inv", "ref": "st"})
	state := c.expect("state")
	before := len(c.events)
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	head, err := env.store.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for len(c.events) == 0 || c.events[len(c.events)-1].Position < head {
		c.waitEvents(len(c.events) + 1)
	}

	if state.ID != "inv" || string(state.Ref) != `"st"` || state.Position == nil {
		t.Fatalf("state %+v", state)
	}
	p := *state.Position
	all, err := env.store.Read(context.Background(), &ReadRequest{Limit: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	m := MustCompile(Filter{Include: include})
	latest := map[string]int64{}
	for _, ev := range all {
		if ev.Position <= p && m.Match(&ev) {
			latest[ev.Key] = ev.Position
		}
	}
	var want []int64
	for _, pos := range latest {
		want = append(want, pos)
	}
	slices.Sort(want)
	if got := positions(state.Events); !slices.Equal(got, want) {
		t.Errorf("snapshot at %d: %v, want %v", p, got, want)
	}
	for i, ev := range c.events {
		if i < before && ev.Position > p || i >= before && ev.Position <= p {
			t.Fatalf("event %d at %d is on the wrong side of the state message (%d events before it, position %d)", i, ev.Position, before, p)
		}
	}
	// The stream is every event of the session's subscriptions after they
	// were made, each once.
	var stream []int64
	for _, ev := range all {
		if ev.Category == "billing" && ev.Position > start || ev.Category == "shipping" && ev.Position > parcelsFrom {
			stream = append(stream, ev.Position)
		}
	}
	if got := positions(c.events); !slices.Equal(got, stream) {
		missing, wrong := diffPositions(stream, got)
		t.Fatalf("stream of %d events, want %d: missing %v, wrong %v", len(got), len(stream), missing, wrong)
	}
	t.Logf("snapshot of %d keys at %d; %d events streamed before it, %d after", len(state.Events), p, before, len(c.events)-before)
}

// TestWSSlowConsumer: a connection that stops reading during a burst is
// told it is too slow and closed; resuming the session catches up.
func TestWSSlowConsumer(t *testing.T) {
	t.Parallel()
	forEachSubscriptionStore(t, testWSSlowConsumer)
}

func testWSSlowConsumer(t *testing.T, st Store) {
	env := newTestEnv(t, &Config{Store: st, SubscriberBuffer: 200, WriteTimeout: 30 * time.Second}, envOptions{tinySockets: true})
	c := dialWS(t, env)
	id := c.start()
	c.subscribe("all", nil, nil)
	total := burst(t, env.store, 2000, 256)
	for {
		m, err := c.recv()
		if err != nil {
			t.Fatalf("after %d events: %v", len(c.events), err)
		}
		if m.Type == "notice" {
			if m.Code != codeSlowConsumer {
				t.Fatalf("notice %+v", m)
			}
			break
		}
	}
	c.expectClose(websocket.StatusPolicyViolation)
	got := c.events
	t.Logf("%d events of %d received before the notice", len(got), total)
	if len(got) >= total {
		t.Fatalf("received all %d events before the notice", total)
	}
	// Resume until caught up: a resumed session that joins the ring while
	// the burst goes on may be cut again.
	for len(got) < total {
		c = dialWS(t, env)
		c.send(map[string]any{"type": "resume", "session_id": id, "last_event_id": len(got)})
		if m := c.expect("session"); m.Status != "resumed" {
			t.Fatalf("session %+v", m)
		}
		for len(got)+len(c.events) < total {
			m, err := c.recv()
			if err != nil {
				t.Fatalf("after %d events: %v", len(got)+len(c.events), err)
			}
			if m.Type == "notice" {
				c.expectClose(websocket.StatusPolicyViolation)
				break
			}
		}
		got = append(got, c.events...)
	}
	for i, ev := range got {
		if ev.Position != int64(i+1) {
			t.Fatalf("position %d at %d", ev.Position, i)
		}
	}
}

// TestWSStateFold: a snapshot older than the session's position is brought
// up to it, so that the stream after the state message repeats nothing.
func TestWSStateFold(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil, envOptions{})
	appendEvents(t, env.store,
		testEvent("billing", "Invoice", "Created", "k1"), // 1
		testEvent("billing", "Invoice", "Created", "k2"), // 2
		testEvent("billing", "Invoice", "Paid", "k1"),    // 3
		testEvent("audit", "Login", "Done", "k2"),        // 4: not matched
		testEvent("billing", "Invoice", "Created", "k3"), // 5
		testEvent("billing", "Invoice", "Created", ""),   // 6: no key, no state
	)
	m := MustCompile(Filter{Include: []Selector{{Category: []string{"billing"}}}})
	snapshot, err := env.store.Read(context.Background(), &ReadRequest{Before: 3, Match: m})
	if err != nil {
		t.Fatal(err)
	}
	c := &wsConn{s: env.srv}
	got, err := c.foldState(context.Background(), snapshot, m, 2, 6)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(positions(got), []int64{2, 3, 5}) {
		t.Errorf("state %v, want [2 3 5]", positions(got))
	}
}
