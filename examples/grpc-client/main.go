// Command grpc-client follows the events API's EventService over gRPC and
// prints every event of a topic pattern it receives. It resumes after the
// last position received when the stream breaks, and reconnects at a random
// time within the window a draining server gives (reconnect_before), so a
// rolling restart of the servers costs it nothing.
//
//	txoutbox serve                                            # or txoutbox sink
//	EVENTS_URL=http://127.0.0.1:8642 go run ./examples/grpc-client
//
// Environment: EVENTS_URL (the events API), EVENTS_TOKEN (a key with the
// subscribe right, when the server has keys), TOPIC (a name: a topic, a
// prefix ending in "*", or alternatives separated by "|"; default "*"),
// COLLECTION, PROJECT, LAYOUT (a target to narrow to).
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"connectrpc.com/connect"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/eventsapi/eventsv1"
	"github.com/txoutbox/txoutbox/eventsapi/eventsv1/eventsv1connect"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

// client follows one subscription across streams.
type client struct {
	api    eventsv1connect.EventServiceClient
	token  string
	name   string
	target *eventsv1.Target
	out    io.Writer
	last   int64 // the position of the last event printed
}

// run follows the stream until ctx ends.
func run(ctx context.Context, getenv func(string) string, out io.Writer) error {
	url := getenv("EVENTS_URL")
	if url == "" {
		return errors.New("set EVENTS_URL to the events API, e.g. http://127.0.0.1:8642")
	}
	// gRPC over unencrypted HTTP/2, as txoutbox serve listens; behind TLS,
	// use an https URL and a default transport.
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	tr.Protocols.SetHTTP2(true)
	c := &client{
		api:   eventsv1connect.NewEventServiceClient(&http.Client{Transport: tr}, url, connect.WithGRPC()),
		token: getenv("EVENTS_TOKEN"),
		name:  cmp.Or(getenv("TOPIC"), "*"),
		out:   out,
	}
	if col := getenv("COLLECTION"); col != "" {
		c.target = &eventsv1.Target{Collection: col, Project: getenv("PROJECT"), Layout: getenv("LAYOUT")}
	}
	for backoff := time.Duration(0); ; {
		err := c.follow(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch {
		case err == nil: // told to reconnect, and the moment came
			backoff = 0
		case connect.CodeOf(err) == connect.CodeUnauthenticated || connect.CodeOf(err) == connect.CodePermissionDenied:
			return fmt.Errorf("the events API refused the key: %w", err)
		default:
			backoff = min(max(2*backoff, 200*time.Millisecond), 10*time.Second)
			log.Printf("stream ended (%v); resuming after %d in %s", err, c.last, backoff)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
	}
}

// follow opens one stream, resumes after the last position printed and
// prints events until the stream ends (an error) or the server asks to
// reconnect and the chosen moment comes (nil).
func (c *client) follow(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := c.api.StreamEvents(ctx)
	if c.token != "" {
		st.RequestHeader().Set("Authorization", "Bearer "+c.token)
	}
	first := &eventsv1.EventsStreamRequest{Request: &eventsv1.EventsStreamRequest_Resume{Resume: &eventsv1.Resume{LastEventPosition: c.last}}}
	if c.last == 0 {
		first = nil // the first time: from the newest event on
	}
	for _, req := range []*eventsv1.EventsStreamRequest{first, {CorrelationId: "sub",
		Request: &eventsv1.EventsStreamRequest_Subscribe{Subscribe: &eventsv1.Subscribe{Name: c.name, Target: c.target}}}} {
		if req == nil {
			continue
		}
		if err := st.Send(req); err != nil {
			return err
		}
	}
	msgs := make(chan *eventsv1.EventsStreamResponse)
	errc := make(chan error, 1)
	go func() {
		for {
			m, err := st.Receive()
			if err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	var leave <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			return err
		case <-leave:
			return nil
		case m := <-msgs:
			switch r := m.GetResponse().(type) {
			case *eventsv1.EventsStreamResponse_Event:
				ev := r.Event
				fmt.Fprintf(c.out, "%d %s key=%s tenant=%s %s\n", ev.GetPosition(), ev.GetTopic(), ev.GetKey(), ev.GetTenant(), ev.GetPayload())
				if ev.GetPosition() > 0 { // live-only events have none
					c.last = ev.GetPosition()
				}
			case *eventsv1.EventsStreamResponse_Error:
				return fmt.Errorf("%s: %s", r.Error.GetCode(), r.Error.GetMessage())
			case *eventsv1.EventsStreamResponse_ReconnectBefore:
				if r.ReconnectBefore.GetReauthenticate() {
					log.Print("the key expires: reconnecting (give a fresh EVENTS_TOKEN to go on past its expiry)")
				}
				leave = time.After(eventsapi.ReconnectDelay(r.ReconnectBefore.GetBeforeTimestamp().AsTime()))
			case *eventsv1.EventsStreamResponse_Notice:
				log.Printf("notice %s: %s", r.Notice.GetCode(), r.Notice.GetMessage())
			}
		}
	}
}
