package sinkserver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/internal/sinkserver"
	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/topics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newServer(t *testing.T, cfg *sinkserver.Config) (*sinkserver.Server, *httptest.Server) {
	t.Helper()
	reg, err := topics.Load("testdata/topic_definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c := sinkserver.Config{}
	if cfg != nil {
		c = *cfg
	}
	c.Registry = reg
	srv, err := sinkserver.New(&c)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		_ = srv.Close()
		hs.Close()
	})
	return srv, hs
}

type answer struct {
	status int
	header http.Header
	body   string
}

func post(t *testing.T, url, contentType string, header map[string]string, body string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func get(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

const britePayment = `{"category":"billing","entity":"Payment","action":"Received","data":{"id":"p-1","invoice_id":"inv-9"},"actor":{"id":"user-4711","type":"user"}}`

func briteInvoice(id string, amount int) string {
	return fmt.Sprintf(`{"category":"billing","entity":"Invoice","action":"Created","data":{"id":%q,"amount_cents":%d},"actor":{"id":"billing-service","type":"service"}}`, id, amount)
}

func cloudEvent(id, topic, data string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"billing-service","type":%q,"time":"2026-11-23T10:00:00Z","jobid":"job-1","actorid":"user-4711","actortype":"user","data":%s}`, id, topic, data)
}

func TestBriteSingle(t *testing.T) {
	t.Parallel()
	srv, hs := newServer(t, nil)
	hdr := map[string]string{wire.HeaderIdempotencyKey: "ev-1", wire.HeaderJobID: "job-1"}

	a := post(t, hs.URL+"/events", "application/json", hdr, britePayment)
	if a.status != http.StatusCreated || !strings.Contains(a.body, `"eventId":"ev-1"`) || !strings.Contains(a.body, `"jobId":"job-1"`) {
		t.Fatalf("first post: %d %s", a.status, a.body)
	}
	if a := post(t, hs.URL+"/events", "application/json", hdr, britePayment); a.status != http.StatusConflict {
		t.Errorf("duplicate: %d %s, want 409", a.status, a.body)
	}
	evs := srv.Events(0, 10)
	if len(evs) != 1 {
		t.Fatalf("stored %d events, want 1", len(evs))
	}
	ev := evs[0]
	if ev.Topic != "billing.PaymentReceived" || ev.Key != "inv-9" || ev.JobID != "job-1" || ev.ID != "ev-1" ||
		ev.ActorType != "user" || ev.Format != "briteevents" || ev.ReceivedAt.IsZero() || ev.Position != 1 {
		t.Errorf("stored %+v", ev)
	}
	if st := srv.Stats(); st.Accepted != 1 || st.Duplicates != 1 || st.Requests != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestBriteSingleRejects(t *testing.T) {
	t.Parallel()
	_, hs := newServer(t, nil)
	for name, tc := range map[string]struct {
		body string
		want int
	}{
		"bad JSON":        {`{"category":`, http.StatusBadRequest},
		"extra field":     {strings.Replace(britePayment, `"data"`, `"id":"x","data"`, 1), http.StatusBadRequest},
		"missing actor":   {`{"category":"billing","entity":"Payment","action":"Received","data":{"id":"1"}}`, http.StatusBadRequest},
		"unknown topic":   {strings.Replace(britePayment, `"Received"`, `"Refunded"`, 1), http.StatusUnprocessableEntity},
		"schema failure":  {strings.Replace(britePayment, `"invoice_id":"inv-9"`, `"invoice_id":9`, 1), http.StatusUnprocessableEntity},
		"bad actor type":  {strings.Replace(britePayment, `"type":"user"`, `"type":"robot"`, 1), http.StatusUnprocessableEntity},
		"short actor id":  {strings.Replace(britePayment, `"user-4711"`, `"u1"`, 1), http.StatusUnprocessableEntity},
		"empty data":      {strings.Replace(britePayment, `{"id":"p-1","invoice_id":"inv-9"}`, `{}`, 1), http.StatusUnprocessableEntity},
		"data not object": {strings.Replace(britePayment, `{"id":"p-1","invoice_id":"inv-9"}`, `[1]`, 1), http.StatusUnprocessableEntity},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if a := post(t, hs.URL+"/events", "application/json", nil, tc.body); a.status != tc.want {
				t.Errorf("%d %s, want %d", a.status, a.body, tc.want)
			}
		})
	}
}

func TestBriteBulk(t *testing.T) {
	t.Parallel()
	srv, hs := newServer(t, nil)
	body := "[" + briteInvoice("inv-1", 100) + "," + briteInvoice("inv-2", -5) + "," + briteInvoice("inv-3", 300) + "]"
	hdr := map[string]string{wire.HeaderEventIDs: "e1,e2,e3", wire.HeaderJobID: "job-7"}
	a := post(t, hs.URL+"/events/bulk/", "application/json", hdr, body)
	var res wire.BriteBulkResult
	if err := json.Unmarshal([]byte(a.body), &res); err != nil || a.status != http.StatusCreated {
		t.Fatalf("bulk: %d %s", a.status, a.body)
	}
	codes, err := res.RecordErrors(3)
	if err != nil || codes[0] != "" || codes[1] != sinkserver.BriteErrValidation || codes[2] != "" {
		t.Fatalf("records %q, %v", codes, err)
	}
	// Resending everything: the two stored are duplicates, answered Success.
	a = post(t, hs.URL+"/events/bulk", "application/json", hdr, body)
	if a.status != http.StatusCreated || !strings.Contains(a.body, `"duplicates":2`) {
		t.Errorf("resend: %d %s", a.status, a.body)
	}
	evs := srv.Events(0, 10)
	if len(evs) != 2 || evs[0].ID != "e1" || evs[1].ID != "e3" || evs[1].JobID != "job-7" || evs[1].Key != "inv-3" {
		t.Errorf("stored %+v", evs)
	}
	if st := srv.Stats(); st.Rejected != 2 || st.Duplicates != 2 || st.ByTopic["billing.InvoiceCreated"] != 2 {
		t.Errorf("stats %+v", st)
	}

	if a := post(t, hs.URL+"/events/bulk/", "application/json", map[string]string{wire.HeaderEventIDs: "e1"}, body); a.status != http.StatusBadRequest {
		t.Errorf("id count mismatch: %d %s", a.status, a.body)
	}
	big := "[" + strings.TrimSuffix(strings.Repeat(briteInvoice("x", 1)+",", wire.BriteBulkMax+1), ",") + "]"
	if a := post(t, hs.URL+"/events/bulk/", "application/json", nil, big); a.status != http.StatusBadRequest {
		t.Errorf("%d records: %d %s", wire.BriteBulkMax+1, a.status, a.body)
	}
	if a := post(t, hs.URL+"/events/bulk/", "application/json", nil, `[{"category"`); a.status != http.StatusBadRequest {
		t.Errorf("bad JSON: %d", a.status)
	}
}

func TestCloudEvents(t *testing.T) {
	t.Parallel()
	srv, hs := newServer(t, nil)
	batch := "[" + cloudEvent("c1", "billing.InvoiceCreated", `{"id":"inv-1","amount_cents":1}`) + "," +
		cloudEvent("c2", "billing.PaymentReceived", `{"id":"p-1","invoice_id":"inv-1"}`) + "]"

	for _, path := range []string{"/", "/cloudevents"} {
		a := post(t, hs.URL+path, wire.ContentTypeCloudEventBatch, nil, batch)
		if a.status != http.StatusAccepted {
			t.Fatalf("POST %s: %d %s", path, a.status, a.body)
		}
	}
	evs := srv.Events(0, 10)
	if len(evs) != 2 || evs[1].Key != "inv-1" || evs[1].Entity != "Payment" || evs[0].Time.IsZero() {
		t.Fatalf("stored %+v", evs)
	}
	if st := srv.Stats(); st.Accepted != 2 || st.Duplicates != 2 {
		t.Errorf("a batch sent twice: stats %+v", st)
	}

	one := cloudEvent("c3", "billing.InvoiceCreated", `{"id":"inv-3","amount_cents":3}`)
	if a := post(t, hs.URL+"/", wire.ContentTypeCloudEvent, nil, one); a.status != http.StatusCreated {
		t.Errorf("single: %d %s", a.status, a.body)
	}
	if a := post(t, hs.URL+"/", wire.ContentTypeCloudEvent, nil, one); a.status != http.StatusConflict {
		t.Errorf("single duplicate: %d %s, want 409", a.status, a.body)
	}

	bad := "[" + cloudEvent("c4", "billing.InvoiceCreated", `{"id":"inv-4","amount_cents":4}`) + "," +
		cloudEvent("c5", "billing.InvoiceCreated", `{"id":"inv-5","amount_cents":"five"}`) + "]"
	a := post(t, hs.URL+"/", wire.ContentTypeCloudEventBatch, nil, bad)
	if a.status != http.StatusUnprocessableEntity || !strings.Contains(a.body, `"id":"c5"`) || !strings.Contains(a.body, "/amount_cents") {
		t.Errorf("schema failure: %d %s", a.status, a.body)
	}
	unknown := "[" + cloudEvent("c6", "billing.InvoiceShredded", `{"id":"inv-6"}`) + "]"
	if a := post(t, hs.URL+"/", wire.ContentTypeCloudEventBatch, nil, unknown); a.status != http.StatusUnprocessableEntity {
		t.Errorf("unknown topic: %d %s", a.status, a.body)
	}
	if n := len(srv.Events(0, 10)); n != 3 {
		t.Errorf("%d events stored, want 3: a rejected batch stores nothing", n)
	}

	for name, tc := range map[string]struct {
		ct, body string
		want     int
	}{
		"bad JSON":     {wire.ContentTypeCloudEventBatch, `[{"specversion":`, http.StatusBadRequest},
		"not CE":       {"application/json", batch, http.StatusUnsupportedMediaType},
		"missing type": {wire.ContentTypeCloudEventBatch, `[{"specversion":"1.0","id":"x","source":"s","data":{"id":"1"}}]`, http.StatusBadRequest},
	} {
		if a := post(t, hs.URL+"/", tc.ct, nil, tc.body); a.status != tc.want {
			t.Errorf("%s: %d %s, want %d", name, a.status, a.body, tc.want)
		}
	}
	if st := srv.Stats(); st.BadRequests != 3 || st.Rejected != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestFaultInjection(t *testing.T) {
	t.Parallel()
	srv, hs := newServer(t, nil)
	srv.FailNext(2, http.StatusServiceUnavailable, 1500*time.Millisecond)
	hdr := map[string]string{wire.HeaderIdempotencyKey: "ev-1"}
	for i := range 2 {
		a := post(t, hs.URL+"/events", "application/json", hdr, britePayment)
		if a.status != http.StatusServiceUnavailable || a.header.Get("Retry-After") != "2" {
			t.Fatalf("post %d: %d Retry-After %q", i, a.status, a.header.Get("Retry-After"))
		}
	}
	if a := post(t, hs.URL+"/events", "application/json", hdr, britePayment); a.status != http.StatusCreated {
		t.Fatalf("after the faults: %d %s", a.status, a.body)
	}

	srv.FailNextRecords(1, wire.BriteErrThroughputExceeded)
	body := "[" + briteInvoice("inv-1", 1) + "," + briteInvoice("inv-2", 2) + "]"
	a := post(t, hs.URL+"/events/bulk/", "application/json", map[string]string{wire.HeaderEventIDs: "b1,b2"}, body)
	if !strings.Contains(a.body, `"records":["ProvisionedThroughputExceededException","Success"]`) {
		t.Errorf("record fault: %s", a.body)
	}
	if st := srv.Stats(); st.InjectedFaults != 3 || st.Accepted != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestCapacityJSONLAndOnEvent(t *testing.T) {
	t.Parallel()
	var jsonl bytes.Buffer
	var mu sync.Mutex
	var seen []int64
	srv, hs := newServer(t, &sinkserver.Config{
		Capacity: 3,
		JSONL:    &jsonl,
		OnEventFunc: func(ev eventsapi.Event) {
			mu.Lock()
			seen = append(seen, ev.Position)
			mu.Unlock()
		},
	})
	for i := 1; i <= 5; i++ {
		ce := cloudEvent(fmt.Sprint("c", i), "billing.InvoiceCreated", fmt.Sprintf(`{"id":"inv-%d","amount_cents":%d}`, i, i))
		if a := post(t, hs.URL+"/", wire.ContentTypeCloudEvent, nil, ce); a.status != http.StatusCreated {
			t.Fatalf("%d %s", a.status, a.body)
		}
	}
	evs := srv.Events(0, 10)
	if len(evs) != 3 || evs[0].Position != 3 || evs[2].Position != 5 {
		t.Errorf("held %+v, want positions 3..5", evs)
	}
	if st := srv.Stats(); st.Held != 3 || st.LastPosition != 5 || st.Accepted != 5 {
		t.Errorf("stats %+v", st)
	}
	mu.Lock()
	if fmt.Sprint(seen) != "[1 2 3 4 5]" {
		t.Errorf("OnEventFunc saw %v", seen)
	}
	mu.Unlock()
	lines := strings.Split(strings.TrimSpace(jsonl.String()), "\n")
	var last eventsapi.Event
	if len(lines) != 5 || json.Unmarshal([]byte(lines[4]), &last) != nil || last.ID != "c5" || last.Position != 5 || last.ReceivedAt.IsZero() {
		t.Errorf("JSONL: %d lines, last %+v", len(lines), last)
	}
}

// TestAPI: the sink answers the events API's query shape, and its own
// /api/stats, and serves the events API's live page.
func TestAPI(t *testing.T) {
	t.Parallel()
	_, hs := newServer(t, nil)
	batch := "[" + cloudEvent("c1", "billing.InvoiceCreated", `{"id":"inv-1","amount_cents":1}`) + "," +
		cloudEvent("c2", "billing.PaymentReceived", `{"id":"p-1","invoice_id":"inv-1"}`) + "," +
		cloudEvent("c3", "billing.InvoiceCreated", `{"id":"inv-2","amount_cents":2}`) + "]"
	post(t, hs.URL+"/", wire.ContentTypeCloudEventBatch, nil, batch)

	var page eventsapi.EventsPage
	get(t, hs.URL+"/api/events?after=0&limit=2", &page)
	if len(page.Events) != 2 || page.Next != "2" {
		t.Errorf("first page: %d events, next %q", len(page.Events), page.Next)
	}
	next := page.Next
	page = eventsapi.EventsPage{}
	get(t, hs.URL+"/api/events?after="+next, &page)
	if len(page.Events) != 1 || page.Events[0].ID != "c3" || page.Next != "" {
		t.Errorf("second page: %+v", page)
	}
	get(t, hs.URL+"/api/events?topic=billing.PaymentReceived", &page)
	if len(page.Events) != 1 || page.Events[0].ID != "c2" {
		t.Errorf("by topic: %+v", page)
	}
	resp, err := http.Get(hs.URL + "/api/events?after=x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("after=x: %s", resp.Status)
	}

	var st sinkserver.Stats
	get(t, hs.URL+"/api/stats", &st)
	if st.Accepted != 3 || st.ByTopic["billing.InvoiceCreated"] != 2 || st.LatencyP50Ms <= 0 || st.LastPosition != 3 || st.Held != 3 {
		t.Errorf("stats %+v", st)
	}

	resp, err = http.Get(hs.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	html, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(html), "live.js") {
		t.Errorf("GET /: %s %.80s", resp.Header.Get("Content-Type"), html)
	}
}

// TestStream: the sink streams as the events API does, and Close ends the
// open streams.
func TestStream(t *testing.T) {
	t.Parallel()
	srv, hs := newServer(t, nil)
	post(t, hs.URL+"/", wire.ContentTypeCloudEvent, nil, cloudEvent("c1", "billing.InvoiceCreated", `{"id":"inv-1","amount_cents":1}`))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+"/api/stream?last_event_id=0", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
	lines := bufio.NewScanner(resp.Body)
	next := func() eventsapi.Event {
		t.Helper()
		for lines.Scan() {
			if data, ok := strings.CutPrefix(lines.Text(), "data: "); ok {
				var ev eventsapi.Event
				if err := json.Unmarshal([]byte(data), &ev); err != nil {
					t.Fatal(err)
				}
				return ev
			}
		}
		t.Fatalf("stream ended: %v", lines.Err())
		return eventsapi.Event{}
	}
	if ev := next(); ev.ID != "c1" {
		t.Errorf("first streamed event %+v, want the one held", ev)
	}
	post(t, hs.URL+"/", wire.ContentTypeCloudEvent, nil, cloudEvent("c2", "billing.InvoiceCreated", `{"id":"inv-2","amount_cents":2}`))
	if ev := next(); ev.ID != "c2" || ev.Position != 2 {
		t.Errorf("live event %+v", ev)
	}
	_ = srv.Close()
	for lines.Scan() {
	}
	if ctx.Err() != nil {
		t.Error("Close did not end the stream")
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	_, hs := newServer(t, &sinkserver.Config{MaxBodyBytes: 64})
	if a := post(t, hs.URL+"/events", "application/json", nil, britePayment); a.status != http.StatusRequestEntityTooLarge {
		t.Errorf("large body: %d %s", a.status, a.body)
	}
	resp, err := http.Get(hs.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /events: %s", resp.Status)
	}
	for _, cfg := range []sinkserver.Config{{Capacity: -1}, {DedupeWindow: -1}, {MaxBodyBytes: -1}} {
		if _, err := sinkserver.New(&cfg); err == nil {
			t.Errorf("New(%+v) accepted a negative size", cfg)
		}
	}
	srv, err := sinkserver.New(nil)
	if err != nil {
		t.Fatalf("New(nil) = %v", err)
	}
	_ = srv.Close()
}
