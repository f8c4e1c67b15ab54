package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/txoutbox/txoutbox/outbox"
)

// eventSink is a Sink that records each call. FailFunc, when set, decides
// the outcome of each call (numbered from 1).
type eventSink struct {
	t        testing.TB
	FailFunc func(ctx context.Context, call int, events []*outbox.Event) error

	mu    sync.Mutex
	calls [][]outbox.Event
	spans []trace.SpanContext
}

func (s *eventSink) Send(ctx context.Context, events []*outbox.Event) error {
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
		return fail(ctx, call, events)
	}
	return nil
}

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

// A batch whose topics interleave is one call of the sink, in order,
// with no watermill message built; its span is named "send" alone.
func TestSinkWholeBatch(t *testing.T) {
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

// A sink's answer is read per event: the events a *BatchError names
// by id are retried, the rest recorded delivered; an error fails them all; a
// panic fails the batch, not the relay. After a call that failed as a whole,
// the relay probes with one event until the sink delivers again.
func TestSinkOutcome(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	insertEvents(t, pool, "a", "b", "c")
	var mu sync.Mutex
	got := make(map[string]int) // key -> times delivered
	sink := &eventSink{t: t, FailFunc: func(_ context.Context, call int, events []*outbox.Event) error {
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
