package eventsapi

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Limits of the WebSocket protocol.
const (
	// wsMaxMessage bounds a client message; a larger one closes the
	// connection with status 1009.
	wsMaxMessage = 64 << 10
	// wsMaxSubscriptions bounds the subscriptions of a session.
	wsMaxSubscriptions = 32
	// wsMaxFilterBytes bounds the filters of a session's subscriptions, as
	// sent.
	wsMaxFilterBytes = 64 << 10
	// wsMaxIDBytes bounds a subscription id.
	wsMaxIDBytes = 128
)

// loopbackOrigins are the browser origins a server in development mode
// accepts beside its own host: pages served from the developer's machine on
// any port. Pages from elsewhere cannot open a socket to it.
var loopbackOrigins = []string{"localhost", "localhost:*", "127.0.0.1", "127.0.0.1:*", `\[::1\]`, `\[::1\]:*`}

// wsRequest is a client message; which fields apply depends on Type.
type wsRequest struct {
	Type        string          `json:"type"`
	Ref         json.RawMessage `json:"ref,omitempty"`
	SessionID   string          `json:"session_id,omitempty"`
	LastEventID *wsPosition     `json:"last_event_id,omitempty"`
	ID          string          `json:"id,omitempty"`
	Include     json.RawMessage `json:"include,omitempty"`
	Exclude     json.RawMessage `json:"exclude,omitempty"`
	Tenant      string          `json:"tenant,omitempty"`
}

// wsPosition is a stream position as a client sends it: a number, or a
// string of digits as EventSource ids are.
type wsPosition int64

// UnmarshalJSON implements json.Unmarshaler.
func (p *wsPosition) UnmarshalJSON(b []byte) error {
	s := string(b)
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	n, err := parsePosition("last_event_id", s)
	*p = wsPosition(n)
	return err
}

// wsReply is a server message other than events and state.
type wsReply struct {
	Type      string          `json:"type"`
	Ref       json.RawMessage `json:"ref,omitempty"`
	SessionID string          `json:"session_id,omitempty"`
	Status    string          `json:"status,omitempty"`
	ID        string          `json:"id,omitempty"`
	Position  *int64          `json:"position,omitempty"`
	Code      string          `json:"code,omitempty"`
	Message   string          `json:"message,omitempty"`
}

// wsIncoming is what the read loop hands the session loop: a request, an
// error to answer, or a reason to close.
type wsIncoming struct {
	req   *wsRequest
	err   *wsReply
	close *websocket.CloseError
}

// subscription is one of a session's filters.
type subscription struct {
	id   string
	m    *Matcher
	size int // bytes of the filter as sent
}

// wsConn is one WebSocket connection. Its session loop (run) owns the
// session, the cursor and every write; the read loop parses client
// messages, and the ping loop checks the peer is alive. The context its
// methods take ends when the server closes; writes are bounded by their
// own timeouts.
type wsConn struct {
	s    *Server
	conn *websocket.Conn
	p    *Principal

	done     chan struct{} // closed when the connection ends
	kicked   chan struct{} // closed when another connection resumes the session
	kickOnce sync.Once

	sess  *session
	subs  []*subscription
	sel   selection
	cur   *cursor
	sent  atomic.Int64 // the client was sent every matching event up to here; -1 before the stream opens
	batch []entry
}

// serveWebSocket serves GET /api/ws to p, as PROTOCOL.md describes.
func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, p *Principal) {
	if err := s.hub.acquire(); err != nil {
		s.admitError(w, err)
		return
	}
	defer s.hub.release()
	opts := &websocket.AcceptOptions{}
	if s.cfg.Keys == nil {
		opts.OriginPatterns = loopbackOrigins
	}
	conn, err := websocket.Accept(w, r, opts)
	if err != nil {
		s.cfg.Logger.Debug("events API: WebSocket refused", "remote", r.RemoteAddr, "error", err)
		return // Accept has answered
	}
	conn.SetReadLimit(wsMaxMessage)
	c := &wsConn{s: s, conn: conn, p: p, done: make(chan struct{}), kicked: make(chan struct{})}
	c.sent.Store(-1)
	ctx, cancel := s.streamContext(r.Context())
	defer cancel()
	c.run(ctx)
}

// kick tells the connection that another one resumed its session.
func (c *wsConn) kick() { c.kickOnce.Do(func() { close(c.kicked) }) }

// sentPos returns the position the client was sent everything up to.
func (c *wsConn) sentPos() int64 { return c.sent.Load() }

// run is the session loop: it answers requests and delivers the session's
// events until the connection ends.
func (c *wsConn) run(ctx context.Context) {
	in := make(chan wsIncoming, 1)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		c.readLoop(in)
	}()
	go func() {
		defer wg.Done()
		c.pingLoop()
	}()
	defer func() {
		close(c.done)
		_ = c.conn.CloseNow()
		wg.Wait()
		if c.sess != nil {
			c.s.hub.sessions.detach(c.sess, c, c.sent.Load())
		}
	}()
	more := make(chan struct{}) // closed: a wait that does not block
	close(more)
	for {
		var wait <-chan struct{}
		if c.cur != nil && len(c.subs) > 0 {
			var ok bool
			if wait, ok = c.deliver(ctx); !ok {
				return
			}
			if wait == nil {
				wait = more // more may be ready: see to the rest, then deliver again
			}
		}
		select {
		case m, open := <-in:
			if !open || !c.handle(ctx, m) {
				return
			}
		case <-wait:
		case <-c.kicked:
			c.end(ctx, codeReplaced, "another connection resumed this session", websocket.StatusPolicyViolation)
			return
		case <-ctx.Done():
			c.end(ctx, codeShutdown, "the server is shutting down; reconnect and resume", websocket.StatusGoingAway)
			return
		}
	}
}

// readLoop reads and parses client messages until the connection ends.
func (c *wsConn) readLoop(out chan<- wsIncoming) {
	defer close(out)
	for {
		// No deadline: closing the connection ends the read.
		typ, r, err := c.conn.Reader(context.Background())
		if err != nil {
			return
		}
		b, err := io.ReadAll(io.LimitReader(r, wsMaxMessage+1))
		if err != nil {
			return
		}
		var m wsIncoming
		switch {
		case len(b) > wsMaxMessage:
			m.close = &websocket.CloseError{Code: websocket.StatusMessageTooBig, Reason: fmt.Sprintf("message larger than %d bytes", wsMaxMessage)}
		case typ != websocket.MessageText:
			m.err = &wsReply{Type: "error", Code: codeBadRequest, Message: "binary messages are not part of the protocol: send JSON text"}
		default:
			m = parseRequest(b)
		}
		select {
		case out <- m:
		case <-c.done:
			return
		}
		if m.close != nil {
			return
		}
	}
}

// parseRequest decodes a client message strictly.
func parseRequest(b []byte) wsIncoming {
	var req wsRequest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	err := dec.Decode(&req)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if err == nil && req.Type == "" {
		err = errors.New(`"type" is missing`)
	}
	if err != nil {
		var loose struct {
			Ref json.RawMessage `json:"ref"`
		}
		_ = json.Unmarshal(b, &loose) // answer with the ref when there is one
		return wsIncoming{err: &wsReply{Type: "error", Ref: loose.Ref, Code: codeBadRequest,
			Message: "malformed message: " + strings.TrimPrefix(err.Error(), "json: ") + `; send one JSON object with a "type"`}}
	}
	return wsIncoming{req: &req}
}

// pingLoop pings the peer every heartbeat, and ends a connection whose peer
// does not answer within the write timeout.
func (c *wsConn) pingLoop() {
	t := time.NewTicker(c.s.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.WriteTimeout)
		err := c.conn.Ping(ctx)
		cancel()
		if err != nil {
			if !isDone(c.done) {
				c.s.cfg.Logger.Debug("events API: WebSocket peer does not answer pings; closing", "principal", c.p.Name, "error", err)
			}
			_ = c.conn.CloseNow()
			return
		}
	}
}

// handle answers one incoming message and reports whether the connection
// goes on.
func (c *wsConn) handle(ctx context.Context, m wsIncoming) bool {
	switch {
	case m.close != nil:
		_ = c.conn.Close(m.close.Code, m.close.Reason)
		return false
	case m.err != nil:
		return c.reply(ctx, m.err)
	}
	req := m.req
	if f := strayField(req); f != "" {
		return c.fail(ctx, req, codeBadRequest, fmt.Sprintf("%s takes no %s", req.Type, f))
	}
	switch req.Type {
	case "start", "resume":
		return c.start(ctx, req)
	case "subscribe":
		return c.subscribe(ctx, req)
	case "unsubscribe":
		return c.unsubscribe(ctx, req)
	case "state":
		return c.state(ctx, req)
	case "ping":
		return c.reply(ctx, &wsReply{Type: "pong", Ref: req.Ref})
	}
	return c.fail(ctx, req, codeUnknownType, fmt.Sprintf("unknown message type %q: the types are start, resume, subscribe, unsubscribe, state and ping", req.Type))
}

// strayField returns a field req has that its type does not take, "" when
// there is none or the type is unknown.
func strayField(req *wsRequest) string {
	var takes []string
	switch req.Type {
	case "start", "resume":
		takes = []string{"session_id", "last_event_id"}
	case "subscribe":
		takes = []string{"id", "include", "exclude", "tenant"}
	case "unsubscribe", "state":
		takes = []string{"id"}
	case "ping":
	default:
		return ""
	}
	has := []struct {
		name string
		set  bool
	}{
		{"session_id", req.SessionID != ""},
		{"last_event_id", req.LastEventID != nil},
		{"id", req.ID != ""},
		{"include", req.Include != nil},
		{"exclude", req.Exclude != nil},
		{"tenant", req.Tenant != ""},
	}
	for _, f := range has {
		if f.set && !slices.Contains(takes, f.name) {
			return f.name
		}
	}
	return ""
}

// start answers start and resume.
func (c *wsConn) start(ctx context.Context, req *wsRequest) bool {
	switch {
	case c.sess != nil:
		return c.fail(ctx, req, codeSessionStarted, "this connection already has session "+c.sess.id)
	case req.Type == "resume" && req.SessionID == "":
		return c.fail(ctx, req, codeBadRequest, "resume: session_id is missing")
	case req.Type == "start" && req.SessionID != "":
		return c.fail(ctx, req, codeBadRequest, "start takes no session_id: send resume to resume a session")
	}
	var after *int64
	if req.LastEventID != nil {
		after = (*int64)(req.LastEventID)
	}
	status := "created"
	ss := c.s.hub.sessions
	if req.Type == "resume" {
		if sess, subs, pos, ok := ss.resume(req.SessionID, c.p, c); ok {
			c.sess, c.subs, status = sess, subs, "resumed"
			if after == nil && pos >= 0 {
				after = &pos
			}
		}
	}
	if c.sess == nil {
		c.sess = ss.create(c.p, c)
	}
	c.sel = c.selection()
	cur, err := c.s.hub.openCursor(ctx, after)
	if err != nil {
		c.failed(ctx, err)
		return false
	}
	c.cur = cur
	c.sent.Store(cur.pos)
	pos := cur.pos
	return c.reply(ctx, &wsReply{Type: "session", Ref: req.Ref, SessionID: c.sess.id, Status: status, Position: &pos})
}

// selection returns the session's stream: every event any subscription
// matches, once.
func (c *wsConn) selection() selection {
	ms := make([]*Matcher, len(c.subs))
	for i, s := range c.subs {
		ms[i] = s.m
	}
	return unionSelection(c.p, ms)
}

// unionSelection is every event any of ms matches, once, for p: the store
// selects by the one matcher when there is one, else by p's tenant.
func unionSelection(p *Principal, ms []*Matcher) selection {
	var store *Matcher
	switch {
	case len(ms) == 1:
		store = ms[0]
	case p.Tenant != "":
		store = MustCompile(Filter{Tenant: p.Tenant})
	}
	return selection{store: store, match: func(ev *Event) bool {
		for _, m := range ms {
			if m.Match(ev) {
				return true
			}
		}
		return false
	}}
}

// subscribe creates or replaces a subscription.
func (c *wsConn) subscribe(ctx context.Context, req *wsRequest) bool {
	switch {
	case c.sess == nil:
		return c.fail(ctx, req, codeNoSession, "subscribe: send start or resume first")
	case req.ID == "":
		return c.fail(ctx, req, codeBadRequest, "subscribe: id is missing")
	case len(req.ID) > wsMaxIDBytes:
		return c.fail(ctx, req, codeBadRequest, fmt.Sprintf("subscribe: id of %d bytes, at most %d", len(req.ID), wsMaxIDBytes))
	}
	f := Filter{Tenant: req.Tenant}
	var err error
	if f.Include, err = decodeSelectors("include", req.Include); err != nil {
		return c.fail(ctx, req, codeInvalidFilter, err.Error())
	}
	if f.Exclude, err = decodeSelectors("exclude", req.Exclude); err != nil {
		return c.fail(ctx, req, codeInvalidFilter, err.Error())
	}
	if err := scopeFilter(c.p, &f); err != nil {
		return c.fail(ctx, req, codeForbidden, err.Error())
	}
	m, err := Compile(f)
	if err != nil {
		return c.fail(ctx, req, codeInvalidFilter, err.Error())
	}
	sub := &subscription{id: req.ID, m: m, size: len(req.Include) + len(req.Exclude) + len(req.Tenant)}
	i := slices.IndexFunc(c.subs, func(s *subscription) bool { return s.id == req.ID })
	total := sub.size
	for j, s := range c.subs {
		if j != i {
			total += s.size
		}
	}
	switch {
	case i < 0 && len(c.subs) >= wsMaxSubscriptions:
		return c.fail(ctx, req, codeTooManySubs, fmt.Sprintf("this session has %d subscriptions, the limit: unsubscribe or replace one", wsMaxSubscriptions))
	case total > wsMaxFilterBytes:
		return c.fail(ctx, req, codeTooManySubs, fmt.Sprintf("the filters of this session would total %d bytes, at most %d", total, wsMaxFilterBytes))
	}
	subs := slices.Clone(c.subs)
	if i < 0 {
		subs = append(subs, sub)
	} else {
		subs[i] = sub
	}
	c.setSubs(subs)
	pos := c.cur.pos
	return c.reply(ctx, &wsReply{Type: "subscribed", Ref: req.Ref, ID: req.ID, Position: &pos})
}

// unsubscribe ends a subscription.
func (c *wsConn) unsubscribe(ctx context.Context, req *wsRequest) bool {
	i, ok := c.find(ctx, req)
	if i < 0 {
		return ok
	}
	c.setSubs(slices.Delete(slices.Clone(c.subs), i, i+1))
	return c.reply(ctx, &wsReply{Type: "unsubscribed", Ref: req.Ref, ID: req.ID})
}

// find returns the index of subscription req.ID. With none, or no session,
// it answers req with an error and returns -1 and whether the connection
// goes on.
func (c *wsConn) find(ctx context.Context, req *wsRequest) (int, bool) {
	if c.sess == nil {
		return -1, c.fail(ctx, req, codeNoSession, req.Type+": send start or resume first")
	}
	i := slices.IndexFunc(c.subs, func(s *subscription) bool { return s.id == req.ID })
	if i < 0 {
		return -1, c.fail(ctx, req, codeUnknownSubscription, fmt.Sprintf("%s: no subscription %q", req.Type, req.ID))
	}
	return i, true
}

// setSubs makes subs the session's subscriptions.
func (c *wsConn) setSubs(subs []*subscription) {
	if len(c.subs) == 0 {
		// The stream was paused: it goes on from the session's position, from
		// the store when the ring has moved past it.
		c.cur.live = false
	}
	c.subs = subs
	c.sel = c.selection()
	c.s.hub.sessions.setSubs(c.sess, c, subs)
}

// decodeSelectors reads the selectors of a subscribe message. A field takes
// a pattern or a list of them.
func decodeSelectors(name string, raw json.RawMessage) ([]Selector, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var objs []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &objs); err != nil {
		return nil, fmt.Errorf("%w: %s: a list of selectors (JSON objects) is expected", ErrInvalidFilter, name)
	}
	out := make([]Selector, len(objs))
	for i, obj := range objs {
		for k, v := range obj {
			if k == "target" {
				if err := decodeStrict(v, &out[i].Target); err != nil {
					return nil, fmt.Errorf("%w: %s[%d].target: an object with collection, project and layout is expected", ErrInvalidFilter, name, i)
				}
				continue
			}
			fld := slices.Index(fieldNames[:], k)
			if fld < 0 {
				return nil, fmt.Errorf("%w: %s[%d]: unknown field %q: a selector has %s and target", ErrInvalidFilter, name, i, k, strings.Join(fieldNames[:], ", "))
			}
			var one string
			var list []string
			if err := json.Unmarshal(v, &one); err == nil {
				list = []string{one}
			} else if err := json.Unmarshal(v, &list); err != nil {
				return nil, fmt.Errorf("%w: %s[%d].%s: a pattern or a list of patterns (strings) is expected", ErrInvalidFilter, name, i, k)
			}
			*out[i].list(field(fld)) = list
		}
	}
	return out, nil
}

// state answers a state request: the latest event of every key the
// subscription matches, as of a position, and from there the stream goes on
// with nothing lost or repeated.
func (c *wsConn) state(ctx context.Context, req *wsRequest) bool {
	i, ok := c.find(ctx, req)
	if i < 0 {
		return ok
	}
	sub := c.subs[i]
	st := c.s.hub.store
	evs, pos, err := st.Latest(ctx, sub.m)
	if err != nil {
		return c.storeError(ctx, req, err)
	}
	switch sent := c.cur.pos; {
	case pos > sent:
		// Send the session's events up to the snapshot first: what follows
		// the state message is what comes after its position.
		for c.cur.pos < pos {
			batch, g, _, err := c.cur.readStore(ctx, c.sel, c.batch[:0], pos)
			if g != nil && !c.notice(ctx, codeGap, g.message()) {
				return false
			}
			if len(batch) > 0 && !c.writeEvents(ctx, batch) {
				return false
			}
			if err != nil {
				return c.storeError(ctx, req, err)
			}
			c.sent.Store(c.cur.pos)
		}
	case pos < sent:
		// The session is past the snapshot: bring the snapshot up to it.
		if evs, err = c.foldState(ctx, evs, sub.m, pos, sent); err != nil {
			return c.storeError(ctx, req, err)
		}
		pos = sent
	}
	return c.writeState(ctx, req, sub.id, pos, evs)
}

// foldState updates snapshot evs, as of position from, with the events of
// (from, to] that m matches.
func (c *wsConn) foldState(ctx context.Context, evs []Event, m *Matcher, from, to int64) ([]Event, error) {
	byKey := make(map[string]int, len(evs))
	for i := range evs {
		byKey[evs[i].Key] = i
	}
	for after := from; ; {
		page, err := c.s.hub.store.Read(ctx, &ReadRequest{After: after, Before: to + 1, Limit: storePage, Match: m})
		if err != nil {
			return nil, fmt.Errorf("read the store: %w", err)
		}
		for _, ev := range page {
			if ev.Key == "" {
				continue
			}
			if i, ok := byKey[ev.Key]; ok {
				evs[i] = ev
			} else {
				byKey[ev.Key] = len(evs)
				evs = append(evs, ev)
			}
		}
		if len(page) < storePage {
			break
		}
		after = page[len(page)-1].Position
	}
	slices.SortFunc(evs, func(a, b Event) int { return cmp.Compare(a.Position, b.Position) })
	return evs, nil
}

// writeState writes a state message, streaming its events.
func (c *wsConn) writeState(ctx context.Context, req *wsRequest, id string, pos int64, evs []Event) bool {
	head, _ := json.Marshal(&wsReply{Type: "state", Ref: req.Ref, ID: id, Position: &pos})
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.s.cfg.WriteTimeout)
	defer cancel()
	w, err := c.conn.Writer(wctx, websocket.MessageText)
	if err != nil {
		return false
	}
	bw := bufio.NewWriterSize(w, 32<<10)
	_, _ = bw.Write(head[:len(head)-1])
	_, _ = bw.WriteString(`,"events":[`)
	for i := range evs {
		if i > 0 {
			_ = bw.WriteByte(',')
		}
		_, _ = bw.Write(c.s.hub.encode(&evs[i]))
	}
	_, _ = bw.WriteString("]}")
	if err := bw.Flush(); err != nil {
		return false
	}
	return w.Close() == nil
}

// deliver writes the next batch of the session's events. It returns the
// channel to wait on when there is none, and false when the connection is
// over.
func (c *wsConn) deliver(ctx context.Context) (<-chan struct{}, bool) {
	batch, wait, g, err := c.cur.next(ctx, c.sel, c.batch)
	c.batch = batch[:0]
	if g != nil && !c.notice(ctx, codeGap, g.message()) {
		return nil, false
	}
	if len(batch) > 0 && !c.writeEvents(ctx, batch) {
		return nil, false
	}
	if err != nil {
		c.failed(ctx, err)
		return nil, false
	}
	c.sent.Store(c.cur.pos)
	return wait, true
}

// writeEvents writes an events message: the entries' bytes as they are,
// gathered in a buffer of the server's pool (shared with the SSE streams)
// that goes back once written, so an idle connection holds none.
func (c *wsConn) writeEvents(ctx context.Context, batch []entry) bool {
	buf := append(c.s.hub.bufs.get(), `{"type":"events","events":[`...)
	for i, e := range batch {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, e.data...)
	}
	buf = append(buf, "]}"...)
	ok := c.write(ctx, buf, c.s.cfg.WriteTimeout)
	c.s.hub.bufs.put(buf)
	return ok
}

// reply writes one message.
func (c *wsConn) reply(ctx context.Context, m *wsReply) bool {
	b, _ := json.Marshal(m)
	return c.write(ctx, b, c.s.cfg.WriteTimeout)
}

// fail answers req with a non-fatal error.
func (c *wsConn) fail(ctx context.Context, req *wsRequest, code, message string) bool {
	return c.reply(ctx, &wsReply{Type: "error", Ref: req.Ref, Code: code, Message: message})
}

// storeError answers req after the store failed: with an error when the
// store is at fault, ending the connection when the server is closing.
func (c *wsConn) storeError(ctx context.Context, req *wsRequest, err error) bool {
	if ctx.Err() != nil {
		c.failed(ctx, err)
		return false
	}
	c.s.cfg.Logger.Error("events API: WebSocket request", "principal", c.p.Name, "type", req.Type, "error", err)
	return c.fail(ctx, req, codeUnavailable, "the event store is unavailable; retry")
}

// notice writes a notice.
func (c *wsConn) notice(ctx context.Context, code, message string) bool {
	return c.reply(ctx, &wsReply{Type: "notice", Code: code, Message: message})
}

// write writes one text message within timeout. A write that times out
// closes the connection.
func (c *wsConn) write(ctx context.Context, b []byte, timeout time.Duration) bool {
	// Not cancelled with ctx: the last notice goes out as the server closes.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := c.conn.Write(wctx, websocket.MessageText, b); err != nil {
		if !isDone(c.done) {
			c.s.cfg.Logger.Debug("events API: WebSocket write failed; closing", "principal", c.p.Name, "error", err)
		}
		return false
	}
	return true
}

// failed ends the connection after the stream failed with err.
func (c *wsConn) failed(ctx context.Context, err error) {
	switch {
	case errors.Is(err, errSlowConsumer):
		c.s.cfg.Logger.Warn("events API: WebSocket too slow, disconnected", "principal", c.p.Name, "position", c.cur.pos, "error", err)
		c.end(ctx, codeSlowConsumer, "this connection fell too far behind the newest events and is closed; resume the session to catch up from the last event received: "+err.Error(), websocket.StatusPolicyViolation)
	case ctx.Err() != nil:
		c.end(ctx, codeShutdown, "the server is shutting down; reconnect and resume", websocket.StatusGoingAway)
	default:
		c.s.cfg.Logger.Error("events API: WebSocket stream", "principal", c.p.Name, "error", err)
		c.end(ctx, codeUnavailable, "the event store is unavailable; reconnect and resume", websocket.StatusInternalError)
	}
}

// end writes a notice, briefly (the client may not be reading), and closes
// the connection with status and the notice's code as the reason.
func (c *wsConn) end(ctx context.Context, code, message string, status websocket.StatusCode) {
	b, _ := json.Marshal(&wsReply{Type: "notice", Code: code, Message: message})
	if !c.write(ctx, b, min(c.s.cfg.WriteTimeout, noticeTimeout)) {
		return
	}
	_ = c.conn.Close(status, code)
}

// isDone reports whether ch is closed.
func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// decodeStrict decodes raw JSON into v, refusing fields v does not have.
func decodeStrict(raw []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	return d.Decode(v)
}
