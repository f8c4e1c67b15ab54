package eventsapi

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/txoutbox/txoutbox/eventsapi/eventsv1"
)

// Limits of an EventService stream.
const (
	// rpcMaxSubscriptions bounds the subscriptions of one stream.
	rpcMaxSubscriptions = 32
	// rpcMaxNameBytes bounds a subscription's name.
	rpcMaxNameBytes = 1024
	// rpcCorrelationBytes bounds a correlation id.
	rpcCorrelationBytes = 256
	// ReauthenticateWindow is how long before its key expires a stream is
	// asked to reauthenticate.
	ReauthenticateWindow = time.Minute
	// HeaderLastEventPosition, on the request opening a stream, resumes it
	// after that position, as a first resume request does.
	HeaderLastEventPosition = "Txoutbox-Last-Event-Position"
)

// codeValidation is the stream error code of an event that fails the
// catalog or the envelope's rules.
const codeValidation = "validation_error"

// rpcSub is one subscription of a stream.
type rpcSub struct {
	name   string
	target Target
	m      *Matcher
}

// rpcStream is one StreamEvents call. Its loop (run) owns the cursor and
// every Send; a goroutine receives the client's requests.
type rpcStream struct {
	s     *Server
	p     *Principal
	st    *connect.BidiStream[eventsv1.EventsStreamRequest, eventsv1.EventsStreamResponse]
	w     *rpcWriter // nil when served other than by routeRPC
	subs  []*rpcSub
	sel   selection
	cur   *cursor
	batch []entry
}

// rpcIncoming is what the receive goroutine hands the loop.
type rpcIncoming struct {
	req *eventsv1.EventsStreamRequest
	err error // the stream ended (io.EOF) or broke
}

// StreamEvents serves one bidirectional stream (see PROTOCOL.md).
func (r *rpcService) StreamEvents(ctx context.Context, st *connect.BidiStream[eventsv1.EventsStreamRequest, eventsv1.EventsStreamResponse]) error {
	s := r.s
	p, err := s.rpcPrincipal(ctx, RightSubscribe)
	if err != nil {
		return err
	}
	if s.draining() {
		return connect.NewError(connect.CodeUnavailable, errors.New("this server is draining: connect to another instance, or retry shortly"))
	}
	if err := s.hub.acquire(); err != nil {
		if errors.Is(err, errShuttingDown) {
			return connect.NewError(connect.CodeUnavailable, errors.New("the server is shutting down; reconnect"))
		}
		return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf("the server has %d open subscriptions, its limit; retry later", s.cfg.MaxSubscribers))
	}
	defer s.hub.release()
	c := &rpcStream{s: s, p: p, st: st}
	c.w, _ = ctx.Value(rpcWriterKey{}).(*rpcWriter)
	c.sel = c.selection()
	if v := st.RequestHeader().Get(HeaderLastEventPosition); v != "" {
		pos, err := parsePosition(HeaderLastEventPosition, v)
		if err != nil {
			return connect.NewError(connect.CodeInvalidArgument, err)
		}
		if cerr := c.open(ctx, &pos); cerr != nil {
			return cerr
		}
	}
	sctx, cancel := s.streamContext(ctx)
	defer cancel()
	return c.run(sctx)
}

// open starts the stream's cursor after position after (the newest event
// when nil).
func (c *rpcStream) open(ctx context.Context, after *int64) error {
	cur, err := c.s.hub.openCursor(ctx, after)
	if err != nil {
		c.s.cfg.Logger.Error("events API: open an EventService stream", "principal", c.p.Name, "error", err)
		return connect.NewError(connect.CodeUnavailable, errors.New("the event store is unavailable; retry"))
	}
	c.cur = cur
	return nil
}

func (c *rpcStream) run(ctx context.Context) error {
	in := make(chan rpcIncoming, 1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			req, err := c.st.Receive()
			select {
			case in <- rpcIncoming{req: req, err: err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()

	// Drain and expiry: each sends reconnect_before once, and ends the
	// stream when its time comes.
	drainCh := c.s.drainSignal()
	var deadline <-chan time.Time
	var reauth <-chan time.Time
	if !c.p.Expires.IsZero() {
		reauth = time.After(time.Until(c.p.Expires.Add(-ReauthenticateWindow)))
	}
	endCode, endMsg := connect.CodeUnavailable, ""

	more := make(chan struct{})
	close(more)
	for {
		var wait <-chan struct{}
		if c.cur != nil && len(c.subs) > 0 {
			var err error
			if wait, err = c.deliver(ctx); err != nil {
				return err
			}
			if wait == nil {
				wait = more
			}
		}
		select {
		case m := <-in:
			if m.err != nil {
				return nil // the client closed its side (io.EOF) or went away
			}
			if err := c.handle(ctx, m.req); err != nil {
				return err
			}
		case <-wait:
		case <-drainCh:
			drainCh = nil
			before := c.s.drainDeadline()
			if err := c.send(&eventsv1.EventsStreamResponse{Response: &eventsv1.EventsStreamResponse_ReconnectBefore{
				ReconnectBefore: &eventsv1.ReconnectBefore{BeforeTimestamp: timestamppb.New(before)}}}); err != nil {
				return nil
			}
			deadline = time.After(time.Until(before))
			endCode, endMsg = connect.CodeUnavailable, "the server is draining: reconnect and resume"
		case <-reauth:
			reauth = nil
			if err := c.send(&eventsv1.EventsStreamResponse{Response: &eventsv1.EventsStreamResponse_ReconnectBefore{
				ReconnectBefore: &eventsv1.ReconnectBefore{Reauthenticate: true, BeforeTimestamp: timestamppb.New(c.p.Expires)}}}); err != nil {
				return nil
			}
			if deadline == nil || c.p.Expires.Before(c.s.drainDeadline()) {
				deadline = time.After(time.Until(c.p.Expires))
				endCode, endMsg = connect.CodeUnauthenticated, fmt.Sprintf("key %q expired: reconnect with a fresh credential and resume", c.p.Name)
			}
		case <-deadline:
			return connect.NewError(endCode, errors.New(endMsg))
		case <-ctx.Done():
			_ = c.notice(codeShutdown, "the server is shutting down; reconnect and resume")
			return connect.NewError(connect.CodeUnavailable, errors.New("the server is shutting down; reconnect and resume"))
		}
	}
}

// handle answers one request. A bad request gets an error response; only a
// failed send ends the stream (its error is returned).
func (c *rpcStream) handle(ctx context.Context, req *eventsv1.EventsStreamRequest) error {
	corr := req.GetCorrelationId()
	if len(corr) > rpcCorrelationBytes {
		return c.fail("", codeBadRequest, fmt.Sprintf("correlation_id of %d bytes, at most %d", len(corr), rpcCorrelationBytes))
	}
	switch m := req.GetRequest().(type) {
	case *eventsv1.EventsStreamRequest_Resume:
		if c.cur != nil {
			return c.fail(corr, codeSessionStarted, "resume must come before any other request: the stream has started")
		}
		pos := m.Resume.GetLastEventPosition()
		if pos < 0 {
			return c.fail(corr, codeBadRequest, "resume: last_event_position must be 0 or more")
		}
		if err := c.open(ctx, &pos); err != nil {
			return err
		}
		return c.send(&eventsv1.EventsStreamResponse{CorrelationId: corr, Response: &eventsv1.EventsStreamResponse_Resumed{
			Resumed: &eventsv1.Resumed{Position: c.cur.pos}}})
	case *eventsv1.EventsStreamRequest_Subscribe:
		return c.subscribe(ctx, corr, m.Subscribe.GetName(), targetOf(m.Subscribe.GetTarget()))
	case *eventsv1.EventsStreamRequest_Unsubscribe:
		return c.unsubscribe(corr, m.Unsubscribe.GetName(), targetOf(m.Unsubscribe.GetTarget()))
	case *eventsv1.EventsStreamRequest_Publish:
		if !c.p.Can(RightIngest) {
			return c.fail(corr, codeForbidden, fmt.Sprintf("key %q does not hold the %s right", c.p.Name, RightIngest))
		}
		out, cerr := c.s.publishRPC(ctx, c.p, m.Publish)
		if cerr != nil {
			var re *rpcError
			code := codeUnavailable
			if errors.As(cerr, &re) {
				code = re.name
			}
			return c.fail(corr, code, cerr.Message())
		}
		return c.send(&eventsv1.EventsStreamResponse{CorrelationId: corr, Response: &eventsv1.EventsStreamResponse_Published{Published: out}})
	case *eventsv1.EventsStreamRequest_Ping:
		return c.send(&eventsv1.EventsStreamResponse{CorrelationId: corr, Response: &eventsv1.EventsStreamResponse_Pong{Pong: &eventsv1.Pong{}}})
	}
	return c.fail(corr, codeUnknownType, "the request has none of subscribe, unsubscribe, publish, ping and resume")
}

func (c *rpcStream) subscribe(ctx context.Context, corr, name string, t Target) error {
	if len(name) > rpcMaxNameBytes {
		return c.fail(corr, codeBadRequest, fmt.Sprintf("subscribe: name of %d bytes, at most %d", len(name), rpcMaxNameBytes))
	}
	topics, err := subscriptionName(name)
	if err != nil {
		return c.fail(corr, codeBadRequest, "subscribe: "+err.Error())
	}
	f := Filter{Include: []Selector{{Topic: topics, Target: t}}}
	if err := scopeFilter(c.p, &f); err != nil {
		return c.fail(corr, codeForbidden, err.Error())
	}
	m, err := Compile(f)
	if err != nil {
		return c.fail(corr, codeInvalidFilter, "subscribe: "+err.Error())
	}
	if c.cur == nil {
		if err := c.open(ctx, nil); err != nil {
			return err
		}
	}
	subs := make([]*rpcSub, 0, len(c.subs)+1)
	for _, s := range c.subs {
		if s.name != name || s.target != t {
			subs = append(subs, s)
		}
	}
	if len(subs) >= rpcMaxSubscriptions {
		return c.fail(corr, codeTooManySubs, fmt.Sprintf("subscribe: a stream has at most %d subscriptions", rpcMaxSubscriptions))
	}
	c.setSubs(append(subs, &rpcSub{name: name, target: t, m: m}))
	return c.send(&eventsv1.EventsStreamResponse{CorrelationId: corr, Response: &eventsv1.EventsStreamResponse_Subscribed{
		Subscribed: &eventsv1.Subscribed{Name: name, Target: protoTarget(t), Position: c.cur.pos}}})
}

func (c *rpcStream) unsubscribe(corr, name string, t Target) error {
	subs := make([]*rpcSub, 0, len(c.subs))
	for _, s := range c.subs {
		if s.name != name || s.target != t {
			subs = append(subs, s)
		}
	}
	if len(subs) == len(c.subs) {
		return c.fail(corr, codeUnknownSubscription, fmt.Sprintf("unsubscribe: this stream has no subscription %q at target %q", name, t.String()))
	}
	c.setSubs(subs)
	return c.send(&eventsv1.EventsStreamResponse{CorrelationId: corr, Response: &eventsv1.EventsStreamResponse_Unsubscribed{
		Unsubscribed: &eventsv1.Unsubscribed{Name: name, Target: protoTarget(t)}}})
}

// setSubs replaces the subscriptions. A cursor that has run ahead of what
// it delivered under the old ones reads the store again (see wsConn).
func (c *rpcStream) setSubs(subs []*rpcSub) {
	if c.cur != nil && len(c.subs) == 0 {
		c.cur.live = false
	}
	c.subs = subs
	c.sel = c.selection()
}

// selection is every event any subscription matches, once.
func (c *rpcStream) selection() selection {
	ms := make([]*Matcher, len(c.subs))
	for i, s := range c.subs {
		ms[i] = s.m
	}
	return unionSelection(c.p, ms)
}

// deliver sends the next batch of the stream's events, and returns the
// channel to wait on when there is none.
func (c *rpcStream) deliver(ctx context.Context) (<-chan struct{}, error) {
	batch, wait, g, err := c.cur.next(ctx, c.sel, c.batch)
	c.batch = batch[:0]
	if g != nil {
		if err := c.notice(codeGap, g.message()); err != nil {
			return nil, err
		}
	}
	if err := c.w.batch(func() error {
		for i := range batch {
			if err := c.send(batch[i].msg.get(batch[i].ev)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err != nil {
		switch {
		case errors.Is(err, errSlowConsumer):
			c.s.cfg.Logger.Warn("events API: EventService stream too slow, disconnected", "principal", c.p.Name, "position", c.cur.pos, "error", err)
			_ = c.notice(codeSlowConsumer, "this stream fell too far behind the newest events and is closed; reconnect and resume: "+err.Error())
			return nil, connect.NewError(connect.CodeResourceExhausted, err)
		case ctx.Err() != nil:
			_ = c.notice(codeShutdown, "the server is shutting down; reconnect and resume")
			return nil, connect.NewError(connect.CodeUnavailable, errors.New("the server is shutting down; reconnect and resume"))
		}
		c.s.cfg.Logger.Error("events API: EventService stream", "principal", c.p.Name, "error", err)
		_ = c.notice(codeUnavailable, "the event store is unavailable; reconnect and resume")
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("the event store is unavailable; reconnect and resume"))
	}
	return wait, nil
}

func (c *rpcStream) send(m *eventsv1.EventsStreamResponse) error { return c.st.Send(m) }

// fail answers a request with an error response; the stream goes on.
func (c *rpcStream) fail(corr, code, message string) error {
	return c.send(&eventsv1.EventsStreamResponse{CorrelationId: corr, Response: &eventsv1.EventsStreamResponse_Error{
		Error: &eventsv1.Error{Code: code, Message: message}}})
}

func (c *rpcStream) notice(code, message string) error {
	return c.send(&eventsv1.EventsStreamResponse{Response: &eventsv1.EventsStreamResponse_Notice{
		Notice: &eventsv1.Notice{Code: code, Message: message}}})
}

// Draining.

// drainState is a server's drain: closed once Drain starts, with the time
// streams must have reconnected by.
type drainState struct {
	ch       chan struct{}
	deadline time.Time
}

// Drain prepares the server to stop without losing a resuming client's
// events: it refuses new EventService streams (Unavailable) and answers
// /healthz 503, so that a load balancer sends clients elsewhere, and asks
// every open EventService stream to reconnect at a random time within
// window (reconnect_before); streams still open after window end. SSE and
// WebSocket streams get the shutdown notice at Close as before. Call Close
// after Drain returns. Drain returns when window has passed or ctx ends.
func (s *Server) Drain(ctx context.Context, window time.Duration) error {
	s.drainMu.Lock()
	select {
	case <-s.drain.ch:
	default:
		s.drain.deadline = time.Now().Add(window)
		close(s.drain.ch)
	}
	deadline := s.drain.deadline
	s.drainMu.Unlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drainSignal returns the channel closed when Drain starts.
func (s *Server) drainSignal() <-chan struct{} { return s.drain.ch }

func (s *Server) draining() bool {
	select {
	case <-s.drainSignal():
		return true
	default:
		return false
	}
}

// drainDeadline is when a draining server's streams must have reconnected
// by; the zero time before Drain.
func (s *Server) drainDeadline() time.Time {
	s.drainMu.Lock()
	defer s.drainMu.Unlock()
	return s.drain.deadline
}

// ReconnectDelay is when a client told to reconnect before deadline should
// do it: a uniformly random time before deadline, so that the clients of a
// draining server do not all reconnect at once.
func ReconnectDelay(deadline time.Time) time.Duration {
	d := time.Until(deadline)
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// healthz answers 200 while the server takes requests, 503 while it drains.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	if s.draining() {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// rpcMessage is an event's EventService message, made once and shared by
// every stream that sends it (messages are not modified once made). A nil
// *rpcMessage (an entry read from the store for one subscriber) makes it
// each time.
type rpcMessage struct {
	once sync.Once
	msg  *eventsv1.EventsStreamResponse
}

func (m *rpcMessage) get(ev *Event) *eventsv1.EventsStreamResponse {
	if m == nil {
		return &eventsv1.EventsStreamResponse{Response: &eventsv1.EventsStreamResponse_Event{Event: protoEvent(ev)}}
	}
	m.once.Do(func() {
		m.msg = &eventsv1.EventsStreamResponse{Response: &eventsv1.EventsStreamResponse_Event{Event: protoEvent(ev)}}
	})
	return m.msg
}
