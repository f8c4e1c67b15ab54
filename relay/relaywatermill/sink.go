package relaywatermill

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// Metadata keys of the event envelope on a message.
const (
	MetaTopic       = "topic"        // billing.InvoiceCreated
	MetaCategory    = "category"     // billing
	MetaEntity      = "entity"       // Invoice
	MetaAction      = "action"       // Created
	MetaActorID     = "actor_id"     // the user, service or third party that caused the event
	MetaActorType   = "actor_type"   // user, service or third-party
	MetaJobID       = "job_id"       // correlation id shared by the events of one request or job
	MetaSource      = "source"       // the publishing service's name
	MetaKey         = "key"          // ordering key
	MetaTraceparent = "traceparent"  // W3C trace context of the publishing request
	MetaTenant      = "tenant"       // optional tenant id
	MetaCausationID = "causation_id" // optional id of the event that caused this one
	MetaDedupeKey   = "dedupe_key"   // optional; a repeat publish with the same key is a no-op
	MetaTime        = "time"         // publish time, RFC 3339 with nanoseconds
)

// Message returns ev as a watermill message: UUID = ev.ID, payload =
// ev.Data, metadata = the Meta* keys (the optional ones only when set). The
// message holds its own copy of the data.
func Message(ev *outbox.Event) *message.Message {
	md := message.Metadata{
		MetaTopic:     ev.Topic,
		MetaCategory:  ev.Category,
		MetaEntity:    ev.Entity,
		MetaAction:    ev.Action,
		MetaActorID:   ev.ActorID,
		MetaActorType: ev.ActorType,
		MetaJobID:     ev.JobID,
		MetaSource:    ev.Source,
		MetaKey:       ev.Key,
		MetaTime:      ev.Time.UTC().Format(time.RFC3339Nano),
	}
	for k, v := range map[string]string{
		MetaTraceparent: ev.Traceparent,
		MetaTenant:      ev.Tenant,
		MetaCausationID: ev.CausationID,
		MetaDedupeKey:   ev.DedupeKey,
	} {
		if v != "" {
			md[k] = v
		}
	}
	m := message.NewMessage(ev.ID.String(), append(message.Payload(nil), ev.Data...))
	m.Metadata = md
	return m
}

// Config configures a Sink. The zero value is valid.
type Config struct {
	// TopicFunc returns the topic an event is published to on the broker.
	// It must be safe for concurrent use. Defaults to the event's topic
	// (billing.InvoiceCreated).
	TopicFunc func(*outbox.Event) string
}

// Sink is a [relay.Sink] that publishes to a watermill publisher.
type Sink struct {
	pub   message.Publisher
	topic func(*outbox.Event) string
}

var _ relay.Sink = (*Sink)(nil)

// New returns a sink publishing to pub, which stays the caller's to close.
// cfg may be nil for the defaults.
func New(pub message.Publisher, cfg *Config) (*Sink, error) {
	if pub == nil {
		return nil, fmt.Errorf("%w: relaywatermill: publisher is nil", relay.ErrInvalidConfig)
	}
	s := &Sink{pub: pub, topic: func(ev *outbox.Event) string { return ev.Topic }}
	if cfg != nil && cfg.TopicFunc != nil {
		s.topic = cfg.TopicFunc
	}
	return s, nil
}

// Send publishes events in one Publish call per run of the same topic, in
// order; once a call fails, the later events of its keys are held back. A
// publisher's error fails the whole call (watermill says nothing of
// single messages) and is retryable, unless the publisher marked it with
// relay.Permanent. Each message carries ctx.
func (s *Sink) Send(ctx context.Context, events []*outbox.Event) error {
	o := relay.NewOutcome(events)
	gs := groups(events, s.topic)
	for i, g := range gs {
		send := o.Sendable(g.events)
		if len(send) == 0 {
			continue
		}
		if err := relay.SendCut(ctx); err != nil {
			for _, rest := range gs[i:] {
				o.NotSent(rest.events, err)
			}
			break
		}
		msgs := make([]*message.Message, len(send))
		for j, ev := range send {
			msgs[j] = Message(ev)
			msgs[j].SetContext(ctx)
		}
		if err := publish(s.pub, g.topic, msgs); err != nil {
			o.Fail(err, send...)
		}
	}
	return o.Err()
}

// publish calls the publisher, turning a panic into an error.
func publish(pub message.Publisher, topic string, msgs []*message.Message) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("publisher panicked: %v", p)
		}
	}()
	return pub.Publish(topic, msgs...)
}

// group is one Publish call: consecutive events for one topic.
type group struct {
	topic  string
	events []*outbox.Event
}

// groups splits a batch into as few Publish calls as it can without
// reordering a key: each event joins the latest group of its topic if that
// group is not before the group holding the key's previous event, and
// opens a new group otherwise. Groups are published in order.
func groups(events []*outbox.Event, topicOf func(*outbox.Event) string) []group {
	var gs []group
	lastOfTopic := make(map[string]int)
	keyAt := make(map[string]int, len(events))
	for _, ev := range events {
		topic := topicOf(ev)
		g, ok := lastOfTopic[topic]
		if prev, seen := keyAt[ev.Key]; !ok || (seen && g < prev) {
			gs = append(gs, group{topic: topic})
			g = len(gs) - 1
			lastOfTopic[topic] = g
		}
		gs[g].events = append(gs[g].events, ev)
		keyAt[ev.Key] = g
	}
	return gs
}
