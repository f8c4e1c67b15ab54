package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/txoutbox/txoutbox/eventsapi/eventsv1"
	"github.com/txoutbox/txoutbox/eventsapi/eventsv1/eventsv1connect"
)

// viaGRPC subscribes over the EventService's StreamEvents, spoken as gRPC.
const viaGRPC = "grpc"

// dialGRPC opens a StreamEvents call on a connection of its own (gRPC over
// unencrypted HTTP/2, by connect-go's gRPC client), resumes after position
// after, subscribes to every event and starts reading.
func (s *subscriber) dialGRPC(ctx context.Context, addr, secret string, after int64, closing *atomic.Bool) (func(), error) {
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	// The connection is closed by hand on close: cancelling the call's
	// context does not always end a Receive blocked reading it.
	var mu sync.Mutex
	var conns []net.Conn
	var d net.Dialer
	tr := &http.Transport{Protocols: new(http.Protocols), DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
		return c, err
	}}
	tr.Protocols.SetUnencryptedHTTP2(true)
	closeConns := func() {
		stop()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	}
	client := eventsv1connect.NewEventServiceClient(&http.Client{Transport: tr}, "http://"+addr, connect.WithGRPC())
	st := client.StreamEvents(rctx)
	st.RequestHeader().Set("Authorization", "Bearer "+secret)
	fail := func(err error) (func(), error) {
		closeConns()
		return nil, err
	}
	if after >= 0 {
		if err := st.Send(&eventsv1.EventsStreamRequest{Request: &eventsv1.EventsStreamRequest_Resume{
			Resume: &eventsv1.Resume{LastEventPosition: after}}}); err != nil {
			return fail(fmt.Errorf("resume: %w", err))
		}
	}
	if err := st.Send(&eventsv1.EventsStreamRequest{Request: &eventsv1.EventsStreamRequest_Subscribe{
		Subscribe: &eventsv1.Subscribe{Name: "*"}}}); err != nil {
		return fail(fmt.Errorf("subscribe: %w", err))
	}
	// Wait for the answer: from then on every event ingested reaches the
	// stream.
	answered := make(chan error, 1)
	go func() {
		defer close(s.done)
		subscribed := false
		for {
			m, err := st.Receive()
			if err != nil {
				if !subscribed {
					answered <- err
				} else if !closing.Load() {
					s.err = fmt.Errorf("read: %w", err)
				}
				return
			}
			switch r := m.GetResponse().(type) {
			case *eventsv1.EventsStreamResponse_Event:
				if s.stamped {
					if v, ok := r.Event.GetPayload().GetStructValue().GetFields()["sent_ns"]; ok {
						sent := int64(v.GetNumberValue())
						s.samples = append(s.samples, sample{sent: sent, took: s.clock.now() - sent})
					}
				}
				s.got(1)
			case *eventsv1.EventsStreamResponse_Subscribed:
				subscribed = true
				answered <- nil
			case *eventsv1.EventsStreamResponse_Resumed:
			default:
				err := fmt.Errorf("message: %v", m)
				if !subscribed {
					answered <- err
				} else {
					s.err = err
				}
				return
			}
		}
	}()
	select {
	case err := <-answered:
		if err != nil {
			return fail(fmt.Errorf("subscribe: %w", err))
		}
	case <-time.After(10 * time.Second):
		return fail(fmt.Errorf("subscribe: no answer within 10s"))
	}
	return closeConns, nil
}
