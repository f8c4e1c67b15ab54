package relay

import (
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// A recording provider gets one Producer span per Publish call, a child of
// the events' trace when they share one, linked to each event's context.
func TestSendSpan(t *testing.T) {
	t.Parallel()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	pool := newTestDB(t)
	insertEvents(t, pool, "k1", "k2")
	if _, err := pool.Exec(t.Context(), `UPDATE txoutbox_events SET traceparent = $1`, tp); err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	provider := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	sink := &recordingSink{}
	_, stop := startRelay(t, pool, sink, &Config{TracerProvider: provider, MessagingSystem: "nats"})
	waitFor(t, 10*time.Second, "both events", func() bool { return sink.distinct() == 2 })
	stop()

	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1 send span", len(spans))
	}
	s := spans[0]
	want := parseTraceparent(tp)
	if s.Name() != "send billing.InvoiceCreated" || s.SpanKind() != trace.SpanKindProducer {
		t.Errorf("span %q kind %v, want send billing.InvoiceCreated, producer", s.Name(), s.SpanKind())
	}
	if s.Parent().SpanID() != want.SpanID() || s.SpanContext().TraceID() != want.TraceID() {
		t.Errorf("span parent %v trace %v, want the events' context", s.Parent(), s.SpanContext().TraceID())
	}
	if links := s.Links(); len(links) != 2 || links[0].SpanContext.SpanID() != want.SpanID() {
		t.Errorf("links %v, want one per event to its context", links)
	}
}
