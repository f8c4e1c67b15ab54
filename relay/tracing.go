package relay

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/txoutbox/txoutbox/outbox"
)

// TracerName is the instrumentation scope of the relay's spans.
const TracerName = "github.com/txoutbox/txoutbox/relay"

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

// startSend starts the span of one Publish call to the sink: kind Producer,
// named "send {topic}", linked to the trace context each event was published
// with. When every event of the call comes from the same trace (one request's
// events, the usual case for a small batch) the span is also a child of the
// first event's context, so the delivery shows up in that request's trace;
// a batch mixing traces starts a trace of its own and only links to them.
//
// The events' own traceparent metadata is left as it is: it is the producer's
// context, which is what CloudEvents' traceparent extension and a consumer
// continuing the trace expect.
func (r *Relay) startSend(topic string, msgs []*message.Message) (context.Context, trace.Span) {
	var parent trace.SpanContext
	var links []trace.Link
	same := true
	for _, m := range msgs {
		tp := m.Metadata.Get(outbox.MetaTraceparent)
		if tp == "" {
			same = false
			continue
		}
		sc := parseTraceparent(tp)
		if !sc.IsValid() {
			same = false
			continue
		}
		if !parent.IsValid() {
			parent = sc
		} else if sc.TraceID() != parent.TraceID() {
			same = false
		}
		links = append(links, trace.Link{SpanContext: sc})
	}
	ctx := context.Background()
	if same && parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	attrs := []attribute.KeyValue{
		attrSystem.String(r.cfg.MessagingSystem),
		attrOperation.String("send"),
		attrDestination.String(topic),
		attrBatchCount.Int(len(msgs)),
	}
	if len(msgs) == 1 {
		attrs = append(attrs, attrMessageID.String(msgs[0].UUID))
		if job := msgs[0].Metadata.Get(outbox.MetaJobID); job != "" {
			attrs = append(attrs, attrConversation.String(job))
		}
	}
	return r.tracer.Start(ctx, "send "+topic,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithLinks(links...),
		trace.WithAttributes(attrs...))
}

// parseTraceparent returns the span context of a W3C traceparent, or an
// invalid one.
func parseTraceparent(tp string) trace.SpanContext {
	carrier := propagation.MapCarrier{"traceparent": tp}
	return trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
}
