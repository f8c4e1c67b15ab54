package outbox

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
)

// tracerName is the instrumentation scope of the client's spans, named in
// Config.TracerProvider's doc.
const tracerName = "github.com/txoutbox/txoutbox/outbox"

// FlushStats describes one write of events into the outbox table: a Flush,
// or a publish-immediately Publish. It is what Config.FlushFunc receives.
type FlushStats struct {
	// Events are the events written (or not, see Err). They belong to the
	// session: read them, do not modify or keep them.
	Events []*Event
	// Elapsed is how long the insert took.
	Elapsed time.Duration
	// Err is the error of a write that failed; its events stay buffered.
	Err error
}

// write inserts events through db, inside a span, and reports the write to
// Config.FlushFunc.
func (c *Client) write(ctx context.Context, db outboxsql.DB, events []*Event) error {
	ctx, span := c.tracer.Start(ctx, "outbox flush",
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(
			attribute.String("messaging.operation.type", "create"),
			attribute.Int("messaging.batch.message_count", len(events)),
			attribute.String("db.collection.name", outboxsql.TableEvents),
		))
	start := time.Now()
	var err error
	if c.cfg.Storage == StorageMessages {
		err = c.emit(ctx, db, events)
	} else {
		err = c.insert(ctx, db, events)
	}
	elapsed := time.Since(start)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
	if c.cfg.FlushFunc != nil {
		c.cfg.FlushFunc(FlushStats{Events: events, Elapsed: elapsed, Err: err})
	}
	return err
}
