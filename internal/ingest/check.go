package ingest

import (
	"fmt"
	"net/http"

	"github.com/google/uuid"

	"github.com/txoutbox/txoutbox/internal/envelope"
	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/topics"
)

// Limits on an event's envelope, so that what is stored can be indexed and
// what is logged stays readable. An event beyond them fails validation.
const (
	// MaxIDBytes bounds an event id (and a job or causation id).
	MaxIDBytes = 256
	// MaxTenantBytes bounds a tenant.
	MaxTenantBytes = 256
	// MaxKeyBytes bounds the ordering key and the dedupe key.
	MaxKeyBytes = 1024
	// MaxBatchEvents bounds the events of a CloudEvents batch; a bc-events
	// bulk post takes at most wire.BriteBulkMax.
	MaxBatchEvents = 10_000
)

// Check validates an event and completes it: the envelope limits (the
// target's levels included; which levels a target must name is
// Config.CheckFunc's to say), the actor type, and with a registry the topic (named exactly), the actor id and the
// data's schema. It sets the topic's parts when the format carries only its
// name (from the registry, or else from the name when it follows the naming
// rule), and the key when the format did not carry one.
func Check(reg *topics.Registry, ev *wire.Event) error {
	if ev.Category == "" {
		ev.Category, ev.Entity, ev.Action, _ = wire.SplitTopic(ev.Topic)
	}
	for _, f := range []struct {
		name string
		v    string
		max  int
	}{
		{"id", ev.ID, MaxIDBytes}, {"job id", ev.JobID, MaxIDBytes}, {"causation id", ev.CausationID, MaxIDBytes},
		{"tenant", ev.Tenant, MaxTenantBytes}, {"key", ev.Key, MaxKeyBytes}, {"dedupe key", ev.DedupeKey, MaxKeyBytes},
	} {
		if len(f.v) > f.max {
			return fmt.Errorf("%s of %d bytes, at most %d", f.name, len(f.v), f.max)
		}
	}
	if err := envelope.CheckTargetLevels(ev.Target.Collection, ev.Target.Project, ev.Target.Layout); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if ev.ActorType != "" && ev.ActorType != outbox.ActorUser && ev.ActorType != outbox.ActorService && ev.ActorType != outbox.ActorThirdParty {
		return fmt.Errorf("actor type %q: want %s, %s or %s", ev.ActorType, outbox.ActorUser, outbox.ActorService, outbox.ActorThirdParty)
	}
	if reg == nil {
		return nil
	}
	if ev.ActorID != "" {
		if err := envelope.CheckActorID(ev.ActorID); err != nil {
			return fmt.Errorf("actor id: %w", err)
		}
	}
	t, ok := reg.Topic(ev.Topic)
	switch {
	case ok && t.Name != ev.Topic:
		return fmt.Errorf("%w: %s (names are exact on the wire: did you mean %s?)", topics.ErrUnknownTopic, ev.Topic, t.Name)
	case !ok && ev.Category != "":
		if _, err := reg.Lookup(ev.Category, ev.Entity, ev.Action); err != nil {
			return err // names the closest topic
		}
		fallthrough
	case !ok:
		return fmt.Errorf("%w: %s", topics.ErrUnknownTopic, ev.Topic)
	}
	key, err := t.Validate(ev.Data)
	if err != nil {
		return err
	}
	ev.Topic, ev.Category, ev.Entity, ev.Action = t.Name, t.Category, t.Entity, t.Action
	if ev.Key == "" {
		ev.Key = key
	}
	return nil
}

// briteEnvelope sets on the events of a bc-events post what its headers
// carry: ids (one per event, in order; new UUIDv7s when the post carries
// none), the job id, tenant, traceparent and target, and the dedupe keys.
func briteEnvelope(h http.Header, evs []wire.Event, bulk bool) error {
	var ids []string
	if bulk {
		ids = wire.EventIDsFromHeader(h)
		if len(ids) != 0 && len(ids) != len(evs) {
			return fmt.Errorf("%s lists %d ids for %d records", wire.HeaderEventIDs, len(ids), len(evs))
		}
	} else if id := h.Get(wire.HeaderIdempotencyKey); id != "" {
		ids = []string{id}
	}
	dedupe, err := wire.DedupeKeysFromHeader(h)
	if err != nil {
		return err
	}
	if len(dedupe) > 0 && len(ids) == 0 {
		return fmt.Errorf("%s names events by id, and the post carries no ids (%s)", wire.HeaderDedupeKeys, idHeader(bulk))
	}
	target, err := wire.TargetFromHeader(h)
	if err != nil {
		return err
	}
	jobID, tenant, traceparent := h.Get(wire.HeaderJobID), h.Get(wire.HeaderTenant), h.Get(wire.HeaderTraceparent)
	for i := range evs {
		ev := &evs[i]
		if len(ids) > 0 {
			ev.ID = ids[i]
		} else {
			ev.ID = uuid.Must(uuid.NewV7()).String()
		}
		ev.JobID, ev.Tenant, ev.Traceparent, ev.Target = jobID, tenant, traceparent, target
		if k, ok := dedupe[ev.ID]; ok {
			ev.DedupeKey = k
			delete(dedupe, ev.ID)
		}
	}
	for id := range dedupe {
		return fmt.Errorf("%s names event %q, which the post does not carry", wire.HeaderDedupeKeys, id)
	}
	return nil
}

func idHeader(bulk bool) string {
	if bulk {
		return wire.HeaderEventIDs
	}
	return wire.HeaderIdempotencyKey
}
