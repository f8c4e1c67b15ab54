package eventsapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/txoutbox/txoutbox/eventsapi"
)

// An events API in memory, in development mode: a CloudEvents batch is
// posted as the relay posts it, then read back through the query API.
func Example() {
	srv, err := eventsapi.New(nil)
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ts := httptest.NewServer(srv) // on 127.0.0.1: development mode serves this machine
	defer ts.Close()

	batch := `[{"specversion":"1.0","id":"0193a9b0-0000-7000-8000-000000000001","source":"billing-api",
		"type":"billing.InvoiceCreated","subject":"inv-1","datacontenttype":"application/json",
		"data":{"id":"inv-1","amount_cents":1250,"currency":"EUR"}}]`
	resp, err := http.Post(ts.URL+"/cloudevents", "application/cloudevents-batch+json", strings.NewReader(batch))
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("ingest:", resp.Status)

	resp, err = http.Get(ts.URL + "/api/events?topic=billing.*")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	var page struct {
		Events []eventsapi.Event `json:"events"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		panic(err)
	}
	for _, ev := range page.Events {
		fmt.Println(ev.Position, ev.Topic, ev.Key, string(ev.Data))
	}
	// Output:
	// ingest: 202 Accepted
	// 1 billing.InvoiceCreated inv-1 {"id":"inv-1","amount_cents":1250,"currency":"EUR"}
}

// A filter as subscriptions and queries take it: billing events except
// deletions, of one tenant.
func ExampleCompile() {
	m, err := eventsapi.Compile(eventsapi.Filter{
		Include: []eventsapi.Selector{{Topic: []string{"billing.*"}}},
		Exclude: []eventsapi.Selector{{Action: []string{"Deleted"}}},
		Tenant:  "acme",
	})
	if err != nil {
		panic(err)
	}
	for _, ev := range []eventsapi.Event{
		{Topic: "billing.InvoiceCreated", Action: "Created", Tenant: "acme"},
		{Topic: "billing.InvoiceDeleted", Action: "Deleted", Tenant: "acme"},
		{Topic: "billing.InvoiceCreated", Action: "Created", Tenant: "globex"},
		{Topic: "crm.ContactCreated", Action: "Created", Tenant: "acme"},
	} {
		fmt.Println(ev.Topic, ev.Tenant, m.Match(&ev))
	}
	// Output:
	// billing.InvoiceCreated acme true
	// billing.InvoiceDeleted acme false
	// billing.InvoiceCreated globex false
	// crm.ContactCreated acme false
}
