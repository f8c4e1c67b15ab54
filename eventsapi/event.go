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
	// Positions may have gaps. A job event (see [JobStore]) moves to a new
	// position each time it changes, taken as an append takes its: it
	// leaves its old position, so a reader resuming from a position before
	// the change finds the job once, in its latest state, and a live
	// subscriber receives each change as an event. A live-only event
	// (Live) has none: 0.
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
	// Format is the wire format the event arrived in: briteevents,
	// cloudevents, or api for events published through the service.
	Format string `json:"format,omitempty"`
	// Target scopes the event to a collection, a project or a layout; see
	// [Target] for who receives it.
	Target Target `json:"target,omitzero"`
	// Sender names who published the event: what the publisher said, else
	// the name of the key it presented. A process recognises (or filters
	// out, with an exclude selector on sender) its own events by it.
	Sender string `json:"sender,omitempty"`
	// RequestMetadata is free-form JSON the publisher attached about why
	// the event happened (the request that caused it, say).
	RequestMetadata json.RawMessage `json:"request_metadata,omitempty"`
	// DependsOn is, for a job event, the id of the source event it was
	// enrolled for.
	DependsOn string `json:"depends_on,omitempty"`
	// Status is a job event's state (JobPending, JobInProgress, ...);
	// empty for other events.
	Status JobStatus `json:"status,omitempty"`
	// Description is a job's description, which its worker may change.
	Description string `json:"description,omitempty"`
	// Retries counts how many times a job was restarted.
	Retries int `json:"retries,omitempty"`
	// UpdatedAt is when a job event last changed; zero for other events.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	// Live marks an event that was not stored: a publish that asked not to
	// be stored, or a job's progress. Live subscribers receive it when it
	// happens; it has no position, is not replayed on resume and queries
	// never see it.
	Live bool `json:"live,omitempty"`
	// Progress is a job's progress report (free-form JSON) on a live
	// event.
	Progress json.RawMessage `json:"progress,omitempty"`
	// Time is when the event was published; ReceivedAt when it was stored.
	// A store sets Time to ReceivedAt for events that carry no publish time.
	Time       time.Time       `json:"time"`
	ReceivedAt time.Time       `json:"received_at"`
	Data       json.RawMessage `json:"data"`
}
