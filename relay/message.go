package relay

import (
	"encoding/json"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/txoutbox/txoutbox/outbox"
)

// tableEvents is the outbox table (outbox.TableEvents).
const tableEvents = "txoutbox_events"

// event is an outbox row's envelope, as outbox.Event has it.
type event struct {
	ID          uuid.UUID
	Topic       string
	Category    string
	Entity      string
	Action      string
	Data        json.RawMessage
	ActorID     string
	ActorType   string
	JobID       string
	Source      string
	Key         string
	Traceparent string
	Tenant      string
	CausationID string
	DedupeKey   string
	Time        time.Time
}

// Message returns the event as sinks get it: UUID = ID, payload = Data,
// metadata = the outbox.Meta* keys.
func (e *event) Message() *message.Message {
	md := message.Metadata{
		outbox.MetaTopic:     e.Topic,
		outbox.MetaCategory:  e.Category,
		outbox.MetaEntity:    e.Entity,
		outbox.MetaAction:    e.Action,
		outbox.MetaActorID:   e.ActorID,
		outbox.MetaActorType: e.ActorType,
		outbox.MetaJobID:     e.JobID,
		outbox.MetaSource:    e.Source,
		outbox.MetaKey:       e.Key,
		outbox.MetaTime:      e.Time.UTC().Format(time.RFC3339Nano),
	}
	setIf(md, outbox.MetaTraceparent, e.Traceparent)
	setIf(md, outbox.MetaTenant, e.Tenant)
	setIf(md, outbox.MetaCausationID, e.CausationID)
	setIf(md, outbox.MetaDedupeKey, e.DedupeKey)
	m := message.NewMessage(e.ID.String(), message.Payload(e.Data))
	m.Metadata = md
	return m
}

func setIf(md message.Metadata, k, v string) {
	if v != "" {
		md[k] = v
	}
}
