package eventsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/internal/pgtest"
)

// The store conformance suite: every Store implementation passes the same
// tests, each on fresh, empty storage.

// storeKind opens stores of one implementation.
type storeKind struct {
	name string
	// open returns n stores sharing one fresh, empty storage: n handles on
	// one MemoryStore, n PostgresStores on one database. They are closed in
	// t's cleanup.
	open func(t *testing.T, n int, clock *testClock) []Store
}

func storeKinds() []storeKind {
	return []storeKind{
		{name: "memory", open: func(t *testing.T, n int, clock *testClock) []Store {
			s, err := NewMemoryStore(&MemoryStoreConfig{NowFunc: clock.Now})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			stores := make([]Store, n)
			for i := range stores {
				stores[i] = s
			}
			return stores
		}},
		{name: "postgres", open: func(t *testing.T, n int, clock *testClock) []Store {
			pool := pgtest.NewPool(t)
			cfg := &PostgresStoreConfig{NowFunc: clock.Now, pruneBatch: 7}
			if err := MigratePostgres(t.Context(), pool, cfg); err != nil {
				t.Fatal(err)
			}
			stores := make([]Store, n)
			for i := range stores {
				s, err := NewPostgresStore(t.Context(), pool, cfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				stores[i] = s
			}
			return stores
		}},
	}
}

// testClock is a settable clock; it starts at a whole second, so that times
// survive PostgreSQL's microseconds unchanged.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.Set(time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC))
	return c
}

func (c *testClock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *testClock) Set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *testClock) Add(d time.Duration) { c.ns.Add(int64(d)) }

var storeTests = []struct {
	name string
	fn   func(t *testing.T, k storeKind)
}{
	{"AppendStoresEveryField", testStoreAppendStoresEveryField},
	{"AppendDuplicates", testStoreAppendDuplicates},
	{"ConcurrentDuplicates", testStoreConcurrentDuplicates},
	{"PositionsIncrease", testStorePositionsIncrease},
	{"ReadPages", testStoreReadPages},
	{"ReadMatchesFilter", testStoreReadMatchesFilter},
	{"TargetMatching", testStoreTargetMatching},
	{"Get", testStoreGet},
	{"Latest", testStoreLatest},
	{"HeadOldest", testStoreHeadOldest},
	{"PruneByCount", testStorePruneByCount},
	{"PruneByAge", testStorePruneByAge},
	{"HeadAfterPruningAll", testStoreHeadAfterPruningAll},
	{"Changed", testStoreChanged},
	{"Close", testStoreClose},
	{"ConcurrentAppendsVisibleInOrder", testStoreConcurrentAppendsVisibleInOrder},
}

func TestStoreConformance(t *testing.T) {
	t.Parallel()
	for _, k := range storeKinds() {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			for _, tt := range storeTests {
				t.Run(tt.name, func(t *testing.T) {
					t.Parallel()
					tt.fn(t, k)
				})
			}
		})
	}
}

func openStore(t *testing.T, k storeKind) (Store, *testClock) {
	clock := newTestClock()
	return k.open(t, 1, clock)[0], clock
}

// storeEvent returns an event with every envelope field set from n.
func storeEvent(n int) Event {
	s := strconv.Itoa(n)
	return Event{
		ID: "ev-" + s, Topic: "billing.InvoiceCreated", Category: "billing", Entity: "Invoice", Action: "Created",
		Key: "inv-" + s, Data: json.RawMessage(`{"n": ` + s + `}`),
	}
}

func mustAppend(t *testing.T, s Store, events ...Event) []Appended {
	t.Helper()
	out, err := s.Append(t.Context(), events)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	if len(out) != len(events) {
		t.Fatalf("Append answered %d events for %d", len(out), len(events))
	}
	return out
}

func mustRead(t *testing.T, s Store, req *ReadRequest) []Event {
	t.Helper()
	evs, err := s.Read(t.Context(), req)
	if err != nil {
		t.Fatalf("Read(%+v): %v", *req, err)
	}
	return evs
}

func positionsOf(evs []Event) []int64 {
	out := make([]int64, len(evs))
	for i := range evs {
		out[i] = evs[i].Position
	}
	return out
}

// sameEvent compares events as a store returns them: times by instant.
func sameEvent(a, b Event) bool {
	a.Time, b.Time = a.Time.UTC(), b.Time.UTC()
	a.ReceivedAt, b.ReceivedAt = a.ReceivedAt.UTC(), b.ReceivedAt.UTC()
	return reflect.DeepEqual(a, b)
}

func testStoreAppendStoresEveryField(t *testing.T, k storeKind) {
	s, clock := openStore(t, k)
	full := Event{
		ID: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", Topic: "billing.InvoiceCreated", Category: "billing",
		Entity: "Invoice", Action: "Created", Key: "inv-1", Tenant: "acme", ActorID: "user-123", ActorType: "user",
		JobID: "job-1", CausationID: "0190a1b2-0000-7000-8000-000000000000", DedupeKey: "create-inv-1",
		Source: "billing-api", Traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Format: "briteevents", Target: Target{Collection: "acme", Project: "q4-close", Layout: "ledger"}, Time: time.Date(2026, 12, 1, 9, 30, 0, 123456000, time.FixedZone("CET", 3600)),
		// Spacing and key order are kept: the data is served as published.
		Data: json.RawMessage(`{"id": "inv-1",  "amount":{"value":10,"currency":"EUR"}, "a":"\u00e9\u0000"}`),
	}
	bare := Event{ID: "bare", Topic: "t.XY", Category: "t", Entity: "X", Action: "Y"} // no time, no data

	if out, err := s.Append(t.Context(), nil); err != nil || len(out) != 0 {
		t.Fatalf("Append(nil) = %v, %v; want nothing, no error", out, err)
	}
	out := mustAppend(t, s, full, bare)
	if out[0].Duplicate || out[1].Duplicate || out[0].Position <= 0 || out[1].Position <= out[0].Position {
		t.Fatalf("Append answered %+v; want two new, increasing positions", out)
	}
	got := mustRead(t, s, &ReadRequest{})
	want := []Event{full, bare}
	want[0].Position, want[0].ReceivedAt = out[0].Position, clock.Now()
	want[1].Position, want[1].ReceivedAt, want[1].Time = out[1].Position, clock.Now(), clock.Now()
	if len(got) != 2 || !sameEvent(got[0], want[0]) || !sameEvent(got[1], want[1]) {
		t.Fatalf("Read returned\n%+v\nwant\n%+v", got, want)
	}
}

func testStoreAppendDuplicates(t *testing.T, k storeKind) {
	s, _ := openStore(t, k)
	ev := func(id, tenant, dedupe string) Event {
		e := storeEvent(0)
		e.ID, e.Tenant, e.DedupeKey = id, tenant, dedupe
		return e
	}
	first := mustAppend(t, s, ev("a", "", ""))
	head, _ := s.Head(t.Context())

	out := mustAppend(t, s,
		ev("a", "", ""),         // 0: the stored a
		ev("b", "", ""),         // 1: new
		ev("b", "", ""),         // 2: b again, in the same call
		ev("d", "t1", "k"),      // 3: new
		ev("e", "t1", "k"),      // 4: d's dedupe key in d's tenant
		ev("f", "t2", "k"),      // 5: the same dedupe key in another tenant: new
		ev("g", "", "k"),        // 6: and without a tenant: new
		ev("h", "t1", "x"),      // 7: new
		ev("i", "t1", "x"),      // 8: h's dedupe key
		ev("i", "t1", "y"),      // 9: i was not stored (8 was a duplicate): new
		ev("j", "t1", "y"),      // 10: 9's dedupe key
		ev("a", "other", "new"), // 11: a's id, whatever the rest
	)
	wantDup := map[int]int{0: -1, 2: 1, 4: 3, 8: 7, 10: 9, 11: -1} // duplicate → of which (-1: first)
	var last int64 = head
	for i, a := range out {
		of, dup := wantDup[i]
		switch {
		case dup && !a.Duplicate:
			t.Errorf("event %d stored at %d; want a duplicate", i, a.Position)
		case dup && of < 0 && a.Position != first[0].Position:
			t.Errorf("event %d is a duplicate of %d; want %d", i, a.Position, first[0].Position)
		case dup && of >= 0 && a.Position != out[of].Position:
			t.Errorf("event %d is a duplicate of %d; want %d (event %d)", i, a.Position, out[of].Position, of)
		case !dup && a.Duplicate:
			t.Errorf("event %d answered duplicate of %d; want stored", i, a.Position)
		case !dup && a.Position <= last:
			t.Errorf("event %d stored at %d, not after %d", i, a.Position, last)
		case !dup:
			last = a.Position
		}
	}
	stored := mustRead(t, s, &ReadRequest{After: head})
	if got, want := len(stored), len(out)-len(wantDup); got != want {
		t.Errorf("%d events stored; want %d", got, want)
	}

	// An Append of duplicates only stores nothing and moves nothing.
	head, _ = s.Head(t.Context())
	again := mustAppend(t, s, ev("a", "", ""), ev("zz", "t1", "k"))
	if !again[0].Duplicate || !again[1].Duplicate || again[1].Position != out[3].Position {
		t.Errorf("Append of duplicates answered %+v", again)
	}
	if h, _ := s.Head(t.Context()); h != head {
		t.Errorf("Head moved from %d to %d on duplicates", head, h)
	}
	select {
	case <-s.Changed(head):
		if k.name == "memory" { // a PostgresStore may wake spuriously
			t.Error("Changed fired for duplicates")
		}
	default:
	}
}

// testStoreConcurrentDuplicates appends the same events from 8 goroutines
// at once (through 4 stores when they can be distinct): each is stored once,
// and every answer for an id names the same position.
func testStoreConcurrentDuplicates(t *testing.T, k storeKind) {
	stores := k.open(t, 4, newTestClock())
	const ids = 20
	answers := make([][]Appended, 8)
	var wg sync.WaitGroup
	for g := range answers {
		wg.Go(func() {
			evs := make([]Event, ids)
			for i := range evs {
				evs[i] = storeEvent((i + g) % ids) // each goroutine in another order
				evs[i].DedupeKey = "k" + strconv.Itoa((i+g)%ids)
			}
			out, err := stores[g%len(stores)].Append(t.Context(), evs)
			if err != nil {
				t.Error(err)
				return
			}
			// Back to id order.
			answers[g] = make([]Appended, ids)
			for i, a := range out {
				answers[g][(i+g)%ids] = a
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i := range ids {
		stored := 0
		for g := range answers {
			if !answers[g][i].Duplicate {
				stored++
			}
			if answers[g][i].Position != answers[0][i].Position {
				t.Errorf("id %d: answered position %d and %d", i, answers[g][i].Position, answers[0][i].Position)
			}
		}
		if stored != 1 {
			t.Errorf("id %d stored %d times", i, stored)
		}
	}
	if got := mustRead(t, stores[0], &ReadRequest{}); len(got) != ids {
		t.Errorf("%d events stored; want %d", len(got), ids)
	}
}

func testStorePositionsIncrease(t *testing.T, k storeKind) {
	s, _ := openStore(t, k)
	var last int64
	for i := range 30 {
		evs := make([]Event, 1+i%4)
		for j := range evs {
			evs[j] = storeEvent(i*10 + j)
		}
		for _, a := range mustAppend(t, s, evs...) {
			if a.Position <= last {
				t.Fatalf("position %d after %d", a.Position, last)
			}
			last = a.Position
		}
	}
	if h, err := s.Head(t.Context()); err != nil || h != last {
		t.Errorf("Head = %d, %v; want %d", h, err, last)
	}
}

// corpus appends n events of varied envelopes and returns them as stored.
func corpus(t *testing.T, s Store, n int) []Event {
	t.Helper()
	topics := []struct{ cat, ent, act string }{
		{"billing", "Invoice", "Created"}, {"billing", "Invoice", "Paid"}, {"billing", "Payment_Method", "Deleted"},
		{"crm", "Contact", "Created"}, {"crm", "Contact%", "Merged"}, {"crm", "Deal", "Won"},
	}
	keys := []string{"inv-1", "inv-2", "inv_3", "inv%4", `inv\5`, "€1", ""}
	tenants := []string{"", "acme", "globex"}
	actors := []string{"user-1", "user-2", "svc-billing", ""}
	evs := make([]Event, n)
	for i := range evs {
		tp := topics[i%len(topics)]
		evs[i] = Event{
			ID: fmt.Sprintf("c-%04d", i), Topic: tp.cat + "." + tp.ent + tp.act, Category: tp.cat, Entity: tp.ent, Action: tp.act,
			Key: keys[i%len(keys)], Tenant: tenants[i%len(tenants)], ActorID: actors[i%len(actors)],
			ActorType: []string{"user", "service"}[i%2], JobID: "job-" + strconv.Itoa(i%5),
			Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute),
			Data: json.RawMessage(`{}`),
		}
	}
	for i := 0; i < n; i += 100 {
		mustAppend(t, s, evs[i:min(i+100, n)]...)
	}
	got := mustRead(t, s, &ReadRequest{Limit: n})
	if len(got) != n {
		t.Fatalf("read %d of %d events", len(got), n)
	}
	return got
}

// expect returns what Read(req) should return from all, by the definition.
func expect(all []Event, req *ReadRequest, limit int) []Event {
	var out []Event
	for i := range all {
		ev := all[i]
		if ev.Position > req.After && (req.Before == 0 || ev.Position < req.Before) && req.Match.Match(&ev) {
			out = append(out, ev)
		}
	}
	if req.Descending {
		slices.Reverse(out)
	}
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}

func testStoreReadPages(t *testing.T, k storeKind) {
	s, _ := openStore(t, k)
	all := corpus(t, s, 60)
	mid := all[30].Position

	// Paging forward with After, backward with Before, seven at a time.
	for _, m := range []*Matcher{nil, MustCompile(Filter{Include: []Selector{{Topic: []string{"crm.*"}}}})} {
		var pages []Event
		for after := int64(0); ; {
			page := mustRead(t, s, &ReadRequest{After: after, Limit: 7, Match: m})
			if len(page) == 0 {
				break
			}
			pages = append(pages, page...)
			after = page[len(page)-1].Position
		}
		if want := expect(all, &ReadRequest{Match: m}, len(all)); !reflect.DeepEqual(positionsOf(pages), positionsOf(want)) {
			t.Errorf("forward pages %v; want %v", positionsOf(pages), positionsOf(want))
		}
		pages = nil
		for before := int64(0); ; {
			page := mustRead(t, s, &ReadRequest{Before: before, Descending: true, Limit: 7, Match: m})
			if len(page) == 0 {
				break
			}
			pages = append(pages, page...)
			before = page[len(page)-1].Position
		}
		if want := expect(all, &ReadRequest{Descending: true, Match: m}, len(all)); !reflect.DeepEqual(positionsOf(pages), positionsOf(want)) {
			t.Errorf("backward pages %v; want %v", positionsOf(pages), positionsOf(want))
		}
	}

	for _, req := range []ReadRequest{
		{After: all[10].Position, Before: mid, Limit: 100},
		{After: all[10].Position, Before: mid, Descending: true, Limit: 5},
		{Before: all[3].Position, Limit: 100},
		{After: all[59].Position, Limit: 100},
		{After: mid, Before: mid + 1, Limit: 100},
		{Limit: 3, Match: MustCompile(Filter{Tenant: "acme"})},
		{After: mid, Limit: 100, Descending: true, Match: MustCompile(Filter{Tenant: "globex", Include: []Selector{{Action: []string{"Created"}}}})},
	} {
		if got, want := mustRead(t, s, &req), expect(all, &req, req.Limit); !reflect.DeepEqual(positionsOf(got), positionsOf(want)) {
			t.Errorf("Read(%+v) = %v; want %v", req, positionsOf(got), positionsOf(want))
		}
	}

	// Few matches far apart: the limit is still reached.
	sparse := MustCompile(Filter{Include: []Selector{{Key: []string{"inv%4"}}}, Tenant: "acme"})
	if got, want := mustRead(t, s, &ReadRequest{Limit: 2, Match: sparse}), expect(all, &ReadRequest{Match: sparse}, 2); len(want) != 2 || !reflect.DeepEqual(positionsOf(got), positionsOf(want)) {
		t.Errorf("sparse Read = %v; want %v", positionsOf(got), positionsOf(want))
	}
}

// testStoreReadMatchesFilter reads with random filters and checks the store
// returns exactly what Matcher.Match selects: for PostgresStore, that the
// filter's SQL form means what the filter means (globs with LIKE's special
// characters, exclusions, tenants, times).
func testStoreReadMatchesFilter(t *testing.T, k storeKind) {
	s, _ := openStore(t, k)
	all := corpus(t, s, 120)
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(vs ...string) []string {
		n := 1 + rng.IntN(2)
		out := make([]string, n)
		for i := range out {
			out[i] = vs[rng.IntN(len(vs))]
		}
		return out
	}
	selector := func() Selector {
		var sel Selector
		switch rng.IntN(6) {
		case 0:
			sel.Topic = pick("billing.*", "*Created", "crm.Contact%Merged", "*.*_*", "crm.*%*", "billing.InvoicePaid", "*")
		case 1:
			sel.Key = pick("inv-1", "inv_*", "inv%4", `inv\*`, "inv*", "€*", "\xe2*", "*\x00*", "inv?3")
		case 2:
			sel.Entity, sel.Action = pick("Invoice", "Contact%", "Pay*"), pick("Created", "*e*", "Merged")
		case 3:
			sel.ActorID, sel.ActorType = pick("user-*", "svc-billing", "**"), pick("user", "service")
		case 4:
			sel.JobID = pick("job-1", "job-*", "*-3")
		default:
			sel.Category = pick("billing", "crm", "b*g")
		}
		return sel
	}
	for i := range 150 {
		var f Filter
		for range rng.IntN(3) {
			f.Include = append(f.Include, selector())
		}
		for range rng.IntN(2) {
			f.Exclude = append(f.Exclude, selector())
		}
		if rng.IntN(3) == 0 {
			f.Tenant = []string{"acme", "globex", "nobody"}[rng.IntN(3)]
		}
		if rng.IntN(3) == 0 {
			f.Since = all[rng.IntN(len(all))].Time.Add(time.Duration(rng.IntN(3)-1) * 500 * time.Nanosecond)
		}
		if rng.IntN(3) == 0 {
			f.Until = all[rng.IntN(len(all))].Time.Add(time.Duration(rng.IntN(3)-1) * 500 * time.Nanosecond)
			if !f.Since.IsZero() && !f.Until.After(f.Since) {
				f.Until = time.Time{}
			}
		}
		m := MustCompile(f)
		req := ReadRequest{Match: m, Limit: 1 + rng.IntN(len(all)), Descending: rng.IntN(2) == 0}
		if got, want := mustRead(t, s, &req), expect(all, &req, req.Limit); !reflect.DeepEqual(positionsOf(got), positionsOf(want)) {
			t.Errorf("filter %d %+v: Read = %v; want %v", i, f, positionsOf(got), positionsOf(want))
		}
	}
}

func testStoreGet(t *testing.T, k storeKind) {
	s, _ := openStore(t, k)
	ev := storeEvent(1)
	ev.Tenant = "acme"
	pos := mustAppend(t, s, ev, storeEvent(2))[0].Position
	for _, tenant := range []string{"", "acme"} {
		got, err := s.Get(t.Context(), tenant, ev.ID)
		if err != nil || got.Position != pos || got.ID != ev.ID || got.Tenant != "acme" {
			t.Errorf("Get(%q, %q) = %+v, %v", tenant, ev.ID, got, err)
		}
	}
	for _, c := range []struct{ tenant, id string }{{"globex", ev.ID}, {"", "nope"}, {"acme", "ev-2"}, {"", "\x00"}} {
		if _, err := s.Get(t.Context(), c.tenant, c.id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q, %q) error %v; want ErrNotFound", c.tenant, c.id, err)
		}
	}
}

func testStoreLatest(t *testing.T, k storeKind) {
	s, _ := openStore(t, k)
	all := corpus(t, s, 90)
	// The newest event of each key stands for the rest; when a filter rejects
	// it, the newest one the filter accepts does.
	for _, f := range []Filter{
		{},
		{Include: []Selector{{Action: []string{"Created"}}}},
		{Include: []Selector{{Topic: []string{"billing.*"}}}, Exclude: []Selector{{Key: []string{"\xe2*"}}}}, // excludes €1
		{Tenant: "acme", Exclude: []Selector{{Entity: []string{"Deal"}}}},
		{Include: []Selector{{Key: []string{"nothing"}}}},
	} {
		m := MustCompile(f)
		latest := map[string]Event{}
		for _, ev := range all {
			if ev.Key != "" && m.Match(&ev) {
				latest[ev.Key] = ev
			}
		}
		var want []Event
		for _, ev := range latest {
			want = append(want, ev)
		}
		slices.SortFunc(want, func(a, b Event) int { return int(a.Position - b.Position) })
		got, at, err := s.Latest(t.Context(), m)
		if err != nil {
			t.Fatalf("Latest(%+v): %v", f, err)
		}
		if at != all[len(all)-1].Position {
			t.Errorf("Latest(%+v) as of %d; want %d", f, at, all[len(all)-1].Position)
		}
		if !reflect.DeepEqual(positionsOf(got), positionsOf(want)) {
			t.Errorf("Latest(%+v) = %v; want %v", f, positionsOf(got), positionsOf(want))
		}
		for i := range got {
			if !sameEvent(got[i], want[i]) {
				t.Errorf("Latest(%+v)[%d] = %+v; want %+v", f, i, got[i], want[i])
			}
		}
	}
	// Reading on from the snapshot's position gives what came after it.
	_, at, _ := s.Latest(t.Context(), nil)
	more := mustAppend(t, s, storeEvent(1000), storeEvent(1001))
	if got := mustRead(t, s, &ReadRequest{After: at}); !reflect.DeepEqual(positionsOf(got), []int64{more[0].Position, more[1].Position}) {
		t.Errorf("after the snapshot: %v; want %+v", positionsOf(got), more)
	}
}

func testStoreHeadOldest(t *testing.T, k storeKind) {
	s, _ := openStore(t, k)
	ctx := t.Context()
	if h, err := s.Head(ctx); h != 0 || err != nil {
		t.Errorf("empty: Head = %d, %v; want 0", h, err)
	}
	if o, err := s.Oldest(ctx); o != 0 || err != nil {
		t.Errorf("empty: Oldest = %d, %v; want 0", o, err)
	}
	out := mustAppend(t, s, storeEvent(1), storeEvent(2), storeEvent(3))
	if h, err := s.Head(ctx); h != out[2].Position || err != nil {
		t.Errorf("Head = %d, %v; want %d", h, err, out[2].Position)
	}
	if o, err := s.Oldest(ctx); o != out[0].Position || err != nil {
		t.Errorf("Oldest = %d, %v; want %d", o, err, out[0].Position)
	}
}

func testStorePruneByCount(t *testing.T, k storeKind) {
	s, _ := openStore(t, k)
	ctx := t.Context()
	all := corpus(t, s, 40)
	n, err := s.Prune(ctx, time.Time{}, 15)
	if err != nil || n != 25 {
		t.Fatalf("Prune(keep 15) = %d, %v; want 25", n, err)
	}
	if got := mustRead(t, s, &ReadRequest{}); !reflect.DeepEqual(positionsOf(got), positionsOf(all[25:])) {
		t.Errorf("after Prune: %v; want %v", positionsOf(got), positionsOf(all[25:]))
	}
	if o, _ := s.Oldest(ctx); o != all[25].Position {
		t.Errorf("Oldest = %d; want %d", o, all[25].Position)
	}
	if _, err := s.Get(ctx, "", all[24].ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a pruned event: %v; want ErrNotFound", err)
	}
	if n, err := s.Prune(ctx, time.Time{}, 15); err != nil || n != 0 {
		t.Errorf("Prune again = %d, %v; want 0", n, err)
	}
	if n, err := s.Prune(ctx, time.Time{}, 0); err != nil || n != 0 {
		t.Errorf("Prune with no rule = %d, %v; want 0", n, err)
	}
}

func testStorePruneByAge(t *testing.T, k storeKind) {
	s, clock := openStore(t, k)
	ctx := t.Context()
	t0 := clock.Now()
	var pos []int64
	for hour := range 3 {
		clock.Set(t0.Add(time.Duration(hour) * time.Hour))
		for _, a := range mustAppend(t, s, storeEvent(hour*10), storeEvent(hour*10+1), storeEvent(hour*10+2), storeEvent(hour*10+3), storeEvent(hour*10+4)) {
			pos = append(pos, a.Position)
		}
	}
	// An event received at exactly the cut is kept; a nanosecond later, not.
	if n, err := s.Prune(ctx, t0.Add(time.Hour), 0); err != nil || n != 5 {
		t.Fatalf("Prune(older than 1h) = %d, %v; want 5", n, err)
	}
	if n, err := s.Prune(ctx, t0.Add(time.Hour+time.Nanosecond), 0); err != nil || n != 5 {
		t.Fatalf("Prune(older than 1h+1ns) = %d, %v; want 5", n, err)
	}
	if got := mustRead(t, s, &ReadRequest{}); !reflect.DeepEqual(positionsOf(got), pos[10:]) {
		t.Errorf("after Prune: %v; want %v", positionsOf(got), pos[10:])
	}
	// Both rules at once: the age rule deletes nothing more here, the count
	// rule two.
	if n, err := s.Prune(ctx, t0, 3); err != nil || n != 2 {
		t.Errorf("Prune(both) = %d, %v; want 2", n, err)
	}
	if o, _ := s.Oldest(ctx); o != pos[12] {
		t.Errorf("Oldest = %d; want %d", o, pos[12])
	}
}

// testStoreHeadAfterPruningAll: retention deleting every event it may does
// not move the head back, and the next event comes after it.
func testStoreHeadAfterPruningAll(t *testing.T, k storeKind) {
	s, clock := openStore(t, k)
	ctx := t.Context()
	out := mustAppend(t, s, storeEvent(1), storeEvent(2), storeEvent(3))
	last := out[2].Position
	if _, err := s.Prune(ctx, clock.Now().Add(time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, s, &ReadRequest{}); len(got) > 1 || len(got) == 1 && got[0].Position != last {
		t.Errorf("after Prune: %v; want nothing, or the newest event", positionsOf(got))
	}
	if h, err := s.Head(ctx); h != last || err != nil {
		t.Errorf("Head = %d, %v; want %d", h, err, last)
	}
	if next := mustAppend(t, s, storeEvent(4)); next[0].Position <= last {
		t.Errorf("next event at %d; want after %d", next[0].Position, last)
	}
}

func testStoreChanged(t *testing.T, k storeKind) {
	stores := k.open(t, 2, newTestClock())
	a, b := stores[0], stores[1]
	ctx := t.Context()
	first := mustAppend(t, a, storeEvent(1))[0].Position
	select {
	case <-a.Changed(first - 1):
	case <-time.After(5 * time.Second):
		t.Fatal("Changed(head-1) is not closed")
	}
	// The second store of the pair learns of the first append soon (by its
	// notification or its poll).
	select {
	case <-b.Changed(first - 1):
	case <-time.After(5 * time.Second):
		t.Fatal("the second store's Changed(head-1) did not close")
	}
	for _, s := range []Store{a, b} {
		select { // s knows of first: it will not wake for it
		case <-s.Changed(first - 1):
		case <-time.After(5 * time.Second):
			t.Fatal("Changed(head-1) did not close")
		}
		ch := s.Changed(first)
		select {
		case <-ch:
			t.Fatal("Changed(head) closed before anything was appended")
		case <-time.After(20 * time.Millisecond):
		}
		start := time.Now()
		next := mustAppend(t, a, storeEvent(int(time.Now().UnixNano())))[0].Position
		select {
		case <-ch:
			t.Logf("woken %s after an append to the first store", time.Since(start))
		case <-time.After(5 * time.Second):
			t.Fatal("Changed(head) did not close after an append")
		}
		if h, err := s.Head(ctx); err != nil || h < next {
			t.Errorf("woken, but Head = %d, %v; want %d", h, err, next)
		}
		first = next
	}
}

func testStoreClose(t *testing.T, k storeKind) {
	s, _ := openStore(t, k)
	ctx := t.Context()
	mustAppend(t, s, storeEvent(1))
	head, _ := s.Head(ctx)
	waiting := s.Changed(head)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	select {
	case <-waiting:
	case <-time.After(5 * time.Second):
		t.Error("Close did not wake a waiting reader")
	}
	select {
	case <-s.Changed(head):
	default:
		t.Error("Changed after Close is not closed")
	}
	checks := map[string]error{}
	_, checks["Append"] = s.Append(ctx, []Event{storeEvent(2)})
	_, checks["Read"] = s.Read(ctx, &ReadRequest{})
	_, checks["Get"] = s.Get(ctx, "", "ev-1")
	_, _, checks["Latest"] = s.Latest(ctx, nil)
	_, checks["Head"] = s.Head(ctx)
	_, checks["Oldest"] = s.Oldest(ctx)
	_, checks["Prune"] = s.Prune(ctx, time.Time{}, 1)
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v; want ErrClosed", name, err)
		}
	}
}

// testStoreConcurrentAppendsVisibleInOrder is the proof that positions
// become visible in order. Eight goroutines append small batches at once,
// each through its own store where stores can be distinct (so, for
// PostgresStore, as eight concurrent transactions), while a reader tails the
// stream with Read(After: last) as a resuming subscriber does. The reader
// must see every appended event, each once, in increasing positions: an
// event committed at a position below one the reader has already passed
// would be missed.
func testStoreConcurrentAppendsVisibleInOrder(t *testing.T, k storeKind) {
	// At least runFor and minEvents, unless that takes longer than maxRun
	// (a loaded machine); at most maxEvents.
	const (
		appenders = 8
		runFor    = 3 * time.Second
		maxRun    = 15 * time.Second
		minEvents = 1000
		maxEvents = 4000
	)
	stores := k.open(t, appenders, newTestClock())
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	var (
		mu       sync.Mutex
		appended []int64
		count    atomic.Int64
		writing  sync.WaitGroup
		start    = time.Now()
	)
	more := func() bool {
		n, ran := count.Load(), time.Since(start)
		return n < maxEvents && ran < maxRun && (ran < runFor || n < minEvents)
	}
	for g := range appenders {
		writing.Go(func() {
			for i := 0; more(); i++ {
				evs := make([]Event, 1+(i+g)%3)
				for j := range evs {
					evs[j] = storeEvent(0)
					evs[j].ID = fmt.Sprintf("g%d-%d-%d", g, i, j)
				}
				out, err := stores[g].Append(ctx, evs)
				if err != nil {
					t.Errorf("appender %d: %v", g, err)
					return
				}
				count.Add(int64(len(out)))
				mu.Lock()
				for _, a := range out {
					appended = append(appended, a.Position)
				}
				mu.Unlock()
			}
		})
	}
	done := make(chan struct{})
	go func() { writing.Wait(); close(done) }()

	reader := stores[0]
	seen := make(map[int64]bool)
	var last int64
	var reads, disorder int
	tail := func() int {
		evs, err := reader.Read(ctx, &ReadRequest{After: last, Limit: 500})
		if err != nil {
			t.Fatalf("reader: %v", err)
		}
		reads++
		for _, ev := range evs {
			if ev.Position <= last || seen[ev.Position] {
				disorder++
				t.Errorf("reader got position %d after %d (seen before: %t)", ev.Position, last, seen[ev.Position])
			}
			seen[ev.Position] = true
			last = max(last, ev.Position)
		}
		return len(evs)
	}
	for writingDone := false; !writingDone; {
		select {
		case <-done:
			writingDone = true
		default:
		}
		if tail() == 0 && !writingDone {
			select { // wait for more, as a subscriber does
			case <-reader.Changed(last):
			case <-done:
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	for tail() > 0 { // what was committed after the last read
	}

	slices.Sort(appended)
	var missed []int64
	for _, p := range appended {
		if !seen[p] {
			missed = append(missed, p)
		}
	}
	if len(seen) != len(appended) || len(missed) > 0 {
		t.Errorf("the reader saw %d events of %d appended; missed %d, e.g. %v", len(seen), len(appended), len(missed), missed[:min(10, len(missed))])
	}
	if len(appended) < 200 {
		t.Errorf("only %d events appended; the test proves little", len(appended))
	}
	t.Logf("%d events appended by %d goroutines in %s, tailed in %d reads, %d out of order", len(appended), appenders, time.Since(start).Round(time.Millisecond), reads, disorder)
}
