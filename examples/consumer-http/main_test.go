package main

import (
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay/relayhttp"
)

// TestDedupe posts events through the relay's HTTP sink, then the same
// batch again as a retry would, and checks each event is processed once.
func TestDedupe(t *testing.T) {
	var mu sync.Mutex
	processed := map[string]int{}
	c := newConsumer(1000, func(e event) {
		mu.Lock()
		defer mu.Unlock()
		processed[e.ID]++
		if e.Type != "billing.InvoiceCreated" || e.Subject == "" || len(e.Data) == 0 {
			t.Errorf("event lost its envelope: %+v", e)
		}
	})
	srv := httptest.NewServer(c)
	defer srv.Close()
	sink, err := relayhttp.New(&relayhttp.Config{URL: srv.URL, Format: relayhttp.FormatCloudEvents})
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	var evs []*outbox.Event
	for i := range n {
		evs = append(evs, &outbox.Event{
			ID: uuid.Must(uuid.NewV7()), Topic: "billing.InvoiceCreated", Category: "billing", Entity: "Invoice", Action: "Created",
			Data: []byte(`{"n":1}`), ActorID: "user-1", ActorType: outbox.ActorUser, JobID: "job-1", Source: "billing",
			Key: fmt.Sprintf("inv-%d", i%5), Time: time.Now(),
		})
	}
	for range 2 { // the second round is a retry of the same events
		if err := sink.Send(t.Context(), evs); err != nil {
			t.Fatal(err)
		}
	}
	if len(processed) != n {
		t.Fatalf("%d events processed, want %d", len(processed), n)
	}
	for id, times := range processed {
		if times != 1 {
			t.Errorf("event %s processed %d times", id, times)
		}
	}
}
