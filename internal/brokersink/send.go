package brokersink

import (
	"context"
	"errors"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// WaveFunc sends the events of one wave, oldest first, and returns one error
// per event: nil for an event the broker acknowledged, an error wrapping
// relay.ErrNotSent for one it did not send at all, else why it failed.
type WaveFunc func(ctx context.Context, wave []*outbox.Event) []error

// Send delivers events in waves and returns what a relay.Sink returns.
//
// A wave holds each key's next event and, while together(prev, next) says
// so, the key's events after it: a broker that keeps the order of what one
// client sends to one place (a Kafka partition) can take them in one go;
// together == nil sends one event per key and wave, each after the
// broker acknowledged the key's previous one. Keys do not wait for each
// other within a wave.
//
// After a wave, a key whose event failed sends nothing more in this call
// (relay.Outcome holds its later events back), and its events that failed
// later in the same wave, which the broker dropped with the first, are
// reported not sent. A wave that delivered nothing and failed retryably
// ends the call: the broker is taken to be down and the rest is not sent.
// SendCut is checked before each wave.
func Send(ctx context.Context, events []*outbox.Event, together func(prev, next *outbox.Event) bool, send WaveFunc) error {
	o := relay.NewOutcome(events)
	pending := events
	for {
		pending = o.Sendable(pending)
		if len(pending) == 0 {
			break
		}
		if err := relay.SendCut(ctx); err != nil {
			o.NotSent(pending, err)
			break
		}
		wave, rest := split(pending, together)
		down := record(o, wave, send(ctx, wave))
		if down != nil && len(rest) > 0 {
			o.NotSent(rest, down)
			break
		}
		pending = rest
	}
	return o.Err()
}

// record records the outcome of a wave and returns the error that failed it
// whole, retryably, if it did.
func record(o *relay.Outcome, wave []*outbox.Event, errs []error) (down error) {
	failed := make(map[string]bool)
	delivered, permanent := 0, false
	for i, ev := range wave {
		err := errs[i]
		switch {
		case err == nil:
			delivered++
			continue
		case errors.Is(err, relay.ErrNotSent) || failed[ev.Key]:
			o.NotSent([]*outbox.Event{ev}, err)
		default:
			o.Fail(err, ev)
			permanent = permanent || relay.IsPermanent(err)
			if down == nil {
				down = err
			}
		}
		failed[ev.Key] = true
	}
	if delivered > 0 || permanent || down == nil {
		return nil
	}
	return down
}

// split returns the wave to send now and the events left for later waves,
// each in the order of events.
func split(events []*outbox.Event, together func(prev, next *outbox.Event) bool) (wave, rest []*outbox.Event) {
	last := make(map[string]*outbox.Event)
	closed := make(map[string]bool)
	for _, ev := range events {
		prev, in := last[ev.Key]
		if closed[ev.Key] || in && (together == nil || !together(prev, ev)) {
			closed[ev.Key] = true
			rest = append(rest, ev)
			continue
		}
		last[ev.Key] = ev
		wave = append(wave, ev)
	}
	return wave, rest
}
