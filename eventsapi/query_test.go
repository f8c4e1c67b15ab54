package eventsapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/internal/ingest"
)

// queryT0 is the publish time of the query fixtures: event n was published
// n minutes later.
var queryT0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

func at(n int) string { return queryT0.Add(time.Duration(n) * time.Minute).Format(time.RFC3339) }

// queryFixture stores six events of two categories, three tenants (one
// event has none), and a spread of actors, jobs and causes.
func queryFixture(t *testing.T, st eventsapi.Store) {
	t.Helper()
	ev := func(n int, topic, key, tenant, actorID, actorType, job, cause string) eventsapi.Event {
		cat, rest, _ := strings.Cut(topic, ".")
		i := strings.LastIndexAny(rest, "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
		return eventsapi.Event{
			ID: fmt.Sprint("e", n), Topic: topic, Category: cat, Entity: rest[:i], Action: rest[i:], Key: key,
			Tenant: tenant, ActorID: actorID, ActorType: actorType, JobID: job, CausationID: cause,
			Time: queryT0.Add(time.Duration(n) * time.Minute), Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)),
		}
	}
	_, err := st.Append(t.Context(), []eventsapi.Event{
		ev(1, "billing.InvoiceCreated", "inv-1", "acme", "user-1", "user", "j1", ""),
		ev(2, "billing.InvoicePaid", "inv-1", "acme", "user-2", "user", "j1", "e1"),
		ev(3, "billing.PaymentReceived", "inv-1", "globex", "svc-1", "service", "j2", ""),
		ev(4, "shipping.ParcelSent", "p-1", "acme", "svc-1", "service", "j3", ""),
		ev(5, "shipping.ParcelDeleted", "p-2", "", "tp-1", "third-party", "j3", "e4"),
		ev(6, "billing.InvoiceDeleted", "inv-2", "globex", "user-1", "user", "j4", ""),
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestQueryFilters: every filter parameter, alone and combined, selects the
// events it says, in position order.
func TestQueryFilters(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, newStore func(t *testing.T) eventsapi.Store) {
		b := setupAPI(t, apiOptions{store: newStore(t)})
		queryFixture(t, b.store)
		for _, tc := range []struct{ query, want string }{
			{"", "e1,e2,e3,e4,e5,e6"},
			{"topic=billing.*", "e1,e2,e3,e6"},
			{"topic=*Created", "e1"},
			{"topic=billing.InvoiceCreated,shipping.ParcelSent", "e1,e4"},
			{"topic=billing.Invoice*&exclude_action=Deleted", "e1,e2"},
			{"topic=billing.Invoice*&topic=shipping.*", "e1,e2,e4,e5,e6"},
			{"category=shipping", "e4,e5"},
			{"entity=Invoice,Parcel", "e1,e2,e4,e5,e6"},
			{"action=Deleted", "e5,e6"},
			{"exclude_action=Deleted&exclude_category=shipping", "e1,e2,e3,e4,e6"}, // one selector: both
			{"exclude_action=Deleted", "e1,e2,e3,e4"},
			{"key=inv-1", "e1,e2,e3"},
			{"key=inv-*&exclude_key=inv-1", "e6"},
			{"tenant=acme", "e1,e2,e4"},
			{"tenant=globex&category=billing", "e3,e6"},
			{"actor_id=svc-1", "e3,e4"},
			{"actor_type=service&actor_type=third-party", "e3,e4,e5"},
			{"job_id=j3", "e4,e5"},
			{"causation_id=e1", "e2"},
			{"causation_id=e*", "e2,e5"},
			{"causation_id=*", "e1,e2,e3,e4,e5,e6"}, // * matches the empty string too
			{"since=" + at(2) + "&until=" + at(5), "e2,e3,e4"},
			{"since=" + at(6), "e6"},
			{"category=shipping&order=desc", "e5,e4"},
			{"category=nothing", ""},
		} {
			if got := ids(b.page(t, tc.query, adminSecret).Events); got != tc.want {
				t.Errorf("?%s: %s, want %s", tc.query, got, tc.want)
			}
		}
		if a := b.get(t, "/api/events?category=nothing", adminSecret); !strings.Contains(a.body, `"events":[]`) || strings.Contains(a.body, `"next"`) {
			t.Errorf("empty page: %s, want events [] and no next", a.body)
		}
	})
}

// TestQueryPaging: following next pages through every matching event once,
// in order, both ways, whatever the page size; after and before bound a
// window.
func TestQueryPaging(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, newStore func(t *testing.T) eventsapi.Store) {
		b := setupAPI(t, apiOptions{store: newStore(t)})
		var evs []eventsapi.Event
		for i := range 25 {
			topic := []string{"billing.InvoiceCreated", "shipping.ParcelSent", "billing.InvoicePaid"}[i%3]
			evs = append(evs, eventsapi.Event{ID: fmt.Sprintf("p%02d", i), Topic: topic, Key: fmt.Sprint("k", i%4), Data: json.RawMessage(`{}`)})
		}
		if _, err := b.store.Append(t.Context(), evs); err != nil {
			t.Fatal(err)
		}
		stored := b.all(t)
		var billing, billingDesc []string
		for _, ev := range stored {
			if strings.HasPrefix(ev.Topic, "billing.") {
				billing = append(billing, ev.ID)
				billingDesc = append([]string{ev.ID}, billingDesc...)
			}
		}
		for _, tc := range []struct {
			order, filter string
			want          []string
		}{
			{"asc", "", strings.Split(ids(stored), ",")},
			{"asc", "topic=billing.*", billing},
			{"desc", "topic=billing.*", billingDesc},
		} {
			for _, limit := range []int{1, 4, 16, 17, 100} {
				var got []string
				cursor := ""
				for pages := 0; ; pages++ {
					if pages > 30 {
						t.Fatalf("%s %s limit %d: more pages than events", tc.order, tc.filter, limit)
					}
					q := fmt.Sprintf("order=%s&limit=%d&%s", tc.order, limit, tc.filter)
					if cursor != "" {
						q += map[string]string{"asc": "&after=", "desc": "&before="}[tc.order] + cursor
					}
					p := b.page(t, q, adminSecret)
					if len(p.Events) > limit || (p.Next != "" && len(p.Events) != limit) {
						t.Fatalf("?%s: %d events, next %q", q, len(p.Events), p.Next)
					}
					for _, ev := range p.Events {
						got = append(got, ev.ID)
					}
					if p.Next == "" {
						break
					}
					if last := p.Events[len(p.Events)-1].Position; p.Next != strconv.FormatInt(last, 10) {
						t.Fatalf("?%s: next %q, want the last position %d", q, p.Next, last)
					}
					cursor = p.Next
				}
				if strings.Join(got, ",") != strings.Join(tc.want, ",") {
					t.Errorf("%s %s limit %d: paged %v, want %v", tc.order, tc.filter, limit, got, tc.want)
				}
			}
		}
		lo, hi := stored[5].Position, stored[10].Position
		if got := ids(b.page(t, fmt.Sprintf("after=%d&before=%d", lo, hi), adminSecret).Events); got != ids(stored[6:10]) {
			t.Errorf("after %d before %d: %s, want %s", lo, hi, got, ids(stored[6:10]))
		}
		if got := ids(b.page(t, fmt.Sprintf("after=%d&before=%d&order=desc&limit=2", lo, hi), adminSecret).Events); got != stored[9].ID+","+stored[8].ID {
			t.Errorf("window, descending: %s", got)
		}
		if p := b.page(t, "limit=100000", adminSecret); len(p.Events) != 25 {
			t.Errorf("limit above the most: %d events", len(p.Events))
		}
		if p := b.page(t, "", adminSecret); len(p.Events) != 25 || p.Next != "" {
			t.Errorf("default: %d events, next %q", len(p.Events), p.Next)
		}
	})
}

// TestQueryTenantIsolation: a key bound to a tenant sees that tenant's
// events only, by list or by id, whatever it asks for; a key for every
// tenant may narrow to one.
func TestQueryTenantIsolation(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, newStore func(t *testing.T) eventsapi.Store) {
		b := setupAPI(t, apiOptions{store: newStore(t)})
		queryFixture(t, b.store)
		for _, tc := range []struct{ secret, query, want string }{
			{acmeSecret, "", "e1,e2,e4"},
			{acmeSecret, "tenant=acme", "e1,e2,e4"},
			{acmeSecret, "topic=*&order=desc&limit=2", "e4,e2"},
			{acmeSecret, "key=inv-1", "e1,e2"},
			{globexSecret, "", "e3,e6"},
			{querySecret, "tenant=globex", "e3,e6"},
			{querySecret, "", "e1,e2,e3,e4,e5,e6"},
		} {
			if got := ids(b.page(t, tc.query, tc.secret).Events); got != tc.want {
				t.Errorf("key %s ?%s: %s, want %s", tc.secret[:4], tc.query, got, tc.want)
			}
		}
		// Paging never crosses into another tenant either.
		var got []string
		for after := "0"; after != ""; {
			p := b.page(t, "limit=1&after="+after, acmeSecret)
			for _, ev := range p.Events {
				got = append(got, ev.ID)
			}
			after = p.Next
		}
		if strings.Join(got, ",") != "e1,e2,e4" {
			t.Errorf("acme paging by one: %v", got)
		}
		if a := b.get(t, "/api/events?tenant=globex", acmeSecret); a.status != http.StatusForbidden || a.errorCode(t) != ingest.CodeForbidden {
			t.Errorf("acme asking for globex: %d %s, want 403", a.status, a.body)
		}
		for _, tc := range []struct {
			secret, id string
			want       int
		}{
			{acmeSecret, "e1", http.StatusOK},
			{acmeSecret, "e3", http.StatusNotFound}, // globex's
			{acmeSecret, "e5", http.StatusNotFound}, // no tenant's
			{globexSecret, "e3", http.StatusOK},
			{globexSecret, "e1", http.StatusNotFound},
			{querySecret, "e5", http.StatusOK},
			{querySecret, "nope", http.StatusNotFound},
		} {
			a := b.get(t, "/api/events/"+tc.id, tc.secret)
			if a.status != tc.want {
				t.Errorf("key %s GET %s: %d %s, want %d", tc.secret[:4], tc.id, a.status, a.body, tc.want)
				continue
			}
			var ev eventsapi.Event
			if a.decode(t, &ev); a.status == http.StatusOK && (ev.ID != tc.id || ev.Position <= 0) {
				t.Errorf("GET %s: %s", tc.id, a.body)
			}
			if a.status == http.StatusNotFound && a.errorCode(t) != ingest.CodeNotFound {
				t.Errorf("GET %s: %s", tc.id, a.body)
			}
		}
		if a := b.get(t, "/api/events/e1?tenant=globex", acmeSecret); a.status != http.StatusForbidden {
			t.Errorf("acme asking for e1 as globex: %d %s, want 403", a.status, a.body)
		}
		if a := b.get(t, "/api/events/e1?tenant=globex", querySecret); a.status != http.StatusNotFound {
			t.Errorf("e1 (acme's) asked for as globex's: %d %s, want 404", a.status, a.body)
		}
	})
}

// TestQueryBadParams: a parameter the API cannot take is answered 400 with
// the error object saying which; nothing is guessed.
func TestQueryBadParams(t *testing.T) {
	t.Parallel()
	b := setupAPI(t, apiOptions{})
	tooMany := strings.TrimSuffix(strings.Repeat("a,", eventsapi.MaxQueryValues+1), ",")
	for _, tc := range []struct{ query, mention string }{
		{"limit=0", "limit"},
		{"limit=-3", "limit"},
		{"limit=ten", "limit"},
		{"limit=1&limit=2", "limit"},
		{"after=-1", "after"},
		{"after=x", "after"},
		{"before=1.5", "before"},
		{"order=newest", "order"},
		{"since=yesterday", "since"},
		{"until=2026-13-01T00:00:00Z", "until"},
		{"since=" + at(5) + "&until=" + at(1), "until"},
		{"tenant=a&tenant=b", "tenant"},
		{"topic=" + tooMany, "topic"},
		{"topic=" + strings.Repeat("x", eventsapi.MaxPatternBytes+1), "topic"},
		{"tpoic=billing.*", "tpoic"},
		{"ticket=abc", "ticket"},
	} {
		a := b.get(t, "/api/events?"+tc.query, adminSecret)
		if a.status != http.StatusBadRequest || a.errorCode(t) != ingest.CodeBadRequest || !strings.Contains(a.body, tc.mention) {
			t.Errorf("?%.60s: %d %.200s, want 400 naming %s", tc.query, a.status, a.body, tc.mention)
		}
	}
	if a := b.get(t, "/api/events/e1?limit=1", adminSecret); a.status != http.StatusBadRequest {
		t.Errorf("GET /api/events/e1?limit=1: %d %s", a.status, a.body)
	}
	for _, tc := range []struct {
		secret string
		want   int
	}{{"", http.StatusUnauthorized}, {relaySecret, http.StatusForbidden}, {watchSecret, http.StatusForbidden}} {
		for _, path := range []string{"/api/events", "/api/events/e1"} {
			if a := b.get(t, path, tc.secret); a.status != tc.want {
				t.Errorf("GET %s with %q: %d, want %d", path, tc.secret, a.status, tc.want)
			}
		}
	}
}

// The filter parameters are FilterFromQuery's: a query it reads the same
// way selects the same events.
func TestQueryFilterParamsAreFilterFromQuery(t *testing.T) {
	t.Parallel()
	q := url.Values{"topic": {"billing.*"}, "exclude_action": {"Deleted"}, "tenant": {"acme"}}
	f, err := eventsapi.FilterFromQuery(q)
	if err != nil || len(f.Include) != 1 || len(f.Exclude) != 1 || f.Tenant != "acme" {
		t.Fatalf("FilterFromQuery = %+v, %v", f, err)
	}
	b := setupAPI(t, apiOptions{})
	queryFixture(t, b.store)
	m := eventsapi.MustCompile(f)
	var want []eventsapi.Event
	for _, ev := range b.all(t) {
		if m.Match(&ev) {
			want = append(want, ev)
		}
	}
	if got := ids(b.page(t, q.Encode(), adminSecret).Events); got != ids(want) || got == "" {
		t.Errorf("?%s: %s, want %s", q.Encode(), got, ids(want))
	}
}
