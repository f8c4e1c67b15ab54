package eventsapi_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/internal/ingest"
	"github.com/txoutbox/txoutbox/internal/wire"
)

const (
	tp1 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tp2 = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
)

// byID returns the stored events by id.
func byID(evs []eventsapi.Event) map[string]eventsapi.Event {
	m := make(map[string]eventsapi.Event, len(evs))
	for _, ev := range evs {
		m[ev.ID] = ev
	}
	return m
}

// TestIngestBriteEvents: the bc-events routes take what the relay sends,
// keep what the headers carry, and recognise duplicates by id and by
// tenant and dedupe key, answering a single duplicate 409 and counting
// those of a bulk post.
func TestIngestBriteEvents(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, newStore func(t *testing.T) eventsapi.Store) {
		b := setupAPI(t, apiOptions{store: newStore(t), registry: true})
		single := func(id, tenant, dedupe string) answer {
			t.Helper()
			return b.do(t, http.MethodPost, "/events", relaySecret, "application/json", briteInvoice("inv-1", 100),
				wire.HeaderIdempotencyKey, id, wire.HeaderJobID, "job-1", wire.HeaderTenant, tenant,
				wire.HeaderTraceparent, tp1, wire.HeaderDedupeKeys, id+"="+dedupe)
		}
		a := single("ev-1", "acme", "pay+inv-1%2C+once")
		var created wire.BriteCreated
		a.decode(t, &created)
		if a.status != http.StatusCreated || created.EventID != "ev-1" || created.JobID != "job-1" {
			t.Fatalf("first post: %d %s", a.status, a.body)
		}
		for _, tc := range []struct {
			what, id, tenant string
			want             int
		}{
			{"same id", "ev-1", "acme", http.StatusConflict},
			{"same tenant and dedupe key", "ev-2", "acme", http.StatusConflict},
			{"same dedupe key, another tenant", "ev-3", "globex", http.StatusCreated},
		} {
			a := single(tc.id, tc.tenant, "pay+inv-1%2C+once")
			if a.status != tc.want {
				t.Errorf("%s: %d %s, want %d", tc.what, a.status, a.body, tc.want)
			}
			if a.status == http.StatusConflict && a.errorCode(t) != ingest.CodeDuplicate {
				t.Errorf("%s: %s, want code %s", tc.what, a.body, ingest.CodeDuplicate)
			}
		}
		got := byID(b.all(t))
		ev := got["ev-1"]
		if len(got) != 2 || got["ev-3"].Tenant != "globex" {
			t.Fatalf("stored %s, want ev-1 and ev-3", ids(b.all(t)))
		}
		if ev.Topic != "billing.InvoiceCreated" || ev.Entity != "Invoice" || ev.Key != "inv-1" || ev.Tenant != "acme" ||
			ev.Traceparent != tp1 || ev.DedupeKey != "pay inv-1, once" || ev.JobID != "job-1" || ev.ActorID != "billing-service" ||
			ev.Format != "briteevents" || ev.Position <= 0 || ev.ReceivedAt.IsZero() || string(ev.Data) != `{"id":"inv-1","amount_cents":100}` {
			t.Errorf("stored %+v", ev)
		}

		// A bulk post: a record failing the catalog fails alone; one whose
		// dedupe key is ev-1's is a duplicate.
		body := batch(briteInvoice("inv-10", 10), briteInvoice("inv-11", -5), briteInvoice("inv-12", 12))
		post := func(path string) ingest.BriteBulkAnswer {
			t.Helper()
			a := b.do(t, http.MethodPost, path, relaySecret, "application/json", body,
				wire.HeaderEventIDs, "b1,b2,b3", wire.HeaderJobID, "job-2", wire.HeaderTenant, "acme",
				wire.HeaderDedupeKeys, "b3=pay+inv-1%2C+once")
			var ans ingest.BriteBulkAnswer
			a.decode(t, &ans)
			if a.status != http.StatusCreated {
				t.Fatalf("POST %s: %d %s", path, a.status, a.body)
			}
			return ans
		}
		ans := post("/events/bulk/")
		if ans.FailedRecords != 1 || strings.Join(ans.Records, ",") != "Success,ValidationError,Success" || ans.Duplicates != 1 ||
			len(ans.Errors) != 1 || ans.Errors[0].Index != 1 || ans.Errors[0].ID != "b2" || !strings.Contains(ans.Errors[0].ErrorMessage, "amount_cents") {
			t.Errorf("bulk answer %+v", ans)
		}
		if ans := post("/events/bulk"); ans.Duplicates != 2 || ans.FailedRecords != 1 {
			t.Errorf("bulk resent: %+v, want the two valid records duplicates", ans)
		}
		got = byID(b.all(t))
		if len(got) != 3 || got["b1"].JobID != "job-2" || got["b1"].Tenant != "acme" || got["b1"].Key != "inv-10" {
			t.Errorf("stored %s; b1 %+v", ids(b.all(t)), got["b1"])
		}
		if !strings.Contains(b.log.String(), `"key":"relay"`) || !strings.Contains(b.log.String(), `"id":"b2"`) {
			t.Errorf("the rejection of b2 is not logged with the key's name:\n%s", b.log)
		}
	})
}

// TestIngestCloudEvents: CloudEvents batches and single events, the tenant,
// trace and dedupe key carried as extension attributes.
func TestIngestCloudEvents(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, newStore func(t *testing.T) eventsapi.Store) {
		b := setupAPI(t, apiOptions{store: newStore(t), registry: true})
		ce := func(id, tenant string) string {
			return cloudEvent(id, "billing.InvoiceCreated", invoiceData("inv-"+id, 1),
				"tenant", tenant, "dedupekey", "k1", "traceparent", tp2, "time", "2026-11-23T10:00:00Z", "jobid", "job-"+id)
		}
		three := batch(ce("c1", "acme"), ce("c2", "globex"), ce("c3", ""))
		a := b.do(t, http.MethodPost, "/", relaySecret, wire.ContentTypeCloudEventBatch, three)
		var ans ingest.CloudEventsAnswer
		a.decode(t, &ans)
		if a.status != http.StatusAccepted || ans.Accepted != 3 || ans.Duplicates != 0 {
			t.Fatalf("batch: %d %s, want the same dedupe key of three tenants stored thrice", a.status, a.body)
		}
		a = b.do(t, http.MethodPost, "/cloudevents", relaySecret, wire.ContentTypeCloudEventBatch, three)
		if a.decode(t, &ans); a.status != http.StatusAccepted || ans.Accepted != 0 || ans.Duplicates != 3 {
			t.Errorf("batch again: %d %s", a.status, a.body)
		}
		for _, tc := range []struct {
			what, body string
			want       int
		}{
			{"dedupe key of acme again", ce("c4", "acme"), http.StatusConflict},
			{"new", cloudEvent("c5", "billing.InvoiceCreated", invoiceData("inv-5", 5)), http.StatusCreated},
			{"same id", cloudEvent("c5", "billing.InvoiceCreated", invoiceData("inv-5", 5)), http.StatusConflict},
		} {
			if a := b.do(t, http.MethodPost, "/", relaySecret, wire.ContentTypeCloudEvent, tc.body); a.status != tc.want {
				t.Errorf("%s: %d %s, want %d", tc.what, a.status, a.body, tc.want)
			}
		}
		got := byID(b.all(t))
		c1 := got["c1"]
		if len(got) != 4 || got["c2"].Tenant != "globex" || got["c3"].Tenant != "" {
			t.Fatalf("stored %s", ids(b.all(t)))
		}
		if c1.Tenant != "acme" || c1.DedupeKey != "k1" || c1.Traceparent != tp2 || c1.JobID != "job-c1" || c1.Source != "billing-service" ||
			c1.Key != "inv-c1" || c1.Category != "billing" || c1.Action != "Created" || c1.Format != "cloudevents" ||
			!c1.Time.Equal(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)) {
			t.Errorf("stored %+v", c1)
		}
		if c5 := got["c5"]; c5.Time.IsZero() || !c5.Time.Equal(c5.ReceivedAt) {
			t.Errorf("an event without a time: time %s, received %s; want the time it was stored", c5.Time, c5.ReceivedAt)
		}

		// All or nothing: one event failing the catalog fails the batch.
		bad := batch(cloudEvent("c6", "billing.InvoiceCreated", invoiceData("inv-6", 6)), cloudEvent("c7", "billing.InvoiceCreated", `{"id":"inv-7","amount_cents":"seven"}`))
		a = b.do(t, http.MethodPost, "/", relaySecret, wire.ContentTypeCloudEventBatch, bad)
		if a.decode(t, &ans); a.status != http.StatusUnprocessableEntity || len(ans.Failed) != 1 || ans.Failed[0].Index != 1 ||
			ans.Failed[0].ID != "c7" || ans.Error == nil || ans.Error.Code != ingest.CodeValidation {
			t.Errorf("invalid batch: %d %s", a.status, a.body)
		}
		if n := len(b.all(t)); n != 4 {
			t.Errorf("%d events stored, want 4: a refused batch stores nothing", n)
		}
	})
}

// TestIngestTenantBoundKey: a key bound to a tenant posts that tenant's
// events only: events naming none get its tenant, a post naming another is
// refused whole (403), which the relay reads as misconfigured, not as bad
// events.
func TestIngestTenantBoundKey(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, newStore func(t *testing.T) eventsapi.Store) {
		b := setupAPI(t, apiOptions{store: newStore(t)})
		for _, tc := range []struct {
			what, path, contentType, body string
			headers                       []string
			want                          int
		}{
			{"bc-events, no tenant", "/events", "application/json", briteInvoice("inv-1", 1), []string{wire.HeaderIdempotencyKey, "t1"}, http.StatusCreated},
			{"bc-events, its tenant", "/events", "application/json", briteInvoice("inv-2", 2), []string{wire.HeaderIdempotencyKey, "t2", wire.HeaderTenant, "acme"}, http.StatusCreated},
			{"bc-events, another tenant", "/events", "application/json", briteInvoice("inv-3", 3), []string{wire.HeaderIdempotencyKey, "t3", wire.HeaderTenant, "globex"}, http.StatusForbidden},
			{"bc-events bulk, another tenant", "/events/bulk/", "application/json", batch(briteInvoice("inv-4", 4)), []string{wire.HeaderEventIDs, "t4", wire.HeaderTenant, "globex"}, http.StatusForbidden},
			{"CloudEvents, none and its own", "/", wire.ContentTypeCloudEventBatch,
				batch(cloudEvent("t5", "billing.InvoiceCreated", invoiceData("inv-5", 5)), cloudEvent("t6", "billing.InvoiceCreated", invoiceData("inv-6", 6), "tenant", "acme")), nil, http.StatusAccepted},
			{"CloudEvents, one of another tenant", "/", wire.ContentTypeCloudEventBatch,
				batch(cloudEvent("t7", "billing.InvoiceCreated", invoiceData("inv-7", 7)), cloudEvent("t8", "billing.InvoiceCreated", invoiceData("inv-8", 8), "tenant", "globex")), nil, http.StatusForbidden},
			{"CloudEvents single, another tenant", "/", wire.ContentTypeCloudEvent, cloudEvent("t9", "billing.InvoiceCreated", invoiceData("inv-9", 9), "tenant", "globex"), nil, http.StatusForbidden},
		} {
			a := b.do(t, http.MethodPost, tc.path, acmeIngest, tc.contentType, tc.body, tc.headers...)
			if a.status != tc.want {
				t.Errorf("%s: %d %s, want %d", tc.what, a.status, a.body, tc.want)
			}
			if a.status == http.StatusForbidden {
				var e ingest.ErrorBody
				if a.decode(t, &e); e.Error.Code != ingest.CodeForbidden || e.ErrorType != ingest.CodeForbidden || !strings.Contains(e.Error.Message, "globex") {
					t.Errorf("%s: %s, want the other tenant named", tc.what, a.body)
				}
			}
		}
		evs := b.all(t)
		if ids(evs) != "t1,t2,t5,t6" {
			t.Errorf("stored %s, want t1,t2,t5,t6", ids(evs))
		}
		for _, ev := range evs {
			if ev.Tenant != "acme" {
				t.Errorf("event %s of tenant %q, want acme", ev.ID, ev.Tenant)
			}
		}
		// An unbound key posts any tenant's events.
		a := b.do(t, http.MethodPost, "/events", relaySecret, "application/json", briteInvoice("inv-3", 3), wire.HeaderIdempotencyKey, "t3", wire.HeaderTenant, "globex")
		if a.status != http.StatusCreated {
			t.Errorf("relay key, globex: %d %s", a.status, a.body)
		}
	})
}

// TestIngestBadInput: what cannot be taken is refused with the error object,
// and the bc-events fields on the bc-events routes; nothing is stored.
func TestIngestBadInput(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, newStore func(t *testing.T) eventsapi.Store) {
		b := setupAPI(t, apiOptions{store: newStore(t), config: func(c *eventsapi.Config) { c.MaxBodyBytes = 1 << 20 }})
		long := strings.Repeat("x", ingest.MaxIDBytes+1)
		many := make([]string, wire.BriteBulkMax+1)
		for i := range many {
			many[i] = briteInvoice(fmt.Sprint("inv-", i), i)
		}
		for _, tc := range []struct {
			what, path, contentType, body string
			headers                       []string
			want                          int
			code                          string
		}{
			{"body too large", "/events", "application/json", strings.Repeat(" ", 1<<20+1), nil, http.StatusRequestEntityTooLarge, ingest.CodePayloadTooLarge},
			{"malformed JSON", "/events", "application/json", `{"category":`, nil, http.StatusBadRequest, ingest.CodeBadRequest},
			{"field EVENT_SCHEMA lacks", "/events", "application/json", strings.Replace(briteInvoice("inv-1", 1), `"data"`, `"id":"x","data"`, 1), nil, http.StatusBadRequest, ingest.CodeBadRequest},
			{"name in another spelling", "/events", "application/json", strings.Replace(briteInvoice("inv-1", 1), `"Created"`, `"created"`, 1), nil, http.StatusUnprocessableEntity, ingest.CodeValidation},
			{"id too long", "/events", "application/json", briteInvoice("inv-1", 1), []string{wire.HeaderIdempotencyKey, long}, http.StatusUnprocessableEntity, ingest.CodeValidation},
			{"dedupe key for no event", "/events", "application/json", briteInvoice("inv-1", 1), []string{wire.HeaderIdempotencyKey, "e1", wire.HeaderDedupeKeys, "e2=k"}, http.StatusBadRequest, ingest.CodeBadRequest},
			{"dedupe key without ids", "/events/bulk/", "application/json", batch(briteInvoice("inv-1", 1)), []string{wire.HeaderDedupeKeys, "e1=k"}, http.StatusBadRequest, ingest.CodeBadRequest},
			{"malformed dedupe keys", "/events", "application/json", briteInvoice("inv-1", 1), []string{wire.HeaderIdempotencyKey, "e1", wire.HeaderDedupeKeys, "k"}, http.StatusBadRequest, ingest.CodeBadRequest},
			{"ids for other records", "/events/bulk/", "application/json", batch(briteInvoice("inv-1", 1)), []string{wire.HeaderEventIDs, "e1,e2"}, http.StatusBadRequest, ingest.CodeBadRequest},
			{"too many records", "/events/bulk/", "application/json", batch(many...), nil, http.StatusBadRequest, ingest.CodeBadRequest},
			{"bulk record breaking EVENT_SCHEMA", "/events/bulk/", "application/json", batch(briteInvoice("inv-1", 1), strings.Replace(briteInvoice("inv-2", 2), `"service"`, `"robot"`, 1)), nil, http.StatusUnprocessableEntity, ingest.CodeValidation},
			{"not CloudEvents", "/", "application/json", batch(cloudEvent("c1", "billing.InvoiceCreated", invoiceData("inv-1", 1))), nil, http.StatusUnsupportedMediaType, ingest.CodeUnsupportedMediaType},
			{"CloudEvent without type", "/", wire.ContentTypeCloudEvent, `{"specversion":"1.0","id":"c1","source":"s","data":{"id":"1"}}`, nil, http.StatusBadRequest, ingest.CodeBadRequest},
			{"CloudEvent dedupe key too long", "/", wire.ContentTypeCloudEvent, cloudEvent("c1", "billing.InvoiceCreated", invoiceData("inv-1", 1), "dedupekey", strings.Repeat("k", ingest.MaxKeyBytes+1)), nil, http.StatusUnprocessableEntity, ingest.CodeValidation},
		} {
			a := b.do(t, http.MethodPost, tc.path, relaySecret, tc.contentType, tc.body, tc.headers...)
			var e ingest.ErrorBody
			a.decode(t, &e)
			if a.status != tc.want || e.Error.Code != tc.code || e.Error.Message == "" {
				t.Errorf("%s: %d %.200s, want %d %s", tc.what, a.status, a.body, tc.want, tc.code)
			}
			if strings.HasPrefix(tc.path, "/events") && (e.ErrorType != tc.code || e.ErrorMessage != e.Error.Message) {
				t.Errorf("%s: %.200s, want the bc-events errorType and errorMessage", tc.what, a.body)
			}
		}
		if a := b.do(t, http.MethodPost, "/events/bulk/", relaySecret, "application/json", batch(briteInvoice("inv-1", 1), `{"category":"billing",,}`)); !strings.Contains(a.body, "record 1") {
			t.Errorf("malformed bulk record: %d %s, want record 1 named", a.status, a.body)
		}
		if evs := b.all(t); len(evs) != 0 {
			t.Errorf("stored %s", ids(evs))
		}
	})
}

// countingStore counts Append calls and the events each carried.
type countingStore struct {
	eventsapi.Store
	mu      sync.Mutex
	appends []int
	fail    error
}

func (s *countingStore) Append(ctx context.Context, evs []eventsapi.Event) ([]eventsapi.Appended, error) {
	s.mu.Lock()
	s.appends = append(s.appends, len(evs))
	fail := s.fail
	s.mu.Unlock()
	if fail != nil {
		return nil, fail
	}
	return s.Store.Append(ctx, evs)
}

// TestIngestOneAppendPerPost: a post of many events is one Append, so one
// transaction and one wake-up of the subscribers; a store that fails is
// answered 503, which the relay retries.
func TestIngestOneAppendPerPost(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, newStore func(t *testing.T) eventsapi.Store) {
		st := &countingStore{Store: newStore(t)}
		b := setupAPI(t, apiOptions{store: st})
		b.do(t, http.MethodPost, "/events/bulk/", relaySecret, "application/json", batch(briteInvoice("inv-1", 1), briteInvoice("inv-2", 2), briteInvoice("inv-3", 3)))
		b.do(t, http.MethodPost, "/", relaySecret, wire.ContentTypeCloudEventBatch,
			batch(cloudEvent("c1", "billing.InvoiceCreated", invoiceData("inv-1", 1)), cloudEvent("c2", "billing.InvoiceCreated", invoiceData("inv-2", 2))))
		st.mu.Lock()
		if fmt.Sprint(st.appends) != "[3 2]" {
			t.Errorf("Append calls of %v events, want [3 2]", st.appends)
		}
		st.fail = context.DeadlineExceeded
		st.mu.Unlock()
		a := b.do(t, http.MethodPost, "/events", relaySecret, "application/json", briteInvoice("inv-4", 4))
		if a.status != http.StatusServiceUnavailable || a.errorCode(t) != ingest.CodeUnavailable || a.header.Get("Retry-After") == "" {
			t.Errorf("store failing: %d %s %v", a.status, a.body, a.header)
		}
	})
}

// TestIngestEventSchemaWithoutRegistry: with no topic catalog the envelope
// rules of EVENT_SCHEMA still apply; only the topic and the data's schema go
// unchecked.
func TestIngestEventSchemaWithoutRegistry(t *testing.T) {
	t.Parallel()
	b := setupAPI(t, apiOptions{})
	for _, tc := range []struct {
		body string
		want int
	}{
		{strings.Replace(briteInvoice("inv-1", 1), "Invoice", "Spaceship", 1), http.StatusCreated},
		{strings.Replace(briteInvoice("inv-1", 1), `"billing"`, `"Billing"`, 1), http.StatusUnprocessableEntity},
		{strings.Replace(briteInvoice("inv-1", 1), `"billing-service"`, `"bill"`, 1), http.StatusUnprocessableEntity},
		{strings.Replace(briteInvoice("inv-1", 1), `{"id":"inv-1","amount_cents":1}`, `{}`, 1), http.StatusUnprocessableEntity},
	} {
		if a := b.do(t, http.MethodPost, "/events", relaySecret, "application/json", tc.body); a.status != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.body, a.status, a.body, tc.want)
		}
	}
}

// BenchmarkIngestCloudEventsBatch posts batches of 1000 CloudEvents, as the
// relay does, to a server on a memory store over real HTTP. The first 16
// posts are new events, later ones duplicates: -benchtime 16x measures
// storing only.
func BenchmarkIngestCloudEventsBatch(b *testing.B) {
	st, err := eventsapi.NewMemoryStore(&eventsapi.MemoryStoreConfig{Capacity: 10_000})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := eventsapi.New(&eventsapi.Config{Store: st, Keys: testKeys(b), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Close()
	const n = 1000
	bodies := make([]string, 0, 16)
	for j := range cap(bodies) {
		evs := make([]string, n)
		for i := range evs {
			evs[i] = cloudEvent(fmt.Sprintf("b%d-%d", j, i), "billing.InvoiceCreated", invoiceData(fmt.Sprint("inv-", i), i), "tenant", "acme")
		}
		bodies = append(bodies, batch(evs...))
	}
	b.ResetTimer()
	for i := range b.N {
		req, _ := http.NewRequest(http.MethodPost, hs.URL+"/", strings.NewReader(bodies[i%len(bodies)]))
		req.Header.Set("Content-Type", wire.ContentTypeCloudEventBatch)
		req.Header.Set("Authorization", "Bearer "+relaySecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("%d", resp.StatusCode)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
}
