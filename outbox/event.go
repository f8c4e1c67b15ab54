package outbox

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Event is one published event: the bc-events envelope (category, entity,
// action, data, actor, job id) plus what an at-least-once pipeline needs (a
// stable id, the time, the ordering key, the trace context).
type Event struct {
	// ID is the event's stable id, a UUIDv7 assigned at Publish. It is sent
	// unchanged on every delivery attempt, so consumers dedupe by it.
	ID uuid.UUID
	// Topic is {category}.{Entity}{Action}, e.g. billing.InvoiceCreated.
	Topic    string
	Category string
	Entity   string
	Action   string
	// Data is the event's data as JSON, validated against the topic's schema.
	Data      json.RawMessage
	ActorID   string
	ActorType string // ActorUser, ActorService or ActorThirdParty
	JobID     string
	Source    string
	// Key orders delivery: events with the same key arrive in order.
	Key         string
	Traceparent string
	Tenant      string
	CausationID string
	DedupeKey   string
	// Target scopes the event to a collection, a project or a layout
	// (WithTarget); zero when the event has none.
	Target Target
	Time   time.Time
}

// Target is the place an event is about, in a three-level hierarchy: a
// collection holds projects, a project holds layouts. It names its levels
// from the top: a layout with its project and collection, a project with
// its collection, or a collection alone. The events API delivers an event
// at a place to the subscribers of that place, of the places above it and
// of the places below it (see package eventsapi).
type Target struct {
	Collection string
	Project    string
	Layout     string
}

// IsZero reports whether t names no place.
func (t Target) IsZero() bool { return t == Target{} }

// String writes t's levels from the top, separated by "/".
func (t Target) String() string {
	switch {
	case t.Layout != "":
		return t.Collection + "/" + t.Project + "/" + t.Layout
	case t.Project != "":
		return t.Collection + "/" + t.Project
	}
	return t.Collection
}
