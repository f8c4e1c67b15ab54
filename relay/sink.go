package relay

import (
	"context"
	"errors"
	"strconv"
	"sync"

	"github.com/txoutbox/txoutbox/outbox"
)

// Sink is where the relay delivers events: an events API (package
// relay/relayhttp), Kafka (relay/relaykafka), MQTT (relay/relaymqtt), a
// watermill publisher such as NATS JetStream or AMQP (package
// relay/relaywatermill), or a sink of your own.
//
// Send is called once per batch, with the batch's events oldest first,
// whatever their topics. It returns nil when every event was delivered, a
// [*BatchError] keyed by event id (outbox.Event.ID.String()) naming those
// that were not, or an error that fails them all. The relay reads the
// errors: [Permanent] dead-letters the event, [RetryAfter] asks for a wait,
// [ErrNotSent] says the event was not sent at all, and anything else is a
// retryable failure.
//
// A sink that sends a batch in one call to its destination needs nothing
// more. One that sends it in parts (several requests, one publish per
// topic) must keep each key's order across the parts: once an event
// failed, no later event of its key may be delivered from the same batch.
// [Outcome] keeps that rule for it: ask it which events of a part may go,
// and tell it what failed.
//
// Send should check [SendCut] before each part it sends: the relay cuts a
// batch short when its partitions' leases are about to end.
//
// The events and their Data belong to the relay and are reused after Send
// returns; the sink must not keep them. ctx carries the delivery's span and
// ends when the relay's shutdown timeout runs out. Several relays in one
// process may share a sink: Send must be safe for concurrent use.
type Sink interface {
	Send(ctx context.Context, events []*outbox.Event) error
}

// SinkFunc is a function that is a Sink.
type SinkFunc func(ctx context.Context, events []*outbox.Event) error

// Send calls f.
func (f SinkFunc) Send(ctx context.Context, events []*outbox.Event) error { return f(ctx, events) }

// Outcome collects what a sink did with the events of one Send that it
// sends in parts, and keeps each key's order across the parts: once an event
// of a key failed, or was not sent, the key's later events are held back
// (not sent, reported with ErrNotSent). It is safe for concurrent use, so
// parts that share no key can go out side by side.
//
//	o := relay.NewOutcome(events)
//	for _, part := range parts {
//		send := o.Sendable(part)
//		if err := relay.SendCut(ctx); err != nil {
//			o.NotSent(send, err)
//			continue
//		}
//		if err := post(ctx, send); err != nil {
//			o.Fail(err, send...)
//		}
//	}
//	return o.Err()
type Outcome struct {
	n      int
	mu     sync.Mutex
	failed map[string]error // event id -> error
	held   map[string]bool  // keys whose later events are held back
}

// NewOutcome returns the outcome of a Send of events, all delivered until
// told otherwise.
func NewOutcome(events []*outbox.Event) *Outcome {
	return &Outcome{n: len(events)}
}

// Sendable returns the events of part that may be sent now, in order. The
// others, whose key had an earlier event fail or go unsent, it records as
// held back.
func (o *Outcome) Sendable(part []*outbox.Event) []*outbox.Event {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.held) == 0 {
		return part
	}
	send := make([]*outbox.Event, 0, len(part))
	for _, ev := range part {
		if o.held[ev.Key] {
			o.record(ev, heldBack(ev.Key))
			continue
		}
		send = append(send, ev)
	}
	return send
}

// Fail records that events failed with err, and holds back their keys'
// later events.
func (o *Outcome) Fail(err error, events ...*outbox.Event) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, ev := range events {
		o.record(ev, err)
	}
}

// NotSent records that events were not sent because of why, and holds back
// their keys' later events. The relay counts no attempt for them.
func (o *Outcome) NotSent(events []*outbox.Event, why error) {
	err := ErrNotSent
	if why != nil && !errors.Is(why, ErrNotSent) {
		err = &notSentError{text: "not sent: stopped after " + why.Error(), why: why}
	}
	o.Fail(err, events...)
}

// record notes ev's error; o.mu is held.
func (o *Outcome) record(ev *outbox.Event, err error) {
	if o.failed == nil {
		o.failed = make(map[string]error)
		o.held = make(map[string]bool)
	}
	o.failed[ev.ID.String()] = err
	o.held[ev.Key] = true
}

// Err returns what Send returns: nil when every event was delivered, the
// error when all of them failed with the same one, else a [*BatchError].
func (o *Outcome) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.failed) == 0 {
		return nil
	}
	if len(o.failed) == o.n {
		var first error
		same := true
		for _, err := range o.failed {
			if first == nil {
				first = err
			} else if err != first {
				same = false
				break
			}
		}
		if same {
			return first
		}
	}
	failed := make(map[string]error, len(o.failed))
	for id, err := range o.failed {
		failed[id] = err
	}
	return &BatchError{Failed: failed}
}

// notSentError is ErrNotSent with the reason the event was not sent.
type notSentError struct {
	text string
	why  error // nil when held back
}

func (e *notSentError) Error() string { return e.text }
func (e *notSentError) Unwrap() []error {
	if e.why == nil {
		return []error{ErrNotSent}
	}
	return []error{ErrNotSent, e.why}
}

// heldBack is the error of an event not sent because an earlier event of
// its key failed: the relay sends it again after that one, counting no
// attempt for it.
func heldBack(key string) error {
	return &notSentError{text: "held back: an earlier event with key " + strconv.Quote(key) + " failed in this batch"}
}
