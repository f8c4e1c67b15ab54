package eventsapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// The matching rule of targets, as a table: events published at every kind
// of place, and for each subscription scope the events it receives. The
// answers are written out, not computed with Target.Matches, so that the
// table checks the rule itself; every reader of targets (Matcher, the
// stores' reads, the query API, SSE, WebSocket) is held to it.

// targetEvents are the places events are published at, by name: none, the
// collection c1, its project p1, p1's layouts l1 and l2, c1's sibling
// project p2 and its layout l3, another collection c2, and a place in c2
// whose project and layout ids repeat those of c1 (ids are scoped by their
// parents, so it is another place).
var targetEvents = []struct {
	name   string
	target Target
}{
	{"none", Target{}},
	{"c1", Target{Collection: "c1"}},
	{"c1/p1", Target{Collection: "c1", Project: "p1"}},
	{"c1/p1/l1", Target{Collection: "c1", Project: "p1", Layout: "l1"}},
	{"c1/p1/l2", Target{Collection: "c1", Project: "p1", Layout: "l2"}},
	{"c1/p2", Target{Collection: "c1", Project: "p2"}},
	{"c1/p2/l3", Target{Collection: "c1", Project: "p2", Layout: "l3"}},
	{"c2", Target{Collection: "c2"}},
	{"c2/p1/l1", Target{Collection: "c2", Project: "p1", Layout: "l1"}},
}

// targetCases are subscription scopes and the events (by name) each
// receives.
var targetCases = []struct {
	sub      Target
	receives []string
}{
	// No target: every event.
	{Target{}, []string{"none", "c1", "c1/p1", "c1/p1/l1", "c1/p1/l2", "c1/p2", "c1/p2/l3", "c2", "c2/p1/l1"}},
	// A collection: its own events and those of every place under it.
	{Target{Collection: "c1"}, []string{"c1", "c1/p1", "c1/p1/l1", "c1/p1/l2", "c1/p2", "c1/p2/l3"}},
	// A project: its collection's, its own, its layouts'; not a sibling's.
	{Target{Collection: "c1", Project: "p1"}, []string{"c1", "c1/p1", "c1/p1/l1", "c1/p1/l2"}},
	{Target{Collection: "c1", Project: "p2"}, []string{"c1", "c1/p2", "c1/p2/l3"}},
	// A layout: its collection's, its project's, its own; not a sibling's.
	{Target{Collection: "c1", Project: "p1", Layout: "l1"}, []string{"c1", "c1/p1", "c1/p1/l1"}},
	{Target{Collection: "c1", Project: "p1", Layout: "l2"}, []string{"c1", "c1/p1", "c1/p1/l2"}},
	// Another collection: nothing of c1, though ids below repeat.
	{Target{Collection: "c2"}, []string{"c2", "c2/p1/l1"}},
	{Target{Collection: "c2", Project: "p1", Layout: "l1"}, []string{"c2", "c2/p1/l1"}},
	// A place nothing was published at, under c1: what is above it.
	{Target{Collection: "c1", Project: "p9"}, []string{"c1"}},
}

// targetCorpus returns one event per place of targetEvents, in that order.
func targetCorpus() []Event {
	evs := make([]Event, len(targetEvents))
	for i, te := range targetEvents {
		evs[i] = testEvent("billing", "Invoice", "Created", te.name)
		evs[i].Target = te.target
	}
	return evs
}

// keysOf returns the events' keys, which targetCorpus sets to their place.
func keysOf(evs []Event) []string {
	out := make([]string, len(evs))
	for i := range evs {
		out[i] = evs[i].Key
	}
	return out
}

// complement returns the places of targetEvents not in names, in order.
func complement(names []string) []string {
	var out []string
	for _, te := range targetEvents {
		if !slices.Contains(names, te.name) {
			out = append(out, te.name)
		}
	}
	return out
}

func TestTargetMatchesTable(t *testing.T) {
	t.Parallel()
	evs := targetCorpus()
	for _, tc := range targetCases {
		var got []string
		for i := range evs {
			if tc.sub.Matches(evs[i].Target) {
				got = append(got, evs[i].Key)
			}
		}
		if !slices.Equal(got, tc.receives) {
			t.Errorf("Target %q: Matches %v, want %v", tc.sub, got, tc.receives)
		}
		// The Matcher of an include selector selects the same; an
		// exclude selector the rest.
		for _, exclude := range []bool{false, true} {
			f, want := Filter{Include: []Selector{{Target: tc.sub}}}, tc.receives
			if exclude {
				f, want = Filter{Exclude: []Selector{{Target: tc.sub}}}, complement(tc.receives)
			}
			m := MustCompile(f)
			got = nil
			for i := range evs {
				if m.Match(&evs[i]) {
					got = append(got, evs[i].Key)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("Target %q, exclude %v: Matcher selects %v, want %v", tc.sub, exclude, got, want)
			}
		}
	}
}

// testStoreTargetMatching: a store's Read selects by target what the table
// says, with the target in an include selector, an exclude selector, and
// beside another field; the Postgres store does it in SQL.
func testStoreTargetMatching(t *testing.T, k storeKind) {
	s, _ := openStore(t, k)
	mustAppend(t, s, targetCorpus()...)
	for _, tc := range targetCases {
		for _, f := range []struct {
			filter Filter
			want   []string
		}{
			{Filter{Include: []Selector{{Target: tc.sub}}}, tc.receives},
			{Filter{Exclude: []Selector{{Target: tc.sub}}}, complement(tc.receives)},
			{Filter{Include: []Selector{{Target: tc.sub, Key: []string{"c1*"}}}}, slices.DeleteFunc(slices.Clone(tc.receives), func(k string) bool { return !strings.HasPrefix(k, "c1") })},
		} {
			got := keysOf(mustRead(t, s, &ReadRequest{Match: MustCompile(f.filter), Limit: 100}))
			if len(f.want) == 0 {
				f.want = nil
			}
			if len(got) == 0 {
				got = nil
			}
			if !slices.Equal(got, f.want) {
				t.Errorf("filter %+v: Read %v, want %v", f.filter, got, f.want)
			}
		}
	}
}

// targetSentinels returns an event at the place of each of targetCases,
// keyed "sentinel" and the place.
func targetSentinels() []Event {
	evs := make([]Event, len(targetCases))
	for i, tc := range targetCases {
		evs[i] = testEvent("audit", "Check", "Done", "sentinel "+tc.sub.String())
		evs[i].Target = tc.sub
	}
	return evs
}

// untilSentinel reads events with next until the sentinel at sub arrives,
// and returns the keys of those before it that are not sentinels. It reads
// at most as many events as there are table events and sentinels.
func untilSentinel(t *testing.T, sub Target, next func() Event) []string {
	t.Helper()
	var keys []string
	for range len(targetEvents) + len(targetCases) {
		ev := next()
		if ev.Key == "sentinel "+sub.String() {
			return keys
		}
		if !strings.HasPrefix(ev.Key, "sentinel ") {
			keys = append(keys, ev.Key)
		}
	}
	t.Fatalf("subscription at %q: no sentinel after %v", sub, keys)
	return nil
}

// invalidTargetQueries are filter parameters naming a target that skips a
// level or is too long.
var invalidTargetQueries = []string{
	"project=p1",
	"layout=l1",
	"collection=c1&layout=l1",
	"exclude_project=p1",
	"collection=" + strings.Repeat("c", MaxTargetBytes+1),
	"collection=c1&collection=c2",
}

// targetQuery is the query parameters of a subscription at t.
func targetQuery(t Target) string {
	q := url.Values{}
	for i, v := range [...]string{t.Collection, t.Project, t.Layout} {
		if v != "" {
			q.Set(targetNames[i], v)
		}
	}
	return q.Encode()
}

// The query API selects by target as the table says, and refuses a filter
// whose target skips a level.
func TestTargetQueryAPI(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil, envOptions{})
	appendEvents(t, env.store, targetCorpus()...)
	for _, tc := range targetCases {
		resp, err := env.client.Get(env.url + "/api/events?limit=100&" + targetQuery(tc.sub))
		if err != nil {
			t.Fatal(err)
		}
		var page EventsPage
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%q: %s, %v", tc.sub, resp.Status, err)
		}
		if got := keysOf(page.Events); !slices.Equal(got, tc.receives) {
			t.Errorf("?%s: %v, want %v", targetQuery(tc.sub), got, tc.receives)
		}
		for _, ev := range page.Events {
			if place := cmp.Or(ev.Target.String(), "none"); place != ev.Key {
				t.Errorf("event at %s served with target %+v", ev.Key, ev.Target)
			}
		}
	}
	for _, q := range invalidTargetQueries {
		resp, err := env.client.Get(env.url + "/api/events?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("?%.60s: %s, want 400", q, resp.Status)
		}
	}
}

// An SSE stream at a target receives exactly the events the table says.
// After the table's events, a sentinel event is published at each
// subscription's place; a subscription has received all it will of the
// table once its own sentinel arrives. (The others' sentinels it may
// receive are not part of the table, and skipped.)
func TestTargetSSE(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil, envOptions{})
	streams := make([]*sseStream, len(targetCases))
	for i, tc := range targetCases {
		streams[i] = openStream(t, env, "/api/stream?"+targetQuery(tc.sub), nil)
		if _, err := streams[i].read(); err != nil { // the opening retry and id
			t.Fatal(err)
		}
	}
	appendEvents(t, env.store, targetCorpus()...)
	appendEvents(t, env.store, targetSentinels()...)
	for i, tc := range targetCases {
		got := untilSentinel(t, tc.sub, func() Event { return streams[i].events(1)[0] })
		if !slices.Equal(got, tc.receives) {
			t.Errorf("stream ?%s: %v, want %v", targetQuery(tc.sub), got, tc.receives)
		}
	}
	for _, q := range invalidTargetQueries {
		s, resp := tryStream(t, env, "/api/stream?"+q, nil)
		if s != nil {
			t.Fatalf("?%.60s: a stream opened", q)
		}
		var body subscribeError
		err := json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusBadRequest || body.Code != codeInvalidFilter {
			t.Errorf("?%.60s: %s %+v, %v; want 400 %s", q, resp.Status, body, err, codeInvalidFilter)
		}
	}
}

// A WebSocket subscription with a target selector receives exactly what the
// table says (the same sentinel as TestTargetSSE), and a selector whose
// target skips a level, or is not an object of the three levels, is an
// invalid_filter error.
func TestTargetWebSocket(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil, envOptions{})
	clients := make([]*wsClient, len(targetCases))
	for i, tc := range targetCases {
		clients[i] = dialWS(t, env)
		clients[i].start()
		clients[i].subscribe("at", []Selector{{Target: tc.sub}}, nil)
	}
	appendEvents(t, env.store, targetCorpus()...)
	appendEvents(t, env.store, targetSentinels()...)
	for i, tc := range targetCases {
		c, read := clients[i], 0
		got := untilSentinel(t, tc.sub, func() Event {
			read++
			return c.waitEvents(read)[read-1]
		})
		if !slices.Equal(got, tc.receives) {
			t.Errorf("subscription at %q: %v, want %v", tc.sub, got, tc.receives)
		}
	}

	c := dialWS(t, env)
	c.start()
	for i, target := range []string{
		`{"layout":"l1"}`, `{"project":"p1"}`, `{"collection":"c1","layout":"l1"}`,
		`{"collection":"` + strings.Repeat("c", MaxTargetBytes+1) + `"}`,
		`{"collection":"c1","tenant":"t"}`, `"c1/p1"`, `["c1"]`,
	} {
		ref := string(rune('a' + i))
		c.sendRaw(`{"type":"subscribe","id":"bad","ref":"` + ref + `","include":[{"target":` + target + `}]}`)
		c.expectError(codeInvalidFilter, `"`+ref+`"`)
	}
}

// targetServer is a server whose resolver knows layouts l1 (of project p1)
// and l2 (of p2), both in collection c1; project p3 makes it fail.
func targetServer(t *testing.T) *testEnv {
	hierarchy := map[string]Target{
		"l1": {Collection: "c1", Project: "p1", Layout: "l1"},
		"l2": {Collection: "c1", Project: "p2", Layout: "l2"},
	}
	resolve := TargetResolverFunc(func(_ context.Context, t Target) (Target, error) {
		switch {
		case t.Layout != "":
			if full, ok := hierarchy[t.Layout]; ok {
				return full, nil
			}
			return Target{}, errors.Join(ErrInvalidTarget, errors.New("no such layout"))
		case t.Project == "p3":
			return Target{}, errors.New("directory unavailable")
		case t.Project != "":
			for _, full := range hierarchy {
				if full.Project == t.Project {
					return Target{Collection: full.Collection, Project: t.Project}, nil
				}
			}
			return Target{}, errors.Join(ErrInvalidTarget, errors.New("no such project"))
		}
		return t, nil
	})
	return newTestEnv(t, &Config{TargetResolver: resolve}, envOptions{})
}

func TestResolveTarget(t *testing.T) {
	t.Parallel()
	srv := targetServer(t).srv
	plain := newTestEnv(t, nil, envOptions{}).srv
	for _, tc := range []struct {
		in, want Target
		resolver bool
		err      string // "" ok, "invalid" ErrInvalidTarget, "fail" another error
	}{
		{Target{}, Target{}, true, ""},
		{Target{Layout: "l1"}, Target{Collection: "c1", Project: "p1", Layout: "l1"}, true, ""},
		{Target{Project: "p1", Layout: "l1"}, Target{Collection: "c1", Project: "p1", Layout: "l1"}, true, ""},
		{Target{Collection: "c1", Project: "p1", Layout: "l1"}, Target{Collection: "c1", Project: "p1", Layout: "l1"}, true, ""},
		{Target{Project: "p2"}, Target{Collection: "c1", Project: "p2"}, true, ""},
		{Target{Collection: "c7"}, Target{Collection: "c7"}, true, ""},
		{Target{Project: "p2", Layout: "l1"}, Target{}, true, "invalid"},      // l1 is p1's
		{Target{Collection: "c2", Layout: "l1"}, Target{}, true, "invalid"},   // l1 is c1's
		{Target{Layout: "l9"}, Target{}, true, "invalid"},                     // unknown
		{Target{Project: "p3"}, Target{}, true, "fail"},                       // the resolver fails
		{Target{Layout: strings.Repeat("l", 300)}, Target{}, true, "invalid"}, // too long
		{Target{Layout: "l1"}, Target{}, false, "invalid"},
		{Target{Collection: "c1", Project: "p1"}, Target{Collection: "c1", Project: "p1"}, false, ""},
	} {
		s := plain
		if tc.resolver {
			s = srv
		}
		got, err := s.resolveTarget(t.Context(), tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("resolver %v: %s: %+v, %v; want %+v", tc.resolver, tc.in.describe(), got, err, tc.want)
		case tc.err == "invalid" && !errors.Is(err, ErrInvalidTarget):
			t.Errorf("resolver %v: %s: %+v, %v; want ErrInvalidTarget", tc.resolver, tc.in.describe(), got, err)
		case tc.err == "fail" && (err == nil || errors.Is(err, ErrInvalidTarget)):
			t.Errorf("resolver %v: %s: %v; want a failure", tc.resolver, tc.in.describe(), err)
		}
	}
}

// Ingest completes targets with the resolver, refuses the targets it
// contradicts (422, naming the event), and asks for a retry when it fails.
func TestIngestResolvesTargets(t *testing.T) {
	t.Parallel()
	env := targetServer(t)
	ce := func(id, ext string) string {
		return `{"specversion":"1.0","id":"` + id + `","source":"s","type":"billing.InvoiceCreated","data":{"id":"inv-1"}` + ext + `}`
	}
	postCE := func(body string) (int, string) {
		resp, err := env.client.Post(env.url+"/cloudevents", "application/cloudevents-batch+json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := postCE("[" + ce("e1", `,"targetlayout":"l1"`) + "," + ce("e2", `,"targetproject":"p2"`) + "]"); code != http.StatusAccepted {
		t.Fatalf("%d %s", code, body)
	}
	for id, want := range map[string]Target{"e1": {Collection: "c1", Project: "p1", Layout: "l1"}, "e2": {Collection: "c1", Project: "p2"}} {
		if ev, err := env.store.Get(t.Context(), "", id); err != nil || ev.Target != want {
			t.Errorf("%s stored at %+v, %v; want %+v", id, ev.Target, err, want)
		}
	}
	if code, body := postCE("[" + ce("e3", "") + "," + ce("e4", `,"targetproject":"p2","targetlayout":"l1"`) + "]"); code != http.StatusUnprocessableEntity || !strings.Contains(body, `"id":"e4"`) {
		t.Errorf("a contradicted target: %d %s, want 422 naming e4", code, body)
	}
	if code, body := postCE("[" + ce("e5", `,"targetproject":"p3"`) + "]"); code != http.StatusServiceUnavailable || strings.Contains(body, "directory") {
		t.Errorf("a failing resolver: %d %s, want 503 without its error", code, body)
	}

	// bc-events: the header's target, completed, on every event.
	req, _ := http.NewRequest(http.MethodPost, env.url+"/events", strings.NewReader(
		`{"category":"billing","entity":"Invoice","action":"Created","data":{"id":"inv-1"},"actor":{"id":"user-4711","type":"user"}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "b1")
	req.Header.Set("X-Txoutbox-Target", "layout=l2")
	resp, err := env.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ev, err := env.store.Get(t.Context(), "", "b1"); resp.StatusCode != http.StatusCreated || err != nil || ev.Target != (Target{Collection: "c1", Project: "p2", Layout: "l2"}) {
		t.Errorf("bc-events post: %s, stored %+v, %v", resp.Status, ev.Target, err)
	}
	for _, id := range []string{"e3", "e4", "e5"} {
		if _, err := env.store.Get(t.Context(), "", id); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: %v, want it not stored", id, err)
		}
	}
}
