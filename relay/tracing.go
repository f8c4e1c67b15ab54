package relay

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the relay's spans.
const tracerName = "github.com/txoutbox/txoutbox/relay"

// MessagingSystemDefault is the messaging.system attribute of the relay's
// spans when Config.MessagingSystem is empty.
const MessagingSystemDefault = "txoutbox"

// Attribute keys of the OpenTelemetry messaging semantic conventions the
// relay's spans carry.
const (
	attrSystem       = attribute.Key("messaging.system")
	attrOperation    = attribute.Key("messaging.operation.type")
	attrDestination  = attribute.Key("messaging.destination.name")
	attrMessageID    = attribute.Key("messaging.message.id")
	attrBatchCount   = attribute.Key("messaging.batch.message_count")
	attrConversation = attribute.Key("messaging.message.conversation_id")
)

// startSend starts the span of one call to the sink, delivering rows:
// kind Producer, named "send {topic}", or "send" when the call mixes topics
// (a sink takes a whole batch), linked to the trace context each event
// was published with. When every event of the call comes from the same trace
// (one request's events, the usual case for a small batch) the span is also
// a child of the first event's context, so the delivery shows up in that
// request's trace; a batch mixing traces starts a trace of its own and only
// links to them. The returned context is ctx with the span in it.
//
// The events' own traceparents are left as they are: each is the producer's
// context, which is what CloudEvents' traceparent extension and a consumer
// continuing the trace expect.
//
// Nothing is parsed for the links until the span is known to record: with
// the no-op provider, or the global one before the application installs an
// SDK, Start returns a span that records nothing, and parsing a traceparent
// per event (a carrier map, a context and a hex decode each) would be work
// thrown away on every batch. The parent is found first by comparing the
// trace-id text of the traceparents, so at most one is parsed per call. The
// links are added after Start, so a sampler does not see them; the SDK's
// samplers decide on the parent alone anyway.
func (r *Relay) startSend(ctx context.Context, topic string, rows []*row) (context.Context, trace.Span) {
	var first string
	same := true
	for _, rw := range rows {
		tp := rw.ev.Traceparent
		if len(tp) != traceparentLen {
			same = false
			break
		}
		if first == "" {
			first = tp
		} else if traceIDText(tp) != traceIDText(first) {
			same = false
			break
		}
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer)}
	parent := trace.SpanContext{}
	if same && first != "" {
		parent = parseTraceparent(first)
	}
	if parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	} else {
		// Not a child of whatever span Run's context carries: a delivery
		// belongs to the events' traces, not to the relay's start.
		opts = append(opts, trace.WithNewRoot())
	}
	attrs := []attribute.KeyValue{
		attrSystem.String(r.cfg.MessagingSystem),
		attrOperation.String("send"),
		attrBatchCount.Int(len(rows)),
	}
	name := "send"
	if topic != "" {
		name += " " + topic
		attrs = append(attrs, attrDestination.String(topic))
	}
	if len(rows) == 1 {
		attrs = append(attrs, attrMessageID.String(rows[0].ev.ID.String()))
		if job := rows[0].ev.JobID; job != "" {
			attrs = append(attrs, attrConversation.String(job))
		}
	}
	ctx, span := r.tracer.Start(ctx, name, append(opts, trace.WithAttributes(attrs...))...)
	if !span.IsRecording() {
		return ctx, span
	}
	for _, rw := range rows {
		if tp := rw.ev.Traceparent; tp != "" {
			if sc := parseTraceparent(tp); sc.IsValid() {
				span.AddLink(trace.Link{SpanContext: sc})
			}
		}
	}
	return ctx, span
}

// traceparentLen is the length of a version 00 W3C traceparent:
// 00-{32 hex trace id}-{16 hex span id}-{2 hex flags}.
const traceparentLen = 55

// traceIDText is the trace id of a traceparent of traceparentLen bytes.
func traceIDText(tp string) string { return tp[3:35] }

// parseTraceparent returns the span context of a W3C traceparent, or an
// invalid one.
func parseTraceparent(tp string) trace.SpanContext {
	carrier := propagation.MapCarrier{"traceparent": tp}
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
}
