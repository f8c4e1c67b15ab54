package outbox

import (
	"encoding/json"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
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

// Message returns the event as the watermill message the outbox writes and
// the relay delivers: UUID = ID, payload = Data, metadata = the Meta* keys.
func (e *Event) Message() *message.Message {
	md := message.Metadata{
		MetaTopic:     e.Topic,
		MetaCategory:  e.Category,
		MetaEntity:    e.Entity,
		MetaAction:    e.Action,
		MetaActorID:   e.ActorID,
		MetaActorType: e.ActorType,
		MetaJobID:     e.JobID,
		MetaSource:    e.Source,
		MetaKey:       e.Key,
		MetaTime:      e.Time.UTC().Format(time.RFC3339Nano),
	}
	setIf(md, MetaTraceparent, e.Traceparent)
	setIf(md, MetaTenant, e.Tenant)
	setIf(md, MetaCausationID, e.CausationID)
	setIf(md, MetaDedupeKey, e.DedupeKey)
	m := message.NewMessage(e.ID.String(), message.Payload(e.Data))
	m.Metadata = md
	return m
}

func setIf(md message.Metadata, k, v string) {
	if v != "" {
		md[k] = v
	}
}
