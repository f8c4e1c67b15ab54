package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/outbox"
)

// eventSink is an EventSink that records each call. FailFunc, when set,
// decides the outcome of each call (numbered from 1). Publish, which the
// relay must not call while PublishEvents is there, fails the test.
type eventSink struct {
	t        testing.TB
	FailFunc func(call int, events []*outbox.Event) error

	mu    sync.Mutex
	calls [][]outbox.Event
	spans []trace.SpanContext
}

func (s *eventSink) PublishEvents(ctx context.Context, events []*outbox.Event) error {
	s.mu.Lock()
	evs := make([]outbox.Event, len(events))
	for i, e := range events {
		evs[i] = *e
	}
	s.calls = append(s.calls, evs)
	s.spans = append(s.spans, trace.SpanContextFromContext(ctx))
	call, fail := len(s.calls), s.FailFunc
	s.mu.Unlock()
	if fail != nil {
		return fail(call, events)
	}
	return nil
}

func (s *eventSink) Publish(string, ...*message.Message) error {
	s.t.Error("the relay called Publish on an EventSink")
	return errors.New("use PublishEvents")
}

func (s *eventSink) Close() error { return nil }

func (s *eventSink) callList() [][]outbox.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]outbox.Event(nil), s.calls...)
}

// insertTopics inserts one event per key, in order, the i-th on topics[i %
// len(topics)] of the billing category.
func insertTopics(t testing.TB, pool execer, tops []string, keys ...string) {
	t.Helper()
	for i, k := range keys {
		action := tops[i%len(tops)]
		if _, err := pool.Exec(context.Background(), `INSERT INTO txoutbox_events
			(id, topic, category, entity, action, data, actor_id, actor_type, job_id, source, key, published_at)
			VALUES (gen_random_uuid(), 'billing.Invoice' || $1, 'billing', 'Invoice', $1,
				json_build_object('key', $2::text, 'n', $3::int), 'user-1', 'user', 'job-1', 'test', $2, now())`,
			action, k, i); err != nil {
			t.Fatal(err)
		}
	}
}

// A batch whose topics interleave is one call of an EventSink, in order,
// with no watermill message built; its span is named "send" alone.
func TestEventSinkWholeBatch(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	insertTopics(t, pool, []string{"Created", "Paid"}, cycleKeys(10, 3)...)
	rec := tracetest.NewSpanRecorder()
	sink := &eventSink{t: t}
	_, stop := startRelay(t, pool, sink, &Config{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))})
	waitFor(t, 10*time.Second, "the batch", func() bool { return len(sink.callList()) > 0 })
	waitFor(t, 5*time.Second, "delivered rows deleted", func() bool { return count(t, pool, "true") == 0 })
	stop()

	calls := sink.callList()
	if len(calls) != 1 || len(calls[0]) != 10 {
		t.Fatalf("%d calls, want the 10 events in one", len(calls))
	}
	for i, ev := range calls[0] {
		var data struct{ N int }
		if err := json.Unmarshal(ev.Data, &data); err != nil || data.N != i {
			t.Errorf("event %d: data %s, want n=%d", i, ev.Data, i)
		}
		if want := "billing.Invoice" + []string{"Created", "Paid"}[i%2]; ev.Topic != want || ev.Key != fmt.Sprintf("k%d", i%3) {
			t.Errorf("event %d: %s key %s", i, ev.Topic, ev.Key)
		}
	}
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Name() != "send" {
		t.Fatalf("spans %v, want one named send", spans)
	}
	if !sink.spans[0].Equal(spans[0].SpanContext()) {
		t.Errorf("PublishEvents got span %v in its context, want the send span %v", sink.spans[0], spans[0].SpanContext())
	}
	for _, kv := range spans[0].Attributes() {
		if kv.Key == attrDestination {
			t.Errorf("a batch of two topics has %s = %s", kv.Key, kv.Value.Emit())
		}
	}
}

// An EventSink's answer is read as Publish's: the events a *BatchError names
// by id are retried, the rest recorded delivered; an error fails them all; a
// panic fails the batch, not the relay. After a call that failed as a whole,
// the relay probes with one event until the sink delivers again.
func TestEventSinkOutcome(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	insertEvents(t, pool, "a", "b", "c")
	var mu sync.Mutex
	got := make(map[string]int) // key -> times delivered
	sink := &eventSink{t: t, FailFunc: func(call int, events []*outbox.Event) error {
		switch call {
		case 2:
			panic("sink bug")
		case 3:
			return errors.New("down")
		}
		mu.Lock()
		defer mu.Unlock()
		failed := make(map[string]error)
		for _, e := range events {
			if e.Key == "b" && call == 1 {
				failed[e.ID.String()] = errors.New("busy")
			} else {
				got[e.Key]++
			}
		}
		if len(failed) > 0 {
			return &BatchError{Failed: failed}
		}
		return nil
	}}
	startRelay(t, pool, sink, &Config{RetryBase: time.Millisecond, RetryMax: 5 * time.Millisecond})
	waitFor(t, 10*time.Second, "every event delivered", func() bool { return count(t, pool, "true") == 0 })
	mu.Lock()
	defer mu.Unlock()
	if got["a"] != 1 || got["b"] != 1 || got["c"] != 1 {
		t.Errorf("delivered %v, want each key once", got)
	}
	calls := sink.callList()
	if len(calls) != 4 || len(calls[0]) != 3 {
		t.Fatalf("calls %v, want four, the first with all three events", calls)
	}
	for i, c := range calls[1:] {
		if len(c) != 1 || c[0].Key != "b" {
			t.Errorf("call %d: %v, want b alone", i+2, c)
		}
	}
}

// TestRelayToHTTPSinkMixedTopics: through HTTPSink a batch whose topics
// interleave is one request, whatever Config.TopicFunc says.
func TestRelayToHTTPSinkMixedTopics(t *testing.T) {
	t.Parallel()
	srv := newHTTPSinkServer(t, false, status(http.StatusAccepted, ""))
	pool := newTestDB(t)
	insertTopics(t, pool, []string{"Created", "Paid", "Voided"}, cycleKeys(30, 7)...)
	sink := newTestHTTPSink(t, HTTPSinkConfig{URL: srv.URL})
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

// TestRelayToHTTPSinkParallelOrder drains a backlog through HTTPSink in
// parallel lanes of small requests while the API refuses one event for good
// and fails requests now and then: every other event arrives, each key in
// order, and the poison event's key stops at it (PoisonBlock).
func TestRelayToHTTPSinkParallelOrder(t *testing.T) {
	t.Parallel()
	const n, keys, poisonAt = 600, 25, 5
	pool := newTestDB(t)
	insertEvents(t, pool, cycleKeys(n, keys)...)
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
	sink := newTestHTTPSink(t, HTTPSinkConfig{URL: srv.URL, MaxBatch: 20, MaxParallel: 4})
	startRelay(t, pool, sink, &Config{BatchSize: 200, MaxAttempts: 2, RetryBase: time.Millisecond, RetryMax: 5 * time.Millisecond})
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
	sink := newTestHTTPSink(t, HTTPSinkConfig{URL: srv.URL})
	events := []*outbox.Event{
		{ID: uuid.New(), Topic: "billing.InvoiceCreated", Key: "inv-1", Data: []byte(`{"id" : "inv-1", "n" : 1}`)},
		{ID: uuid.New(), Topic: "billing.InvoiceCreated", Key: "inv-2", Data: []byte("{\n  \"id\": \"inv-2\",\r\n  \"note\": \"a\\nb\"\n}")},
	}
	if err := sink.PublishEvents(t.Context(), events); err != nil {
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
	sink := newTestHTTPSink(t, HTTPSinkConfig{URL: srv.URL})
	good := &outbox.Event{ID: uuid.New(), Topic: "billing.InvoiceCreated", Key: "k", Data: []byte(`{}`)}
	noData := &outbox.Event{ID: uuid.New(), Topic: "billing.InvoiceCreated", Key: "k2"}
	err := sink.PublishEvents(t.Context(), []*outbox.Event{good, noData})
	var be *BatchError
	if !errors.As(err, &be) || len(be.Failed) != 1 || !IsPermanent(be.Failed[noData.ID.String()]) ||
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
	sink := newTestHTTPSink(t, HTTPSinkConfig{URL: srv.URL, MaxBatch: 5, MaxParallel: 3})
	err := sink.PublishEvents(t.Context(), events)
	var be *BatchError
	if !errors.As(err, &be) || !IsPermanent(be.Failed[poison.ID.String()]) {
		t.Fatalf("PublishEvents = %v, want the poison failed permanently", err)
	}
	for i, e := range events {
		ferr, failed := be.Failed[e.ID.String()]
		switch {
		case i == poisonAt:
		case e.Key == poison.Key && i > poisonAt:
			if !failed || IsPermanent(ferr) || !strings.Contains(ferr.Error(), "held back") {
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
	var events []wire.Event
	for i := range 100 {
		key := fmt.Sprint("k", i%10)
		if i%4 == 0 {
			key = "hot"
		}
		events = append(events, wire.Event{ID: fmt.Sprint(i), Key: key})
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
		for _, ev := range lane {
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
