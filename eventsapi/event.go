package eventsapi

import (
	"encoding/json"
	"time"
)

// Event is an event as the events API stored it: the outbox envelope, the
// data as published, and where the store put it.
type Event struct {
	// Position is the event's place in the store's stream, assigned when it
	// was stored: positions grow in the order readers can see events, so a
	// reader that has seen position P has seen every stored event before it.
	// Positions may have gaps.
	Position int64 `json:"position"`
	// ID is the event id the publisher assigned (a UUIDv7 for events from
	// the outbox). The store keeps one event per id.
	ID       string `json:"id"`
	Topic    string `json:"topic"` // {category}.{Entity}{Action}
	Category string `json:"category"`
	Entity   string `json:"entity"`
	Action   string `json:"action"`
	// Key is the ordering key: the id of the resource the event is about.
	Key string `json:"key,omitempty"`
	// Tenant is the organisation the event belongs to; a key bound to a
	// tenant sees only that tenant's events.
	Tenant      string `json:"tenant,omitempty"`
	ActorID     string `json:"actor_id,omitempty"`
	ActorType   string `json:"actor_type,omitempty"`
	JobID       string `json:"job_id,omitempty"`
	CausationID string `json:"causation_id,omitempty"`
	// DedupeKey, when set, makes the event idempotent by key as well as by
	// id: a later event of the same tenant with the same DedupeKey is a
	// duplicate.
	DedupeKey   string `json:"dedupe_key,omitempty"`
	Source      string `json:"source,omitempty"`
	Traceparent string `json:"traceparent,omitempty"`
	// Format is the wire format the event arrived in: briteevents or
	// cloudevents.
	Format string `json:"format,omitempty"`
	// Time is when the event was published; ReceivedAt when it was stored.
	// A store sets Time to ReceivedAt for events that carry no publish time.
	Time       time.Time       `json:"time"`
	ReceivedAt time.Time       `json:"received_at"`
	Data       json.RawMessage `json:"data"`
}
