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
	Time        time.Time
}
