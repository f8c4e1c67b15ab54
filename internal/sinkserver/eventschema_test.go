package sinkserver_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/internal/sinkserver"
	"github.com/txoutbox/txoutbox/internal/testlog"
	"github.com/txoutbox/txoutbox/internal/wire"
)

// The rules of EVENT_SCHEMA, the JSON Schema the bc-events Python client
// checks every body against before it posts it, and which the events API
// enforces (bc_events/constants.py in the bc-events client):
//
//   - exactly the fields category, entity, action, data and actor, all
//     required: the API rejects any other field;
//   - category: a string matching ^[a-z]+$ (billing);
//   - entity: a string matching ^([A-Z][a-z]+)+$, StudlyCaps (LineItem);
//   - action: a string matching ^[A-Z][a-z]+$, a capitalised past-tense
//     verb (Created);
//   - data: an object with at least one property;
//   - actor: an object with id, a string of at least 5 characters, and type,
//     one of user, service or third-party; other fields inside actor are
//     allowed.
//
// Names are matched exactly: a lookup that accepts created or my_entity is
// the Go publishing API's convenience, not part of the wire.

// schemaBody builds a bc-events body from the valid one, with a field's raw
// JSON value replaced, or the field removed when the value is "".
func schemaBody(field, value string) string {
	fields := []struct{ k, v string }{
		{"category", `"billing"`},
		{"entity", `"Invoice"`},
		{"action", `"Created"`},
		{"data", `{"id":"inv-1","amount_cents":1}`},
		{"actor", `{"id":"user-4711","type":"user"}`},
	}
	var parts []string
	for _, f := range fields {
		v := f.v
		if f.k == field {
			v = value
		}
		if v != "" {
			parts = append(parts, fmt.Sprintf("%q:%s", f.k, v))
		}
	}
	if field != "" && !strings.Contains(`category entity action data actor`, field) {
		parts = append(parts, fmt.Sprintf("%q:%s", field, value))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

var eventSchemaCases = []struct {
	name   string
	body   string
	accept bool
}{
	{"valid", schemaBody("", ""), true},

	{"category lower case", schemaBody("category", `"billing"`), true},
	{"category capitalised", schemaBody("category", `"Billing"`), false},
	{"category upper case", schemaBody("category", `"TESTING"`), false},
	{"category with underscore", schemaBody("category", `"bill_ing"`), false},
	{"category with digit", schemaBody("category", `"billing2"`), false},
	{"category empty", schemaBody("category", `""`), false},
	{"category not a string", schemaBody("category", `7`), false},
	{"category null", schemaBody("category", `null`), false},
	{"category missing", schemaBody("category", ``), false},
	// Python's re.search, which jsonschema uses, lets $ match before a
	// final newline, so the client would let this one through; the sink
	// refuses it, as a name with a newline is never meant.
	{"category trailing newline", schemaBody("category", `"billing\n"`), false},

	{"entity one word", schemaBody("entity", `"Invoice"`), true},
	{"entity StudlyCaps", schemaBody("entity", `"LineItem"`), true},
	{"entity lower case", schemaBody("entity", `"test"`), false},
	{"entity camelCase", schemaBody("entity", `"lineItem"`), false},
	{"entity upper case", schemaBody("entity", `"INVOICE"`), false},
	{"entity snake case", schemaBody("entity", `"line_item"`), false},
	{"entity single capital", schemaBody("entity", `"A"`), false},
	{"entity ending in a capital", schemaBody("entity", `"InvoiceA"`), false},
	{"entity empty", schemaBody("entity", `""`), false},
	{"entity missing", schemaBody("entity", ``), false},

	{"action capitalised", schemaBody("action", `"Created"`), true},
	{"action lower case", schemaBody("action", `"created"`), false},
	{"action upper case", schemaBody("action", `"CREATED"`), false},
	{"action two words", schemaBody("action", `"ReCreated"`), false},
	{"action single capital", schemaBody("action", `"C"`), false},
	{"action empty", schemaBody("action", `""`), false},
	{"action missing", schemaBody("action", ``), false},

	{"data nested", schemaBody("data", `{"id":"inv-1","lines":[{"n":1}],"meta":{}}`), true},
	{"data empty object", schemaBody("data", `{}`), false},
	{"data empty object with spaces", schemaBody("data", `{ }`), false},
	{"data array", schemaBody("data", `[{"id":"inv-1"}]`), false},
	{"data empty array", schemaBody("data", `[]`), false},
	{"data string", schemaBody("data", `"inv-1"`), false},
	{"data number", schemaBody("data", `1`), false},
	{"data null", schemaBody("data", `null`), false},
	{"data missing", schemaBody("data", ``), false},

	{"actor service", schemaBody("actor", `{"id":"billing-service","type":"service"}`), true},
	{"actor third-party", schemaBody("actor", `{"id":"stripe","type":"third-party"}`), true},
	{"actor id of 5 characters", schemaBody("actor", `{"id":"abcde","type":"user"}`), true},
	{"actor id of 5 characters in 10 bytes", schemaBody("actor", `{"id":"ééééé","type":"user"}`), true},
	{"actor extra fields", schemaBody("actor", `{"id":"user-4711","type":"user","name":"Ada","roles":["admin"]}`), true},
	{"actor id of 4 characters", schemaBody("actor", `{"id":"abcd","type":"user"}`), false},
	{"actor id of 4 characters in 8 bytes", schemaBody("actor", `{"id":"éééé","type":"user"}`), false},
	{"actor id a number", schemaBody("actor", `{"id":12345,"type":"user"}`), false},
	{"actor id missing", schemaBody("actor", `{"type":"user"}`), false},
	{"actor type unknown", schemaBody("actor", `{"id":"user-4711","type":"robot"}`), false},
	{"actor type capitalised", schemaBody("actor", `{"id":"user-4711","type":"User"}`), false},
	{"actor type missing", schemaBody("actor", `{"id":"user-4711"}`), false},
	{"actor a string", schemaBody("actor", `"user-4711"`), false},
	{"actor null", schemaBody("actor", `null`), false},
	{"actor missing", schemaBody("actor", ``), false},

	{"extra top-level field", schemaBody("id", `"ev-1"`), false},
	{"extra top-level job id", schemaBody("jobId", `"job-1"`), false},
	{"not an object", `["billing","Invoice","Created"]`, false},
}

// newBareServer is a server with no Registry: only the wire's rules apply.
func newBareServer(t *testing.T, cfg *sinkserver.Config) (*sinkserver.Server, *httptest.Server) {
	t.Helper()
	srv, err := sinkserver.New(cfg)
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

// TestBriteEventSchema checks every body against both routes of a server
// without a Registry, and the rejected ones against a server with one too:
// what EVENT_SCHEMA rejects gets a 4xx, what it accepts a 2xx.
func TestBriteEventSchema(t *testing.T) {
	t.Parallel()
	_, bare := newBareServer(t, nil)
	_, withTopics := newServer(t, nil)
	for i, tc := range eventSchemaCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			servers := map[string]string{"no registry": bare.URL}
			if !tc.accept {
				servers["registry"] = withTopics.URL
			}
			for name, url := range servers {
				hdr := map[string]string{wire.HeaderIdempotencyKey: fmt.Sprintf("single-%d", i)}
				a := post(t, url+"/events", "application/json", hdr, tc.body)
				if got := a.status/100 == 2; got != tc.accept || (!tc.accept && a.status/100 != 4) {
					t.Errorf("%s: POST /events: %d %s", name, a.status, a.body)
				}
				hdr = map[string]string{wire.HeaderEventIDs: fmt.Sprintf("bulk-%d", i)}
				a = post(t, url+"/events/bulk/", "application/json", hdr, "["+tc.body+"]")
				if tc.accept {
					if a.status/100 != 2 || !strings.Contains(a.body, `"failedRecords":0`) {
						t.Errorf("%s: POST /events/bulk/: %d %s, want the record accepted", name, a.status, a.body)
					}
				} else if a.status/100 != 4 || !strings.Contains(a.body, "record 0") {
					t.Errorf("%s: POST /events/bulk/: %d %s, want 4xx naming record 0", name, a.status, a.body)
				}
			}
		})
	}
}

// TestBriteNamesNotRenamed: names in another spelling than the topic's are
// refused, by a server with a Registry too, and nothing is stored.
func TestBriteNamesNotRenamed(t *testing.T) {
	t.Parallel()
	srv, hs := newServer(t, nil)
	for _, body := range []string{
		schemaBody("action", `"created"`),
		schemaBody("category", `"TESTING"`),
		schemaBody("entity", `"test"`),
		schemaBody("entity", `"invoice"`),
	} {
		if a := post(t, hs.URL+"/events", "application/json", nil, body); a.status != http.StatusUnprocessableEntity || !strings.Contains(a.body, sinkserver.BriteErrValidation) {
			t.Errorf("POST /events %s: %d %s, want 422 %s", body, a.status, a.body, sinkserver.BriteErrValidation)
		}
		if a := post(t, hs.URL+"/events/bulk/", "application/json", nil, "["+body+"]"); a.status != http.StatusUnprocessableEntity || !strings.Contains(a.body, sinkserver.BriteErrValidation) {
			t.Errorf("POST /events/bulk/ %s: %d %s, want 422 %s", body, a.status, a.body, sinkserver.BriteErrValidation)
		}
	}
	if evs := srv.Events(0, 10); len(evs) != 0 {
		t.Errorf("stored %+v", evs)
	}
}

// TestBriteEnvelopeWithoutRegistry: with no topic file the envelope rules
// still apply; only the topic and the data's schema go unchecked.
func TestBriteEnvelopeWithoutRegistry(t *testing.T) {
	t.Parallel()
	srv, hs := newBareServer(t, nil)
	for _, body := range []string{
		schemaBody("action", `"created"`),
		schemaBody("actor", `{"id":"abcd","type":"user"}`),
		schemaBody("actor", `{"id":"user-4711","type":"robot"}`),
		schemaBody("data", `{}`),
	} {
		if a := post(t, hs.URL+"/events", "application/json", nil, body); a.status/100 != 4 {
			t.Errorf("POST /events %s: %d %s, want 4xx", body, a.status, a.body)
		}
	}
	unknown := schemaBody("entity", `"Spaceship"`)
	if a := post(t, hs.URL+"/events", "application/json", nil, unknown); a.status != http.StatusCreated {
		t.Errorf("unknown topic, no registry: %d %s, want 201", a.status, a.body)
	}
	if evs := srv.Events(0, 10); len(evs) != 1 || evs[0].Topic != "billing.SpaceshipCreated" {
		t.Errorf("stored %+v", evs)
	}
}

// TestBriteActorExtraFields: fields inside actor besides id and type are
// allowed, with or without a Registry.
func TestBriteActorExtraFields(t *testing.T) {
	t.Parallel()
	_, bare := newBareServer(t, nil)
	_, withTopics := newServer(t, nil)
	body := schemaBody("actor", `{"id":"user-4711","type":"user","name":"Ada","tenant":{"id":"t1"}}`)
	for _, url := range []string{bare.URL, withTopics.URL} {
		if a := post(t, url+"/events", "application/json", nil, body); a.status != http.StatusCreated {
			t.Errorf("POST /events: %d %s", a.status, a.body)
		}
		if a := post(t, url+"/events/bulk/", "application/json", nil, "["+body+"]"); a.status != http.StatusCreated || !strings.Contains(a.body, `"failedRecords":0`) {
			t.Errorf("POST /events/bulk/: %d %s", a.status, a.body)
		}
	}
}

// TestBriteSingleEventID: a single post is answered with the stored event's
// id: the Idempotency-Key the relay sent, or the id the server gave it.
func TestBriteSingleEventID(t *testing.T) {
	t.Parallel()
	srv, hs := newServer(t, nil)
	var got wire.BriteCreated
	a := post(t, hs.URL+"/events", "application/json", map[string]string{wire.HeaderIdempotencyKey: "0190f5e0-0000-7000-8000-000000000001"}, britePayment)
	if err := json.Unmarshal([]byte(a.body), &got); err != nil || a.status != http.StatusCreated || got.EventID != "0190f5e0-0000-7000-8000-000000000001" {
		t.Errorf("with Idempotency-Key: %d %s", a.status, a.body)
	}
	a = post(t, hs.URL+"/events", "application/json", nil, briteInvoice("inv-1", 1))
	if err := json.Unmarshal([]byte(a.body), &got); err != nil || a.status != http.StatusCreated || got.EventID == "" {
		t.Fatalf("without Idempotency-Key: %d %s", a.status, a.body)
	}
	if evs := srv.Events(0, 10); len(evs) != 2 || evs[1].ID != got.EventID {
		t.Errorf("answered eventId %q, stored %+v", got.EventID, evs)
	}
}

// TestBriteBulkErrorsNameRecord: whatever is wrong with a record of a bulk
// post, the answer says which record.
func TestBriteBulkErrorsNameRecord(t *testing.T) {
	t.Parallel()
	srv, hs := newServer(t, nil)
	ok := briteInvoice("inv-1", 1)
	for name, record := range map[string]string{
		"malformed JSON": `{"category":"billing",,}`,
		"extra field":    schemaBody("id", `"ev-1"`),
		"wrong type":     schemaBody("category", `7`),
		"missing field":  schemaBody("actor", ``),
		"bad name":       schemaBody("action", `"created"`),
		"short actor id": schemaBody("actor", `{"id":"abcd","type":"user"}`),
		"empty data":     schemaBody("data", `{}`),
		"not an object":  `"billing.InvoiceCreated"`,
		"unknown topic":  schemaBody("entity", `"Spaceship"`),
		"data schema":    schemaBody("data", `{"id":"inv-2","amount_cents":-1}`),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			a := post(t, hs.URL+"/events/bulk/", "application/json", nil, "["+ok+","+ok+","+record+"]")
			if !strings.Contains(a.body, `"index":2`) && !strings.Contains(a.body, "record 2") {
				t.Errorf("%d %s, want record 2 named", a.status, a.body)
			}
		})
	}
	srv.FailNextRecords(1, wire.BriteErrThroughputExceeded)
	a := post(t, hs.URL+"/events/bulk/", "application/json", nil, "["+briteInvoice("inv-9", 9)+"]")
	if !strings.Contains(a.body, `"index":0`) || !strings.Contains(a.body, wire.BriteErrThroughputExceeded) {
		t.Errorf("injected record fault: %d %s, want record 0 named", a.status, a.body)
	}
}

// TestRejectionsShown: a rejected event is logged and streamed to the live
// page as an accepted one is shown, not only counted.
func TestRejectionsShown(t *testing.T) {
	t.Parallel()
	logger, log := testlog.New()
	srv, hs := newServer(t, &sinkserver.Config{Logger: logger})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, hs.URL+"/api/stream?rejections=true", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()

	post(t, hs.URL+"/events", "application/json", map[string]string{wire.HeaderIdempotencyKey: "ev-bad-name"}, schemaBody("action", `"created"`))
	post(t, hs.URL+"/events/bulk/", "application/json", map[string]string{wire.HeaderEventIDs: "ev-ok,ev-bad-data"},
		"["+briteInvoice("inv-1", 1)+","+briteInvoice("inv-2", -1)+"]")
	post(t, hs.URL+"/events", "application/json", nil, `{"category":`)

	lines := bufio.NewScanner(resp.Body)
	var rejected []string
	for len(rejected) < 3 && lines.Scan() {
		if lines.Text() != "event: rejected" || !lines.Scan() {
			continue
		}
		rejected = append(rejected, lines.Text())
	}
	if len(rejected) != 3 || !strings.Contains(rejected[0], "ev-bad-name") || !strings.Contains(rejected[1], "ev-bad-data") ||
		!strings.Contains(rejected[1], `"index":1`) || !strings.Contains(rejected[2], "malformed JSON") {
		t.Errorf("streamed rejections %q", rejected)
	}
	for _, want := range []string{"ev-bad-name", "ev-bad-data", "/amount_cents", "malformed JSON"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, log.String())
		}
	}
	if st := srv.Stats(); st.Rejected != 2 || st.BadRequests != 1 || st.Accepted != 1 {
		t.Errorf("stats %+v", st)
	}
	_ = srv.Close()
}
