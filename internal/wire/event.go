package wire

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
)

// Format names a wire format of the events API.
type Format string

// The wire formats the relay's HTTP sink speaks and the local sink accepts.
const (
	// FormatBriteEvents is the bc-events API contract: POST /events for one
	// event, POST /events/bulk/ for up to [BriteBulkMax].
	FormatBriteEvents Format = "briteevents"
	// FormatCloudEvents is CloudEvents 1.0 JSON, batched.
	FormatCloudEvents Format = "cloudevents"
)

// ParseFormat accepts a format name as written in flags and config files.
func ParseFormat(s string) (Format, error) {
	switch Format(strings.ToLower(strings.TrimSpace(s))) {
	case FormatBriteEvents:
		return FormatBriteEvents, nil
	case FormatCloudEvents:
		return FormatCloudEvents, nil
	}
	return "", fmt.Errorf("unknown wire format %q (want %q or %q)", s, FormatBriteEvents, FormatCloudEvents)
}

// Event is the outbox envelope in a shape independent of any wire format.
// Data is the event data as published: a JSON value, normally an object.
type Event struct {
	ID       string
	Topic    string // {category}.{Entity}{Action}
	Category string
	Entity   string
	Action   string
	Data     json.RawMessage
	// DataValid says Data is known to hold one JSON value, so the encoders
	// copy it without checking it again. FromOutbox sets it: the data was
	// read from the outbox table's json column, which PostgreSQL validated
	// on insert, after Publish had validated it against the topic's schema.
	// Checking it again would be a third pass over every byte, and a
	// quarter of the HTTP sink's work.
	DataValid   bool
	ActorID     string
	ActorType   string
	JobID       string
	Source      string
	Key         string
	Traceparent string
	Tenant      string
	CausationID string
	// DedupeKey, when set, makes the event idempotent by key as well as by
	// id: an events API that already holds an event of the same tenant with
	// the same key takes this one as a duplicate.
	DedupeKey string
	// Target is the place the event is about (outbox.WithTarget); the
	// receiver checks it.
	Target outbox.Target
	Time   time.Time
}

// topicNameRE splits a topic name into its parts: the action is the last
// capitalised word (the naming rule of topic_definitions.yaml: category
// ^[a-z]+$, entity ^([A-Z][a-z]+)+$, action ^[A-Z][a-z]+$).
var topicNameRE = regexp.MustCompile(`^([a-z]+)\.((?:[A-Z][a-z]+)+)([A-Z][a-z]+)$`)

// SplitTopic returns the parts of a topic name built by TopicName:
// billing.LineItemCreated is billing, LineItem, Created. A name that does
// not follow the naming rule has no parts (ok false).
func SplitTopic(topic string) (category, entity, action string, ok bool) {
	m := topicNameRE.FindStringSubmatch(topic)
	if m == nil {
		return "", "", "", false
	}
	return m[1], m[2], m[3], true
}

// ErrInvalidEvent is wrapped by every error that reports an event missing a
// field its wire format needs, or carrying one it cannot represent.
var ErrInvalidEvent = errors.New("invalid event")

// TopicName builds a topic name from its parts, as topic_definitions.yaml
// defines it: billing + Invoice + Created is billing.InvoiceCreated.
func TopicName(category, entity, action string) string {
	return category + "." + entity + action
}

// FromOutbox returns the envelope of an event as the relay reads it from the
// outbox table. It does not parse the data: the table's json column holds
// only valid JSON (see Event.DataValid). It refuses only
// what the encoders could not write at all: no topic, or no data.
func FromOutbox(e *outbox.Event) (Event, error) {
	ev := Event{
		ID:          e.ID.String(),
		Topic:       e.Topic,
		Category:    e.Category,
		Entity:      e.Entity,
		Action:      e.Action,
		Data:        e.Data,
		DataValid:   true,
		ActorID:     e.ActorID,
		ActorType:   e.ActorType,
		JobID:       e.JobID,
		Source:      e.Source,
		Key:         e.Key,
		Traceparent: e.Traceparent,
		Tenant:      e.Tenant,
		CausationID: e.CausationID,
		DedupeKey:   e.DedupeKey,
		Target:      e.Target,
		Time:        e.Time,
	}
	if ev.Topic == "" && ev.Category != "" && ev.Entity != "" && ev.Action != "" {
		ev.Topic = TopicName(ev.Category, ev.Entity, ev.Action)
	}
	switch {
	case ev.Topic == "":
		return Event{}, fmt.Errorf("%w: event %s: no topic", ErrInvalidEvent, ev.ID)
	case len(ev.Data) == 0:
		return Event{}, fmt.Errorf("%w: event %s: no data", ErrInvalidEvent, ev.ID)
	}
	return ev, nil
}
