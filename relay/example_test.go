package relay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/google/uuid"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// LineSink writes each event as a line of JSON: a sink of your own. Send
// gets a batch, oldest first; it writes the batch whole, so each key's order
// holds, and a failed write fails the batch, which the relay retries.
type LineSink struct {
	mu sync.Mutex // Send may be called by several relays at once
	W  io.Writer
}

func (s *LineSink) Send(ctx context.Context, events []*outbox.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ev := range events {
		line, err := json.Marshal(map[string]any{
			"id": ev.ID, "topic": ev.Topic, "key": ev.Key, "data": json.RawMessage(ev.Data),
		})
		if err != nil {
			return relay.Permanent(err) // this batch can never be written
		}
		if _, err := fmt.Fprintf(s.W, "%s\n", line); err != nil {
			return err // retried after a backoff
		}
	}
	return nil
}

// A sink of your own is a type with a Send method; relay.New(pool, sink,
// nil) runs a relay on it. Here it is called directly, as the relay calls
// it with a batch it read; TestLineSinkConformance runs the conformance
// suite (package relaytest) on it.
func Example_sink() {
	sink := &LineSink{W: os.Stdout}
	err := sink.Send(context.Background(), []*outbox.Event{{
		ID:    uuid.MustParse("0190f5e0-0000-7000-8000-000000000001"),
		Topic: "billing.InvoiceCreated", Key: "inv-1",
		Data: []byte(`{"id":"inv-1","amount_cents":1250}`),
	}})
	fmt.Println(err)
	// Output:
	// {"data":{"id":"inv-1","amount_cents":1250},"id":"0190f5e0-0000-7000-8000-000000000001","key":"inv-1","topic":"billing.InvoiceCreated"}
	// <nil>
}
