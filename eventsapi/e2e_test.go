package eventsapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/internal/wire"
)

// The tests of this file go through the access path a deployment has:
// Server.ServeHTTP with keys, over real HTTP and WebSocket connections.

// Secrets of e2eKeys.
const (
	e2eIngest  = "e2e-ingest-0123456789"  // ingest, every tenant
	e2eWatch   = "e2e-watch-0123456789"   // subscribe, every tenant
	e2eAcme    = "e2e-acme-0123456789"    // subscribe and query, tenant acme
	e2eGlobex  = "e2e-globex-0123456789"  // subscribe, tenant globex
	e2eQuery   = "e2e-query-0123456789"   // query, every tenant
	e2eUnknown = "e2e-unknown-0123456789" // no key
)

func e2eKeys(t testing.TB) *Keys {
	t.Helper()
	keys, err := NewKeys(
		Key{Name: "ingest", Rights: []Right{RightIngest}, SecretSHA256: HashSecret(e2eIngest)},
		Key{Name: "watch", Rights: []Right{RightSubscribe}, SecretSHA256: HashSecret(e2eWatch)},
		Key{Name: "acme", Tenant: "acme", Rights: []Right{RightSubscribe, RightQuery}, SecretSHA256: HashSecret(e2eAcme)},
		Key{Name: "globex", Tenant: "globex", Rights: []Right{RightSubscribe}, SecretSHA256: HashSecret(e2eGlobex)},
		Key{Name: "query", Rights: []Right{RightQuery}, SecretSHA256: HashSecret(e2eQuery)},
	)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// bearer returns the header of a request made with secret.
func bearer(secret string) http.Header {
	return http.Header{"Authorization": {"Bearer " + secret}}
}

// postEvents posts evs to the server at base as one CloudEvents batch with
// secret, and fails the test unless every event is accepted.
func postEvents(t testing.TB, client *http.Client, base, secret string, evs ...Event) {
	t.Helper()
	ws := make([]wire.Event, len(evs))
	for i := range evs {
		ev := &evs[i]
		ws[i] = wire.Event{ID: ev.ID, Topic: ev.Topic, Data: ev.Data, Key: ev.Key, Tenant: ev.Tenant,
			ActorID: "user-4711", ActorType: "user", Source: "e2e"}
	}
	body, err := wire.AppendCloudEventBatch(nil, ws)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, base+"/cloudevents", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", wire.ContentTypeCloudEventBatch)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := client.Do(req)
	if err != nil {
		t.Error(err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var ans struct{ Accepted, Duplicates int }
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(b, &ans) != nil || ans.Accepted != len(evs) || ans.Duplicates != 0 {
		t.Errorf("POST /cloudevents of %d events: %s %s", len(evs), resp.Status, b)
	}
}

// getTicket gets a ticket with secret from POST /api/tickets.
func getTicket(t testing.TB, env *testEnv, secret string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, env.url+"/api/tickets", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := env.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans ticketAnswer
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || resp.StatusCode != http.StatusCreated || ans.Ticket == "" {
		t.Fatalf("POST /api/tickets: %s, %v", resp.Status, err)
	}
	return ans.Ticket
}

// tenantEvent is a test event of tenant.
func tenantEvent(tenant, key string) Event {
	ev := testEvent("billing", "Invoice", "Created", key)
	ev.Tenant = tenant
	return ev
}

// TestAccessEndToEnd opens streams and WebSockets the ways clients do —
// a bearer key, a ticket from POST /api/tickets — and checks who is refused
// and that a tenant's key receives its tenant's events only, events
// ingested through the HTTP API.
func TestAccessEndToEnd(t *testing.T) {
	t.Parallel()
	forEachSubscriptionStore(t, testAccessEndToEnd)
}

func testAccessEndToEnd(t *testing.T, st Store) {
	env := newTestEnv(t, &Config{Store: st, Keys: e2eKeys(t)}, envOptions{})

	// Refusals, on both routes.
	refusals := []struct {
		name   string
		header http.Header
		query  string
		status int
	}{
		{"no credential", nil, "", http.StatusUnauthorized},
		{"unknown key", bearer(e2eUnknown), "", http.StatusUnauthorized},
		{"malformed Authorization", http.Header{"Authorization": {"Basic " + e2eWatch}}, "", http.StatusUnauthorized},
		{"unknown ticket", nil, "ticket=nope", http.StatusUnauthorized},
		{"no subscribe right", bearer(e2eQuery), "", http.StatusForbidden},
		{"ingest key", bearer(e2eIngest), "", http.StatusForbidden},
		{"another tenant", bearer(e2eAcme), "tenant=globex", http.StatusForbidden},
	}
	for _, tt := range refusals {
		path := "/api/stream"
		if tt.query != "" {
			path += "?" + tt.query
		}
		if s, resp := tryStream(t, env, path, tt.header); s != nil || resp.StatusCode != tt.status {
			t.Errorf("%s: GET %s: %s, want %d", tt.name, path, resp.Status, tt.status)
		} else if tt.status == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("%s: GET %s: 401 without a Bearer challenge", tt.name, path)
		}
		if tt.query != "" && !strings.HasPrefix(tt.query, "ticket=") {
			continue // the WebSocket takes its filters in messages
		}
		if _, resp, err := tryWSWith(t, env.url, env.client, tt.query, tt.header); err == nil || resp == nil || resp.StatusCode != tt.status {
			t.Errorf("%s: WebSocket: %v, %v; want %d", tt.name, resp, err, tt.status)
		}
	}

	// The subscribers.
	all := openStream(t, env, "/api/stream", bearer(e2eWatch))
	acmeKey := openStream(t, env, "/api/stream", bearer(e2eAcme))
	tk := getTicket(t, env, e2eAcme)
	acmeTicket := openStream(t, env, "/api/stream?ticket="+url.QueryEscape(tk), nil)
	// A ticket is good once.
	if s, resp := tryStream(t, env, "/api/stream?ticket="+url.QueryEscape(tk), nil); s != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a spent ticket: %s, want 401", resp.Status)
	}
	// Tickets open nothing else.
	if resp := getWithQuery(t, env, "/api/events?ticket="+url.QueryEscape(getTicket(t, env, e2eAcme))); resp != http.StatusUnauthorized {
		t.Errorf("GET /api/events with a ticket: %d, want 401", resp)
	}
	wsAcme, resp, err := tryWSWith(t, env.url, env.client, "ticket="+url.QueryEscape(getTicket(t, env, e2eAcme)), nil)
	if err != nil {
		t.Fatalf("WebSocket with a ticket: %v, %v", resp, err)
	}
	wsGlobex, resp, err := tryWSWith(t, env.url, env.client, "", bearer(e2eGlobex))
	if err != nil {
		t.Fatalf("WebSocket with a bearer key: %v, %v", resp, err)
	}
	for _, c := range []*wsClient{wsAcme, wsGlobex} {
		c.start()
		c.subscribe("all", nil, nil)
	}
	wsGlobex.send(map[string]any{"type": "subscribe", "id": "theirs", "tenant": "acme", "ref": 1})
	wsGlobex.expectError(codeForbidden, "1")

	evs := []Event{
		tenantEvent("acme", "a1"), tenantEvent("globex", "g1"), tenantEvent("", "n1"),
		tenantEvent("globex", "g2"), tenantEvent("acme", "a2"), tenantEvent("acme", "a1"),
	}
	postEvents(t, env.client, env.url, e2eIngest, evs[:3]...)
	postEvents(t, env.client, env.url, e2eIngest, evs[3:]...)
	tenantsOf := func(got []Event) []string {
		out := make([]string, len(got))
		for i := range got {
			out[i] = got[i].Tenant + ":" + got[i].Key
		}
		return out
	}
	want := map[string][]string{
		"every tenant":       {"acme:a1", "globex:g1", ":n1", "globex:g2", "acme:a2", "acme:a1"},
		"acme, key":          {"acme:a1", "acme:a2", "acme:a1"},
		"acme, ticket":       {"acme:a1", "acme:a2", "acme:a1"},
		"acme, WebSocket":    {"acme:a1", "acme:a2", "acme:a1"},
		"globex, WebSocket":  {"globex:g1", "globex:g2"},
		"acme, state":        {"acme:a2", "acme:a1"},
		"globex, from store": {"globex:g1", "globex:g2"},
	}
	got := map[string][]string{
		"every tenant":      tenantsOf(all.events(6)),
		"acme, key":         tenantsOf(acmeKey.events(3)),
		"acme, ticket":      tenantsOf(acmeTicket.events(3)),
		"acme, WebSocket":   tenantsOf(wsAcme.waitEvents(3)),
		"globex, WebSocket": tenantsOf(wsGlobex.waitEvents(2)),
	}
	wsAcme.send(map[string]any{"type": "state", "id": "all"})
	got["acme, state"] = tenantsOf(wsAcme.expect("state").Events)
	// A tenant's key resuming from the start reads its own from the store.
	wsGlobex2, _, err := tryWSWith(t, env.url, env.client, "", bearer(e2eGlobex))
	if err != nil {
		t.Fatal(err)
	}
	wsGlobex2.send(map[string]any{"type": "start", "last_event_id": 0})
	wsGlobex2.expect("session")
	wsGlobex2.subscribe("all", nil, nil)
	got["globex, from store"] = tenantsOf(wsGlobex2.waitEvents(2))
	for name, w := range want {
		if !slices.Equal(got[name], w) {
			t.Errorf("%s: %v, want %v", name, got[name], w)
		}
	}

	// Nothing more came to the tenants' subscribers: the next event of
	// theirs is the next they read.
	postEvents(t, env.client, env.url, e2eIngest, tenantEvent("globex", "g3"), tenantEvent("acme", "a3"))
	if ev := acmeKey.events(1)[0]; ev.Key != "a3" {
		t.Errorf("acme, key: then %s:%s, want acme:a3", ev.Tenant, ev.Key)
	}
	if ev := acmeTicket.events(1)[0]; ev.Key != "a3" {
		t.Errorf("acme, ticket: then %s:%s, want acme:a3", ev.Tenant, ev.Key)
	}
	if evs := wsAcme.waitEvents(4); evs[3].Key != "a3" {
		t.Errorf("acme, WebSocket: then %s:%s, want acme:a3", evs[3].Tenant, evs[3].Key)
	}
	if evs := wsGlobex.waitEvents(3); evs[2].Key != "g3" {
		t.Errorf("globex, WebSocket: then %s:%s, want globex:g3", evs[2].Tenant, evs[2].Key)
	}
}

// getWithQuery answers the status of GET path without a key.
func getWithQuery(t testing.TB, env *testEnv, path string) int {
	t.Helper()
	resp, err := env.client.Get(env.url + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestCloudEventsTopicParts: CloudEvents carry only the topic's name; the
// server stores its parts too (category, entity, action), with or without
// a topic catalog, so that filters on them select such events as they do
// bc-events ones.
func TestCloudEventsTopicParts(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, &Config{Keys: e2eKeys(t)}, envOptions{})
	s := openStream(t, env, "/api/stream?entity=LineItem", bearer(e2eWatch))
	ev := testEvent("billing", "LineItem", "Created", "li-1")
	foreign := testEvent("x", "Y", "Z", "f-1")
	foreign.Topic = "com.example.order.created" // not a txoutbox topic name: no parts
	postEvents(t, env.client, env.url, e2eIngest, foreign, ev)
	got := s.events(1)[0]
	if got.ID != ev.ID || got.Category != "billing" || got.Entity != "LineItem" || got.Action != "Created" {
		t.Errorf("stream: %s %q %q %q, want %s billing LineItem Created", got.ID, got.Category, got.Entity, got.Action, ev.ID)
	}
	stored, err := env.store.Get(t.Context(), "", foreign.ID)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Topic != foreign.Topic || stored.Category != "" || stored.Entity != "" || stored.Action != "" {
		t.Errorf("foreign topic stored as %q %q %q %q", stored.Topic, stored.Category, stored.Entity, stored.Action)
	}
}
