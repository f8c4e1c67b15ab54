package relayhttp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// TestRelayToHTTPSinkMixedTopics: through the sink a batch whose topics
// interleave is one request.
func TestRelayToHTTPSinkMixedTopics(t *testing.T) {
	t.Parallel()
	srv := newHTTPSinkServer(t, false, status(http.StatusAccepted, ""))
	pool := newTestDB(t)
	insertEvents(t, pool, sameJob, cycleKeys(30, 7), "Created", "Paid", "Voided")
	sink := newTestHTTPSink(t, Config{URL: srv.URL})
	startRelay(t, pool, sink, nil)
	waitFor(t, 10*time.Second, "every event delivered", func() bool { return count(t, pool, "true") == 0 })

	reqs := srv.recorded()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	evs, err := wire.DecodeCloudEventBatch(reqs[0].Body)
	if err != nil || len(evs) != 30 {
		t.Fatalf("request of %d events, %v", len(evs), err)
	}
	for i, ev := range evs {
		if want := "billing.Invoice" + []string{"Created", "Paid", "Voided"}[i%3]; ev.Topic != want {
			t.Errorf("event %d: %s, want %s", i, ev.Topic, want)
		}
	}
}

// TestRelayToHTTPSinkParallelOrder drains a backlog through the sink in
// parallel lanes of small requests while the API refuses one event for good
// and fails requests now and then: every other event arrives, each key in
// order, and the poison event's key stops at it (PoisonBlock).
func TestRelayToHTTPSinkParallelOrder(t *testing.T) {
	t.Parallel()
	const n, keys, poisonAt = 600, 25, 5
	pool := newTestDB(t)
	insertEvents(t, pool, sameJob, cycleKeys(n, keys))
	var poisonID string
	var poisonN int
	if err := pool.QueryRow(t.Context(), `SELECT id::text, (data->>'n')::int FROM txoutbox_events
		WHERE key = 'k3' ORDER BY seq OFFSET $1 LIMIT 1`, poisonAt).Scan(&poisonID, &poisonN); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var got []delivered
	requests := 0
	srv := newHTTPSinkServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		requests++
		switch {
		case strings.Contains(string(body), poisonID):
			w.WriteHeader(http.StatusUnprocessableEntity)
			return
		case requests%7 == 0:
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		evs, err := wire.DecodeCloudEventBatch(body)
		if err != nil {
			t.Error(err)
		}
		for _, ev := range evs {
			var data struct{ N int }
			_ = json.Unmarshal(ev.Data, &data)
			got = append(got, delivered{ID: ev.ID, Key: ev.Key, N: data.N})
		}
		w.WriteHeader(http.StatusAccepted)
	})
	sink := newTestHTTPSink(t, Config{URL: srv.URL, MaxBatch: 20, MaxParallel: 4})
	startRelay(t, pool, sink, &relay.Config{BatchSize: 200, RetryBase: time.Millisecond, RetryMax: 5 * time.Millisecond})
	left := n/keys - poisonAt // k3's events from the poison on
	waitFor(t, 30*time.Second, "every event but k3's from the poison on", func() bool {
		return count(t, pool, "true") == left && count(t, pool, "status = 'dead'") == 1
	})

	mu.Lock()
	defer mu.Unlock()
	checkOrder(t, got)
	seen := make(map[string]bool)
	for _, d := range got {
		seen[d.ID] = true
		if d.Key == "k3" && d.N >= poisonN {
			t.Errorf("k3 event %d delivered at or after the poison %d", d.N, poisonN)
		}
	}
	if len(seen) != n-left {
		t.Errorf("%d distinct events delivered, want %d", len(seen), n-left)
	}
}

// PublishEvents sends data as read, spaces and all, rewriting only data
// with line breaks so each event stays on one line.
func TestHTTPSinkPublishEventsData(t *testing.T) {
	t.Parallel()
	srv := newHTTPSinkServer(t, false, status(http.StatusAccepted, ""))
	sink := newTestHTTPSink(t, Config{URL: srv.URL})
	events := []*outbox.Event{
		{ID: uuid.New(), Topic: "billing.InvoiceCreated", Key: "inv-1", Data: []byte(`{"id" : "inv-1", "n" : 1}`)},
		{ID: uuid.New(), Topic: "billing.InvoiceCreated", Key: "inv-2", Data: []byte("{\n  \"id\": \"inv-2\",\r\n  \"note\": \"a\\nb\"\n}")},
	}
	if err := sink.Send(t.Context(), events); err != nil {
		t.Fatal(err)
	}
	body := srv.recorded()[0].Body
	if strings.ContainsAny(string(body), "\r\n") {
		t.Errorf("body spans lines: %s", body)
	}
	for _, want := range []string{`"data":{"id" : "inv-1", "n" : 1}}`, `"data":{"id":"inv-2","note":"a\nb"}}`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("body %s lacks %s", body, want)
		}
	}
	evs, err := wire.DecodeCloudEventBatch(body)
	if err != nil || len(evs) != 2 || evs[1].ID != events[1].ID.String() {
		t.Errorf("decoded %+v, %v", evs, err)
	}
}

// An event the encoders cannot write fails alone, permanently; the rest go.
func TestHTTPSinkPublishEventsInvalid(t *testing.T) {
	t.Parallel()
	srv := newHTTPSinkServer(t, false, status(http.StatusAccepted, ""))
	sink := newTestHTTPSink(t, Config{URL: srv.URL})
	good := &outbox.Event{ID: uuid.New(), Topic: "billing.InvoiceCreated", Key: "k", Data: []byte(`{}`)}
	noData := &outbox.Event{ID: uuid.New(), Topic: "billing.InvoiceCreated", Key: "k2"}
	err := sink.Send(t.Context(), []*outbox.Event{good, noData})
	var be *relay.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || !relay.IsPermanent(be.Failed[noData.ID.String()]) ||
		!errors.Is(be.Failed[noData.ID.String()], wire.ErrInvalidEvent) {
		t.Fatalf("PublishEvents = %v, want the event without data failed permanently", err)
	}
	if n := len(srv.recorded()); n != 1 {
		t.Errorf("%d requests, want 1 for the good event", n)
	}
}

// A poison event in one lane holds back its key's later events in that
// lane; the other lanes, sent at the same time, are untouched, and every
// key's accepted events arrive in order.
func TestHTTPSinkLanes(t *testing.T) {
	t.Parallel()
	const keys, poisonAt = 8, 9 // the poison is k1's second event
	var events []*outbox.Event
	for i := range 40 {
		events = append(events, &outbox.Event{
			ID: uuid.New(), Topic: "billing.InvoiceCreated", Key: fmt.Sprint("k", i%keys),
			Data: fmt.Appendf(nil, `{"n":%d}`, i),
		})
	}
	poison := events[poisonAt]
	var mu sync.Mutex
	var accepted []wire.Event
	srv := newHTTPSinkServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), poison.ID.String()) {
			w.WriteHeader(http.StatusUnprocessableEntity)
			return
		}
		evs, err := wire.DecodeCloudEventBatch(body)
		if err != nil || len(evs) > 5 {
			t.Errorf("request of %d events, %v", len(evs), err)
		}
		mu.Lock()
		accepted = append(accepted, evs...)
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	sink := newTestHTTPSink(t, Config{URL: srv.URL, MaxBatch: 5, MaxParallel: 3})
	err := sink.Send(t.Context(), events)
	var be *relay.BatchError
	if !errors.As(err, &be) || !relay.IsPermanent(be.Failed[poison.ID.String()]) {
		t.Fatalf("PublishEvents = %v, want the poison failed permanently", err)
	}
	for i, e := range events {
		ferr, failed := be.Failed[e.ID.String()]
		switch {
		case i == poisonAt:
		case e.Key == poison.Key && i > poisonAt:
			if !failed || relay.IsPermanent(ferr) || !strings.Contains(ferr.Error(), "held back") {
				t.Errorf("event %d of the poison's key after it: %v, want held back", i, ferr)
			}
		case failed:
			t.Errorf("event %d failed: %v", i, ferr)
		}
	}
	if want := len(events) - len(be.Failed); len(accepted) != want {
		t.Errorf("%d events accepted, want %d", len(accepted), want)
	}
	lastN := make(map[string]int)
	for _, ev := range accepted {
		var data struct{ N int }
		_ = json.Unmarshal(ev.Data, &data)
		if n, ok := lastN[ev.Key]; ok && data.N <= n {
			t.Errorf("key %s: %d arrived after %d", ev.Key, data.N, n)
		}
		lastN[ev.Key] = data.N
	}
}

// lanes never splits a key, keeps each lane in order and balances them.
func TestLanes(t *testing.T) {
	t.Parallel()
	var events []item
	for i := range 100 {
		key := fmt.Sprint("k", i%10)
		if i%4 == 0 {
			key = "hot"
		}
		events = append(events, item{ev: &outbox.Event{Key: key}, w: wire.Event{ID: fmt.Sprint(i), Key: key}})
	}
	if ls := lanes(events, 1); len(ls) != 1 || len(ls[0]) != 100 {
		t.Fatalf("one lane: %d", len(ls))
	}
	ls := lanes(events, 3)
	if len(ls) != 3 {
		t.Fatalf("%d lanes, want 3", len(ls))
	}
	laneOf := make(map[string]int)
	total := 0
	for l, lane := range ls {
		total += len(lane)
		if len(lane) < 20 || len(lane) > 45 {
			t.Errorf("lane %d has %d events", l, len(lane))
		}
		prev := -1
		for _, it := range lane {
			ev := it.w
			var i int
			_, _ = fmt.Sscan(ev.ID, &i)
			if i <= prev {
				t.Errorf("lane %d: event %d after %d", l, i, prev)
			}
			prev = i
			if got, ok := laneOf[ev.Key]; ok && got != l {
				t.Errorf("key %s in lanes %d and %d", ev.Key, got, l)
			}
			laneOf[ev.Key] = l
		}
	}
	if total != 100 {
		t.Errorf("%d events in the lanes, want 100", total)
	}
	if ls := lanes(events[:1], 4); len(ls) != 1 {
		t.Errorf("one event: %d lanes", len(ls))
	}
}
