package eventsapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/eventsapi/eventsv1"
	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/internal/testlog"
	"github.com/txoutbox/txoutbox/topics"
)

// Keys of the gRPC tests.
const (
	rpcAll      = "rpc-all-0123456789"     // ingest and subscribe, every tenant
	rpcAcme     = "rpc-acme-0123456789"    // ingest and subscribe, tenant acme
	rpcWatch    = "rpc-watch-0123456789"   // subscribe only
	rpcExpiring = "rpc-expires-0123456789" // every right; expires soon
)

// Method names of the EventService, for grpc-go's generic calls.
const (
	rpcPublish = "/txoutbox.events.v1.EventService/Publish"
	rpcStream  = "/txoutbox.events.v1.EventService/StreamEvents"
)

// rpcServer is a Server over HTTP/1.1 and unencrypted HTTP/2 on 127.0.0.1,
// as `txoutbox serve` listens.
type rpcServer struct {
	srv  *eventsapi.Server
	addr string
	hs   *httptest.Server
	log  *testlog.Buffer
}

type rpcOptions struct {
	store    eventsapi.Store
	registry bool
	expires  time.Time // of the rpcExpiring key
}

func startRPC(t testing.TB, o rpcOptions) *rpcServer {
	t.Helper()
	logger, log := testlog.New()
	all := []eventsapi.Right{eventsapi.RightIngest, eventsapi.RightSubscribe, eventsapi.RightQuery, eventsapi.RightJobs}
	exp := o.expires
	if exp.IsZero() {
		exp = time.Now().Add(time.Hour)
	}
	keys, err := eventsapi.NewKeys(
		eventsapi.Key{Name: "all", Rights: all, SecretSHA256: eventsapi.HashSecret(rpcAll)},
		eventsapi.Key{Name: "acme", Tenant: "acme", Rights: all, SecretSHA256: eventsapi.HashSecret(rpcAcme)},
		eventsapi.Key{Name: "watch", Rights: []eventsapi.Right{eventsapi.RightSubscribe}, SecretSHA256: eventsapi.HashSecret(rpcWatch)},
		eventsapi.Key{Name: "expiring", Rights: all, SecretSHA256: eventsapi.HashSecret(rpcExpiring), ExpiresAt: exp},
	)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &eventsapi.Config{Store: o.store, Keys: keys, Logger: logger}
	if o.registry {
		reg, err := topics.Load("testdata/ingest_topics.yaml")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Registry = reg
	}
	srv, err := eventsapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv)
	hs.Config.Protocols = new(http.Protocols)
	hs.Config.Protocols.SetHTTP1(true)
	hs.Config.Protocols.SetUnencryptedHTTP2(true)
	hs.Start()
	r := &rpcServer{srv: srv, addr: hs.Listener.Addr().String(), hs: hs, log: log}
	t.Cleanup(r.stop)
	return r
}

// stop closes the server as `txoutbox serve` does: the Server, then the
// HTTP server.
func (r *rpcServer) stop() {
	_ = r.srv.Close()
	r.hs.CloseClientConnections()
	r.hs.Close()
}

// dial is a grpc-go client of addr.
func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func withKey(ctx context.Context, secret string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+secret)
}

func publish(ctx context.Context, cc *grpc.ClientConn, secret string, req *eventsv1.PublishEventRequest) (*eventsv1.PublishEventResponse, error) {
	out := &eventsv1.PublishEventResponse{}
	err := cc.Invoke(withKey(ctx, secret), rpcPublish, req, out)
	return out, err
}

// rpcClientStream is a StreamEvents call made with grpc-go.
type rpcClientStream struct {
	t  testing.TB
	cs grpc.ClientStream
}

func openStream(ctx context.Context, t testing.TB, cc *grpc.ClientConn, secret string, md ...string) *rpcClientStream {
	t.Helper()
	ctx = withKey(ctx, secret)
	if len(md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, md...)
	}
	cs, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, rpcStream)
	if err != nil {
		t.Fatal(err)
	}
	return &rpcClientStream{t: t, cs: cs}
}

func (s *rpcClientStream) send(corr string, req *eventsv1.EventsStreamRequest) {
	s.t.Helper()
	req.CorrelationId = corr
	if err := s.cs.SendMsg(req); err != nil {
		s.t.Fatalf("send: %v", err)
	}
}

func (s *rpcClientStream) recv() (*eventsv1.EventsStreamResponse, error) {
	m := &eventsv1.EventsStreamResponse{}
	return m, s.cs.RecvMsg(m)
}

// next receives the next response, failing the test on error.
func (s *rpcClientStream) next() *eventsv1.EventsStreamResponse {
	s.t.Helper()
	m, err := s.recv()
	if err != nil {
		s.t.Fatalf("receive: %v", err)
	}
	return m
}

func subscribeReq(name string, t *eventsv1.Target) *eventsv1.EventsStreamRequest {
	return &eventsv1.EventsStreamRequest{Request: &eventsv1.EventsStreamRequest_Subscribe{Subscribe: &eventsv1.Subscribe{Name: name, Target: t}}}
}

func publishReq(p *eventsv1.PublishEventRequest) *eventsv1.EventsStreamRequest {
	return &eventsv1.EventsStreamRequest{Request: &eventsv1.EventsStreamRequest_Publish{Publish: p}}
}

func pingReq() *eventsv1.EventsStreamRequest {
	return &eventsv1.EventsStreamRequest{Request: &eventsv1.EventsStreamRequest_Ping{Ping: &eventsv1.Ping{}}}
}

func invoice(id string, amount float64) *eventsv1.PublishEventRequest {
	payload, _ := structpb.NewStruct(map[string]any{"id": id, "amount_cents": amount})
	return &eventsv1.PublishEventRequest{Name: "billing.InvoiceCreated", Key: id, Payload: payload}
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestRPCPublishSubscribe: a stream that subscribes and publishes gets the
// answers tied to its requests by correlation id, and the events it is
// subscribed to — its own too — with names exact, wildcard or alternatives.
func TestRPCPublishSubscribe(t *testing.T) {
	t.Parallel()
	r := startRPC(t, rpcOptions{registry: true})
	cc := dial(t, r.addr)
	ctx := testCtx(t, 30*time.Second)

	s := openStream(ctx, t, cc, rpcAll)
	for i, name := range []string{"billing.InvoiceCreated", "billing.*", "billing.PaymentReceived|billing.InvoicePaid"} {
		corr := fmt.Sprint("sub-", i)
		s.send(corr, subscribeReq(name, nil))
		m := s.next()
		if m.GetCorrelationId() != corr || m.GetSubscribed().GetName() != name {
			t.Fatalf("subscribe %q: got %v", name, m)
		}
	}
	s.send("pub-1", publishReq(invoice("inv-1", 10)))
	var published, events int
	var pubID string
	for published == 0 || events == 0 {
		m := s.next()
		switch {
		case m.GetPublished() != nil:
			if m.GetCorrelationId() != "pub-1" || m.GetPublished().GetPosition() == 0 {
				t.Fatalf("published: %v", m)
			}
			pubID = m.GetPublished().GetId()
			published++
		case m.GetEvent() != nil:
			ev := m.GetEvent()
			if ev.GetTopic() != "billing.InvoiceCreated" || ev.GetSender() != "all" || ev.GetFormat() != eventsapi.FormatAPI ||
				ev.GetPayload().GetStructValue().GetFields()["id"].GetStringValue() != "inv-1" {
				t.Fatalf("event: %v", ev)
			}
			events++
		default:
			t.Fatalf("unexpected %v", m)
		}
	}
	// The event came once although three subscriptions match it.
	if _, err := publish(ctx, cc, rpcAll, &eventsv1.PublishEventRequest{Name: "billing.PaymentReceived", Key: "inv-1",
		Payload: mustStruct(t, map[string]any{"id": "pay-1", "invoice_id": "inv-1"})}); err != nil {
		t.Fatal(err)
	}
	m := s.next()
	if ev := m.GetEvent(); ev.GetTopic() != "billing.PaymentReceived" {
		t.Fatalf("after the unary publish: %v (the first event came twice?)", m)
	}
	got, err := r.srv.Store().Get(ctx, "", pubID)
	if err != nil || got.Sender != "all" {
		t.Fatalf("stored: %+v, %v", got, err)
	}
}

func mustStruct(t testing.TB, m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRPCErrorsKeepTheStream: a bad request is answered with an error tied
// to it by correlation id, and the stream goes on.
func TestRPCErrorsKeepTheStream(t *testing.T) {
	t.Parallel()
	r := startRPC(t, rpcOptions{registry: true})
	cc := dial(t, r.addr)
	ctx := testCtx(t, 30*time.Second)
	s := openStream(ctx, t, cc, rpcAll)

	cases := []struct {
		corr string
		req  *eventsv1.EventsStreamRequest
		code string
	}{
		{"empty-name", subscribeReq("", nil), "bad_request"},
		{"empty-alternative", subscribeReq("a||b", nil), "bad_request"},
		{"layout-alone", subscribeReq("billing.*", &eventsv1.Target{Layout: "l1"}), "invalid_filter"},
		{"unknown-topic", publishReq(&eventsv1.PublishEventRequest{Name: "billing.InvoiceVanished"}), "validation_error"},
		{"bad-data", publishReq(&eventsv1.PublishEventRequest{Name: "billing.InvoiceCreated", Payload: mustStruct(t, map[string]any{"id": "i", "amount_cents": "ten"})}), "validation_error"},
		{"unsubscribe-none", &eventsv1.EventsStreamRequest{Request: &eventsv1.EventsStreamRequest_Unsubscribe{Unsubscribe: &eventsv1.Unsubscribe{Name: "x"}}}, "unknown_subscription"},
		{"nothing", &eventsv1.EventsStreamRequest{}, "unknown_type"},
		{"late-resume", &eventsv1.EventsStreamRequest{Request: &eventsv1.EventsStreamRequest_Resume{Resume: &eventsv1.Resume{}}}, ""},
	}
	s.send("first", subscribeReq("billing.InvoiceCreated", nil))
	if m := s.next(); m.GetSubscribed() == nil {
		t.Fatalf("subscribe: %v", m)
	}
	cases[len(cases)-1].code = "session_started"
	for _, c := range cases {
		s.send(c.corr, c.req)
		m := s.next()
		if m.GetCorrelationId() != c.corr || m.GetError().GetCode() != c.code || m.GetError().GetMessage() == "" {
			t.Errorf("%s: got %v, want error %s", c.corr, m, c.code)
		}
	}
	s.send("alive", pingReq())
	if m := s.next(); m.GetPong() == nil || m.GetCorrelationId() != "alive" {
		t.Fatalf("ping after the errors: %v", m)
	}
}

// TestRPCResume: a stream resumes after the last position it saw, with
// nothing lost or repeated, from a resume request or a header.
func TestRPCResume(t *testing.T) {
	t.Parallel()
	r := startRPC(t, rpcOptions{})
	cc := dial(t, r.addr)
	ctx := testCtx(t, 30*time.Second)
	var pos []int64
	for i := range 10 {
		out, err := publish(ctx, cc, rpcAll, invoice(fmt.Sprint("inv-", i), float64(i)))
		if err != nil {
			t.Fatal(err)
		}
		pos = append(pos, out.GetPosition())
	}
	check := func(name string, s *rpcClientStream) {
		s.send("sub", subscribeReq("billing.*", nil))
		for m := s.next(); m.GetSubscribed() == nil; m = s.next() {
			if m.GetResumed() == nil {
				t.Fatalf("%s: %v before subscribed", name, m)
			}
		}
		for _, want := range pos[5:] {
			m := s.next()
			if m.GetEvent().GetPosition() != want {
				t.Fatalf("%s: got %v, want the event at %d", name, m, want)
			}
		}
	}
	s := openStream(ctx, t, cc, rpcAll)
	s.send("resume", &eventsv1.EventsStreamRequest{Request: &eventsv1.EventsStreamRequest_Resume{Resume: &eventsv1.Resume{LastEventPosition: pos[4]}}})
	check("resume request", s)
	check("header", openStream(ctx, t, cc, rpcAll, strings.ToLower(eventsapi.HeaderLastEventPosition), fmt.Sprint(pos[4])))
}

// TestRPCTenantIsolation: a key bound to a tenant publishes and receives
// its tenant's events only, on every RPC.
func TestRPCTenantIsolation(t *testing.T) {
	t.Parallel()
	r := startRPC(t, rpcOptions{})
	cc := dial(t, r.addr)
	ctx := testCtx(t, 30*time.Second)

	acme := openStream(ctx, t, cc, rpcAcme)
	acme.send("s", subscribeReq("*", nil))
	acme.next()
	for _, tenant := range []string{"globex", "acme", ""} {
		req := invoice("inv-"+tenant, 1)
		req.Tenant = tenant
		if _, err := publish(ctx, cc, rpcAll, req); err != nil {
			t.Fatal(err)
		}
	}
	if m := acme.next(); m.GetEvent().GetTenant() != "acme" {
		t.Fatalf("acme's stream got %v", m)
	}
	// Publishing another tenant's event is refused, unary and on the stream.
	req := invoice("inv-x", 1)
	req.Tenant = "globex"
	if _, err := publish(ctx, cc, rpcAcme, req); status.Code(err) != codes.PermissionDenied {
		t.Errorf("acme publishing globex's event: %v", err)
	}
	acme.send("p", publishReq(req))
	if m := acme.next(); m.GetError().GetCode() != "forbidden" {
		t.Errorf("on the stream: %v", m)
	}
	// An event without a tenant published by acme's key is acme's.
	out, err := publish(ctx, cc, rpcAcme, invoice("inv-own", 1))
	if err != nil {
		t.Fatal(err)
	}
	if m := acme.next(); m.GetEvent().GetId() != out.GetId() || m.GetEvent().GetTenant() != "acme" {
		t.Fatalf("acme's own event: %v", m)
	}
}

// TestRPCAccess: calls without a credential, with an unknown one or
// without the right are refused with the gRPC codes for them.
func TestRPCAccess(t *testing.T) {
	t.Parallel()
	r := startRPC(t, rpcOptions{})
	cc := dial(t, r.addr)
	ctx := testCtx(t, 30*time.Second)
	if err := cc.Invoke(ctx, rpcPublish, invoice("i", 1), &eventsv1.PublishEventResponse{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no credential: %v", err)
	}
	if _, err := publish(ctx, cc, "not-a-key-0123456789", invoice("i", 1)); status.Code(err) != codes.Unauthenticated {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := publish(ctx, cc, rpcWatch, invoice("i", 1)); status.Code(err) != codes.PermissionDenied {
		t.Errorf("without the ingest right: %v", err)
	}
	s := openStream(ctx, t, cc, rpcWatch)
	s.send("p", publishReq(invoice("i", 1)))
	if m := s.next(); m.GetError().GetCode() != "forbidden" {
		t.Errorf("publishing on a stream without the ingest right: %v", m)
	}
	if strings.Contains(r.log.String(), rpcWatch) {
		t.Error("a secret reached the log")
	}
}

// TestRPCReauthenticate: a stream whose key is about to expire is asked to
// reauthenticate, and ends when the key expires.
func TestRPCReauthenticate(t *testing.T) {
	t.Parallel()
	expires := time.Now().Add(2 * time.Second)
	r := startRPC(t, rpcOptions{expires: expires})
	cc := dial(t, r.addr)
	ctx := testCtx(t, 30*time.Second)
	s := openStream(ctx, t, cc, rpcExpiring)
	s.send("s", subscribeReq("*", nil))
	var rb *eventsv1.ReconnectBefore
	for rb == nil {
		rb = s.next().GetReconnectBefore()
	}
	if !rb.GetReauthenticate() || !rb.GetBeforeTimestamp().AsTime().Equal(expires.Truncate(time.Second)) && rb.GetBeforeTimestamp().AsTime().Sub(expires).Abs() > time.Second {
		t.Fatalf("reconnect_before: %v, want reauthenticate before %s", rb, expires)
	}
	for {
		_, err := s.recv()
		if err != nil {
			if status.Code(err) != codes.Unauthenticated {
				t.Fatalf("the stream ended with %v, want Unauthenticated", err)
			}
			break
		}
	}
	if time.Now().Before(expires) {
		t.Fatal("the stream ended before the key expired")
	}
	if _, err := publish(ctx, cc, rpcExpiring, invoice("i", 1)); status.Code(err) != codes.Unauthenticated {
		t.Errorf("an expired key: %v", err)
	}
}

// resumingClient follows a stream of every event across servers: when told
// to reconnect, it opens a stream to the next address at a random time
// within the window and resumes after the last position it received.
type resumingClient struct {
	t     testing.TB
	addrs func() []string // the servers up, in the order to try
	mu    sync.Mutex
	seen  map[string]int // event id → times received
	order []int64
	last  int64
	err   error
}

func (c *resumingClient) run(ctx context.Context) {
	attempt := 0
	for ctx.Err() == nil {
		addrs := c.addrs()
		addr := addrs[attempt%len(addrs)]
		attempt++
		if err := c.follow(ctx, addr); err != nil && ctx.Err() == nil {
			time.Sleep(20 * time.Millisecond) // the server went away: try the next
		}
	}
}

// follow reads one stream until it ends or the server asks to reconnect
// and the chosen moment comes.
func (c *resumingClient) follow(ctx context.Context, addr string) error {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	sctx, cancel := context.WithCancel(withKey(ctx, rpcAll))
	defer cancel()
	cs, err := cc.NewStream(sctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, rpcStream)
	if err != nil {
		return err
	}
	c.mu.Lock()
	last := c.last
	c.mu.Unlock()
	for _, req := range []*eventsv1.EventsStreamRequest{
		{Request: &eventsv1.EventsStreamRequest_Resume{Resume: &eventsv1.Resume{LastEventPosition: last}}},
		subscribeReq("*", nil),
	} {
		if err := cs.SendMsg(req); err != nil {
			return err
		}
	}
	var leave <-chan time.Time
	msgs := make(chan *eventsv1.EventsStreamResponse)
	errc := make(chan error, 1)
	go func() {
		for {
			m := &eventsv1.EventsStreamResponse{}
			if err := cs.RecvMsg(m); err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- m:
			case <-sctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-leave:
			return nil
		case err := <-errc:
			return err
		case m := <-msgs:
			if rb := m.GetReconnectBefore(); rb != nil {
				leave = time.After(eventsapi.ReconnectDelay(rb.GetBeforeTimestamp().AsTime()))
			}
			if ev := m.GetEvent(); ev != nil {
				c.mu.Lock()
				if ev.GetPosition() <= c.last {
					c.err = fmt.Errorf("event at %d after %d: out of order", ev.GetPosition(), c.last)
				}
				c.last = ev.GetPosition()
				c.seen[ev.GetId()]++
				c.order = append(c.order, ev.GetPosition())
				c.mu.Unlock()
			}
		}
	}
}

// TestRPCRollingRestart: two instances sharing a Postgres store are
// restarted one after the other, each draining first, while a publisher
// publishes without pause; a client that resumes as told misses no event
// and gets none twice.
func TestRPCRollingRestart(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDB(t)
	newStore := func(t testing.TB) eventsapi.Store {
		pool, err := pgxpool.New(context.Background(), dbURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		if err := eventsapi.MigratePostgres(context.Background(), pool, nil); err != nil {
			t.Fatal(err)
		}
		st, err := eventsapi.NewPostgresStore(context.Background(), pool, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	var mu sync.Mutex
	servers := []*rpcServer{startRPC(t, rpcOptions{store: newStore(t)}), startRPC(t, rpcOptions{store: newStore(t)})}
	addrs := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := make([]string, 0, 2)
		for _, s := range servers {
			if s != nil {
				out = append(out, s.addr)
			}
		}
		return out
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := &resumingClient{t: t, addrs: func() []string {
		a := addrs()
		// Prefer the second: the client starts on the instance that drains
		// last, and moves when told.
		if len(a) == 2 {
			a[0], a[1] = a[1], a[0]
		}
		return a
	}, seen: map[string]int{}}
	cctx, stopClient := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { client.run(cctx) })

	// The publisher publishes to any instance up, and counts what was
	// confirmed.
	var pmu sync.Mutex
	confirmed := map[string]bool{}
	failed := 0
	pctx, stopPublisher := context.WithCancel(ctx)
	var pwg sync.WaitGroup
	pwg.Go(func() {
		conns := map[string]*grpc.ClientConn{}
		defer func() {
			for _, cc := range conns {
				_ = cc.Close()
			}
		}()
		for i := 0; pctx.Err() == nil; i++ {
			a := addrs()
			if len(a) == 0 {
				continue
			}
			addr := a[i%len(a)]
			cc := conns[addr]
			if cc == nil {
				var err error
				if cc, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
					continue
				}
				conns[addr] = cc
			}
			cctx, cancel := context.WithTimeout(pctx, 2*time.Second)
			out, err := publish(cctx, cc, rpcAll, invoice(fmt.Sprint("inv-", i), float64(i)))
			cancel()
			if err != nil && pctx.Err() == nil {
				pmu.Lock()
				failed++
				if failed == 1 {
					t.Logf("publish to %s: %v", addr, err)
				}
				pmu.Unlock()
			}
			if err == nil {
				pmu.Lock()
				confirmed[out.GetId()] = true
				pmu.Unlock()
			}
			time.Sleep(2 * time.Millisecond)
		}
	})

	time.Sleep(500 * time.Millisecond)
	for i := range servers {
		mu.Lock()
		old := servers[i]
		mu.Unlock()
		if err := old.srv.Drain(ctx, time.Second); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		servers[i] = nil
		mu.Unlock()
		old.stop()
		restarted := startRPC(t, rpcOptions{store: newStore(t)})
		mu.Lock()
		servers[i] = restarted
		mu.Unlock()
		time.Sleep(500 * time.Millisecond)
	}
	stopPublisher()
	pwg.Wait()
	// Everything confirmed reaches the client, once: it may still be
	// catching up.
	var lost []string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		lost = lost[:0]
		client.mu.Lock()
		pmu.Lock()
		for id := range confirmed {
			if client.seen[id] == 0 {
				lost = append(lost, id)
			}
		}
		pmu.Unlock()
		client.mu.Unlock()
		if len(lost) == 0 || time.Now().After(deadline) {
			break
		}
	}
	stopClient()
	wg.Wait()
	client.mu.Lock()
	defer client.mu.Unlock()
	twice := 0
	for _, n := range client.seen {
		if n > 1 {
			twice++
		}
	}
	t.Logf("published=%d (failed %d) received=%d lost=%d twice=%d", len(confirmed), failed, len(client.seen), len(lost), twice)
	if len(confirmed) < 20 {
		t.Errorf("only %d events published", len(confirmed))
	}
	if len(lost) > 0 || twice > 0 || client.err != nil {
		t.Fatalf("lost %d (e.g. %v), %d twice, %v", len(lost), first(lost), twice, client.err)
	}
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

// TestRPCLiveAndJobs: an event published with store false reaches the live
// stream and is never stored; a job is enrolled, moved and refused an
// illegal move over the job RPCs, its changes and progress reaching the
// stream.
func TestRPCLiveAndJobs(t *testing.T) {
	t.Parallel()
	r := startRPC(t, rpcOptions{})
	cc := dial(t, r.addr)
	ctx := testCtx(t, 30*time.Second)
	s := openStream(ctx, t, cc, rpcAll)
	s.send("s", subscribeReq("billing.*|jobs.*", nil))
	s.next()

	no := false
	live := invoice("inv-live", 1)
	live.Store = &no
	out, err := publish(ctx, cc, rpcAll, live)
	if err != nil || out.GetPosition() != 0 {
		t.Fatalf("live publish: %v, %v", out, err)
	}
	if m := s.next(); !m.GetEvent().GetLive() || m.GetEvent().GetId() != out.GetId() || m.GetEvent().GetPosition() != 0 {
		t.Fatalf("the live event: %v", m)
	}
	if _, err := r.srv.Store().Get(ctx, "", out.GetId()); !errors.Is(err, eventsapi.ErrNotFound) {
		t.Fatalf("the live event was stored: %v", err)
	}

	src, err := publish(ctx, cc, rpcAll, invoice("inv-job", 2))
	if err != nil {
		t.Fatal(err)
	}
	s.next() // the source event
	var enrolled eventsv1.EnrollResponse
	if err := cc.Invoke(withKey(ctx, rpcAll), "/txoutbox.events.v1.EventService/Enroll",
		&eventsv1.EnrollRequest{SourceTopic: "billing.InvoiceCreated", TargetTopic: "jobs.InvoiceMailed", Sender: "mailer"}, &enrolled); err != nil {
		t.Fatal(err)
	}
	if !enrolled.GetEnrolled() || enrolled.GetSourceId() != src.GetId() || enrolled.GetJob().GetStatus() != "pending" {
		t.Fatalf("enroll: %v", &enrolled)
	}
	if m := s.next(); m.GetEvent().GetId() != enrolled.GetJobId() {
		t.Fatalf("the new job on the stream: %v", m)
	}
	update := func(status string) error {
		return cc.Invoke(withKey(ctx, rpcAll), "/txoutbox.events.v1.EventService/UpdateJob",
			&eventsv1.UpdateJobRequest{Id: enrolled.GetJobId(), Status: status}, &eventsv1.UpdateJobResponse{})
	}
	if err := update("in_progress"); err != nil {
		t.Fatal(err)
	}
	if m := s.next(); m.GetEvent().GetStatus() != "in_progress" || m.GetEvent().GetUpdatedAt() == nil {
		t.Fatalf("the update on the stream: %v", m)
	}
	progress, _ := structpb.NewValue(map[string]any{"done": 3, "total": 4})
	if err := cc.Invoke(withKey(ctx, rpcAll), "/txoutbox.events.v1.EventService/ReportProgress",
		&eventsv1.ReportProgressRequest{Id: enrolled.GetJobId(), Progress: progress}, &eventsv1.ReportProgressResponse{}); err != nil {
		t.Fatal(err)
	}
	if m := s.next(); !m.GetEvent().GetLive() || m.GetEvent().GetProgress().GetStructValue().GetFields()["done"].GetNumberValue() != 3 {
		t.Fatalf("progress on the stream: %v", m)
	}
	if err := update("finished"); err != nil {
		t.Fatal(err)
	}
	if err := update("in_progress"); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("moving a finished job: %v, want FailedPrecondition", err)
	}
	var none eventsv1.EnrollResponse
	if err := cc.Invoke(withKey(ctx, rpcAll), "/txoutbox.events.v1.EventService/Enroll",
		&eventsv1.EnrollRequest{SourceTopic: "billing.InvoiceCreated", TargetTopic: "jobs.InvoiceMailed", Sender: "mailer"}, &none); err != nil || none.GetEnrolled() {
		t.Fatalf("enroll with nothing left: %v, %v", &none, err)
	}
	if err := cc.Invoke(withKey(ctx, rpcWatch), "/txoutbox.events.v1.EventService/Enroll",
		&eventsv1.EnrollRequest{SourceTopic: "billing.InvoiceCreated", TargetTopic: "jobs.InvoiceMailed"}, &none); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("enroll without the jobs right: %v", err)
	}
}
