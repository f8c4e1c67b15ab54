package eventsapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/eventsapi/eventsv1"
	"github.com/txoutbox/txoutbox/eventsapi/eventsv1/eventsv1connect"
)

// The EventService over gRPC: a stream subscribes to a topic and a target,
// publishes an event on it, and receives both the answer to its publish and
// the event itself.
func Example_eventService() {
	srv, err := eventsapi.New(nil) // in memory, development mode: loopback only
	if err != nil {
		panic(err)
	}
	ts := httptest.NewUnstartedServer(srv)
	ts.Config.Protocols = new(http.Protocols)
	ts.Config.Protocols.SetHTTP1(true)
	ts.Config.Protocols.SetUnencryptedHTTP2(true) // gRPC in plain text, as txoutbox serve listens
	ts.Start()
	defer func() {
		srv.Close() // ends the open streams
		ts.CloseClientConnections()
		ts.Close()
	}()

	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	client := eventsv1connect.NewEventServiceClient(&http.Client{Transport: tr}, ts.URL, connect.WithGRPC())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream := client.StreamEvents(ctx)
	layout := &eventsv1.Target{Collection: "c-1", Project: "p-1", Layout: "l-1"}
	payload, _ := structpb.NewStruct(map[string]any{"id": "inv-1", "amount_cents": 1250})
	for _, req := range []*eventsv1.EventsStreamRequest{
		{CorrelationId: "sub", Request: &eventsv1.EventsStreamRequest_Subscribe{Subscribe: &eventsv1.Subscribe{
			Name: "billing.*", Target: &eventsv1.Target{Collection: "c-1"}}}}, // the collection: every project and layout in it
		{CorrelationId: "pub", Request: &eventsv1.EventsStreamRequest_Publish{Publish: &eventsv1.PublishEventRequest{
			Name: "billing.InvoiceCreated", Key: "inv-1", Payload: payload, Target: layout}}},
	} {
		if err := stream.Send(req); err != nil {
			panic(err)
		}
	}
	for range 3 {
		m, err := stream.Receive()
		if err != nil {
			panic(err)
		}
		switch r := m.GetResponse().(type) {
		case *eventsv1.EventsStreamResponse_Subscribed:
			fmt.Println(m.GetCorrelationId(), "subscribed:", r.Subscribed.GetName())
		case *eventsv1.EventsStreamResponse_Published:
			fmt.Println(m.GetCorrelationId(), "published at position", r.Published.GetPosition())
		case *eventsv1.EventsStreamResponse_Event:
			ev := r.Event
			fmt.Println("event:", ev.GetPosition(), ev.GetTopic(), ev.GetTarget().GetLayout(),
				ev.GetPayload().GetStructValue().GetFields()["amount_cents"].GetNumberValue())
		}
	}
	// Output:
	// sub subscribed: billing.*
	// pub published at position 1
	// event: 1 billing.InvoiceCreated l-1 1250
}
