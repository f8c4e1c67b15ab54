package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/internal/invoices"
	"github.com/txoutbox/txoutbox/internal/invoices/api"
	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/internal/sinkserver"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relayhttp"
	"github.com/txoutbox/txoutbox/topics"
)

// TestOneTrace follows one HTTP request to the example service through the
// outbox and the relay to the events API, and finds a single trace holding
// the client's request span, the server span, the flush, the relay's
// delivery and the sink's receipt.
func TestOneTrace(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tracer := tp.Tracer("test")
	prop := propagation.TraceContext{}

	pool := pgtest.NewPool(t)
	ctx := t.Context()
	if err := outbox.Migrate(ctx, pool, nil); err != nil {
		t.Fatal(err)
	}
	if err := invoices.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	reg, err := topics.Load("../../topic_definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	client, err := outbox.New(pool, reg, &outbox.Config{Source: "echo-service", TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}

	// The service, behind a server-span middleware as otelecho would add.
	e := api.New(pool, client)
	e.Pre(func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			ctx, span := tracer.Start(prop.Extract(req.Context(), propagation.HeaderCarrier(req.Header)),
				req.Method+" "+req.URL.Path, trace.WithSpanKind(trace.SpanKindServer))
			defer span.End()
			c.SetRequest(req.WithContext(ctx))
			return next(c)
		}
	})
	svc := httptest.NewServer(e)
	t.Cleanup(svc.Close)

	// The events API, starting a Consumer span from each CloudEvent's
	// traceparent extension.
	received := make(chan struct{}, 1)
	sink, err := sinkserver.New(&sinkserver.Config{OnEventFunc: func(ev eventsapi.Event) {
		ctx := prop.Extract(context.Background(), propagation.MapCarrier{"traceparent": ev.Traceparent})
		_, span := tracer.Start(ctx, "receive "+ev.Topic, trace.WithSpanKind(trace.SpanKindConsumer))
		span.End()
		select {
		case received <- struct{}{}:
		default:
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sink.Close() })
	api := httptest.NewServer(sink)
	t.Cleanup(api.Close)

	// One request, from a client span.
	reqCtx, clientSpan := tracer.Start(ctx, "create invoice", trace.WithSpanKind(trace.SpanKindClient))
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, svc.URL+"/invoices",
		strings.NewReader(`{"customer":{"id":"0190a0a0-0000-7000-8000-000000000001","name":"Ada"},"amount_cents":1200,"currency":"EUR","due_date":"2030-01-31"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-User-Id", "user-42")
	prop.Inject(reqCtx, propagation.HeaderCarrier(req.Header))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	clientSpan.End()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /invoices = %d", resp.StatusCode)
	}

	// The relay delivers it.
	httpSink, err := relayhttp.New(&relayhttp.Config{URL: api.URL, Format: relayhttp.FormatCloudEvents})
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(pool, httpSink, &relay.Config{
		TracerProvider:  tp,
		MessagingSystem: "http",
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	select {
	case <-received:
	case <-time.After(30 * time.Second):
		t.Fatal("the sink received nothing within 30s")
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	want := clientSpan.SpanContext().TraceID()
	kinds := map[string]trace.SpanKind{}
	for _, s := range exporter.GetSpans() {
		if s.SpanContext.TraceID() != want {
			t.Errorf("span %q is in trace %s, not the request's %s", s.Name, s.SpanContext.TraceID(), want)
			continue
		}
		kinds[s.Name] = s.SpanKind
		if s.Name == "send billing.InvoiceCreated" && (len(s.Links) != 1 || s.Links[0].SpanContext.SpanID() != clientSpan.SpanContext().SpanID()) {
			t.Errorf("the delivery span links to %v, want the request's context", s.Links)
		}
	}
	for name, kind := range map[string]trace.SpanKind{
		"create invoice":                 trace.SpanKindClient,
		"POST /invoices":                 trace.SpanKindServer,
		"outbox flush":                   trace.SpanKindInternal,
		"send billing.InvoiceCreated":    trace.SpanKindProducer,
		"receive billing.InvoiceCreated": trace.SpanKindConsumer,
	} {
		if got, ok := kinds[name]; !ok || got != kind {
			t.Errorf("span %q: kind %v (found %v), want %v; spans: %v", name, got, ok, kind, kinds)
		}
	}
}
