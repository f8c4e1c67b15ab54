package eventsapi_test

import (
	"context"
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

// A worker turns an approved order into a job: it enrolls for the oldest
// approved order without one, starts, reports progress (live subscribers
// see it; nothing is stored) and finishes. A second enrolment finds nothing
// left: 204.
func Example_jobs() {
	store, err := eventsapi.NewMemoryStore(nil)
	if err != nil {
		panic(err)
	}
	defer store.Close()
	srv, err := eventsapi.New(&eventsapi.Config{Store: store, Development: true})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	ts := httptest.NewServer(srv)
	defer ts.Close()

	_, err = store.Append(context.Background(), []eventsapi.Event{{
		ID: "order-1-approved", Topic: "orders.OrderApproved", Category: "orders", Entity: "Order", Action: "Approved",
		Key: "order-1", Data: json.RawMessage(`{"newValue":"Approved"}`),
	}})
	if err != nil {
		panic(err)
	}

	call := func(method, path, body string) *http.Response {
		req, err := http.NewRequest(method, ts.URL+path, strings.NewReader(body))
		if err != nil {
			panic(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			panic(err)
		}
		return resp
	}
	const enroll = `{"sourceTopic":"orders.OrderApproved","targetTopic":"orders.ShipmentRequested","sender":"shipper",
		"conditions":[{"key":"payload/newValue","value":"Approved"}]}`
	resp := call("POST", "/api/enroll", enroll)
	var enrolled struct {
		SourceID string          `json:"sourceId"`
		JobID    string          `json:"jobId"`
		Job      eventsapi.Event `json:"job"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&enrolled)
	resp.Body.Close()
	fmt.Println("enroll:", resp.Status, enrolled.SourceID, enrolled.Job.Topic, enrolled.Job.Status, enrolled.Job.Key)

	for _, step := range []struct{ method, path, body string }{
		{"PATCH", "/api/events/" + enrolled.JobID, `{"status":"in_progress","description":"packing"}`},
		{"POST", "/api/events/" + enrolled.JobID + "/progress", `{"packed":1,"of":2}`},
		{"PATCH", "/api/events/" + enrolled.JobID, `{"status":"finished"}`},
		{"PATCH", "/api/events/" + enrolled.JobID, `{"status":"in_progress"}`},
		{"POST", "/api/enroll", enroll},
	} {
		resp := call(step.method, step.path, step.body)
		resp.Body.Close()
		fmt.Println(step.method, strings.Replace(step.path[len("/api/"):], enrolled.JobID, "JOB", 1), "→", resp.Status)
	}
	// Output:
	// enroll: 201 Created order-1-approved orders.ShipmentRequested pending order-1
	// PATCH events/JOB → 200 OK
	// POST events/JOB/progress → 202 Accepted
	// PATCH events/JOB → 200 OK
	// PATCH events/JOB → 409 Conflict
	// POST enroll → 204 No Content
}
