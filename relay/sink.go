package relay

import (
	"context"

	"github.com/txoutbox/txoutbox/outbox"
)

// EventSink is a sink that takes the outbox's events as the relay reads
// them, without a watermill message in between. The relay prefers it over
// Publish when its sink implements both, as [HTTPSink] does: a sink that
// encodes events for a wire of its own has no use for the message's
// metadata map, which costs more to build than the rest of a delivery.
//
// PublishEvents is called once per batch, with the batch's events in order,
// whatever their topics (Config.TopicFunc is not used). It returns nil when
// every event was delivered, a [*BatchError] keyed by event id
// (outbox.Event.ID.String()) naming those that were not, or an error that
// fails them all. It may send the events in any grouping and concurrently,
// but must keep each key's order: once it fails an event, it must not
// deliver a later event of the same key from the same call (it reports it
// with [ErrNotSent], and the relay sends it again after the earlier one).
// An event it did not send at all, e.g. because an earlier request failed
// and it stopped there, it reports with ErrNotSent too: the relay counts an
// attempt only for the events the sink sent and saw fail.
//
// The events and their Data belong to the relay and are reused after the
// call returns; the sink must not keep them. ctx carries the delivery's
// span and ends when the relay's shutdown timeout runs out.
//
// relay.New takes a message.Publisher, so an EventSink implements that too:
// its Publish serves callers outside the relay, and Close is called when the
// relay's owner closes the sink.
type EventSink interface {
	PublishEvents(ctx context.Context, events []*outbox.Event) error
}
