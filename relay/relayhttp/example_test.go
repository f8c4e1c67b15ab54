package relayhttp_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/google/uuid"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay/relayhttp"
)

// A Sink posts events to an events API; here a stand-in that prints what it
// receives. The relay hands it each batch it claimed through Send, as
// relay.New(pool, sink, nil) arranges; this calls it directly with one event
// as the relay reads it from the outbox table.
func ExampleNew() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println(r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		fmt.Println("job:", r.Header.Get("X-Britecore-Job-Id"), "idempotency key:", r.Header.Get("Idempotency-Key"))
		w.WriteHeader(http.StatusCreated)
	}))
	defer api.Close()

	sink, err := relayhttp.New(&relayhttp.Config{
		URL:         api.URL,
		Format:      relayhttp.FormatBriteEvents,
		BearerToken: "token-from-a-secret-store",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer sink.Close()

	ev := &outbox.Event{
		ID:       uuid.MustParse("0190f5e0-0000-7000-8000-000000000001"),
		Topic:    "billing.InvoiceCreated",
		Category: "billing", Entity: "Invoice", Action: "Created",
		Data:    []byte(`{"id":"inv-1","amount_cents":1250}`),
		ActorID: "user-4711", ActorType: outbox.ActorUser,
		JobID: "job-1",
		Key:   "inv-1",
	}
	if err := sink.Send(context.Background(), []*outbox.Event{ev}); err != nil {
		log.Fatal(err)
	}
	// Output:
	// POST /events application/json
	// job: job-1 idempotency key: 0190f5e0-0000-7000-8000-000000000001
}
