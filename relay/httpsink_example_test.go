package relay_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// An HTTPSink posts events to an events API; here a stand-in that prints
// what it receives. The relay calls Publish with the messages it claimed;
// this calls it directly with one message shaped as the outbox writes it.
func ExampleNewHTTPSink() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println(r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		fmt.Println("job:", r.Header.Get("X-Britecore-Job-Id"), "idempotency key:", r.Header.Get("Idempotency-Key"))
		w.WriteHeader(http.StatusCreated)
	}))
	defer api.Close()

	sink, err := relay.NewHTTPSink(relay.HTTPSinkConfig{
		URL:         api.URL,
		Format:      relay.FormatBriteEvents,
		BearerToken: "token-from-a-secret-store",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer sink.Close()

	msg := message.NewMessage("0190f5e0-0000-7000-8000-000000000001", []byte(`{"id":"inv-1","amount_cents":1250}`))
	msg.Metadata.Set(outbox.MetaCategory, "billing")
	msg.Metadata.Set(outbox.MetaEntity, "Invoice")
	msg.Metadata.Set(outbox.MetaAction, "Created")
	msg.Metadata.Set(outbox.MetaActorID, "user-4711")
	msg.Metadata.Set(outbox.MetaActorType, outbox.ActorUser)
	msg.Metadata.Set(outbox.MetaJobID, "job-1")
	msg.Metadata.Set(outbox.MetaKey, "inv-1")
	if err := sink.Publish("billing.InvoiceCreated", msg); err != nil {
		log.Fatal(err)
	}
	// Output:
	// POST /events application/json
	// job: job-1 idempotency key: 0190f5e0-0000-7000-8000-000000000001
}
