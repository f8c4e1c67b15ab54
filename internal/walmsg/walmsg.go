// Package walmsg is the encoding of the events a Flush emits as one
// transactional logical decoding message (pg_logical_emit_message) in the
// outbox's message storage, read back by the relay's ModeMessages.
//
// A message is a version byte, then a JSON array of events. Fields that are
// empty are left out; Data is the event's data exactly as published.
package walmsg

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Version is the first byte of every message this package encodes.
const Version byte = 1

// PrefixBase starts every message's prefix; the schema the events belong to
// follows it (see Prefix).
const PrefixBase = "txoutbox:"

// Prefix is the logical decoding message prefix of the outbox in schema,
// resolved: never "" (the search_path's current schema stands for it).
func Prefix(schema string) string { return PrefixBase + schema }

// Event is one event of a message: outbox.Event's fields.
type Event struct {
	ID          string          `json:"id"`
	Topic       string          `json:"topic"`
	Category    string          `json:"category"`
	Entity      string          `json:"entity"`
	Action      string          `json:"action"`
	Data        json.RawMessage `json:"data"`
	ActorID     string          `json:"actor_id"`
	ActorType   string          `json:"actor_type"`
	JobID       string          `json:"job_id"`
	Source      string          `json:"source"`
	Key         string          `json:"key"`
	Traceparent string          `json:"traceparent,omitempty"`
	Tenant      string          `json:"tenant,omitempty"`
	CausationID string          `json:"causation_id,omitempty"`
	DedupeKey   string          `json:"dedupe_key,omitempty"`
	Collection  string          `json:"target_collection,omitempty"`
	Project     string          `json:"target_project,omitempty"`
	Layout      string          `json:"target_layout,omitempty"`
	Time        time.Time       `json:"time"`
}

// Encode returns the message holding events.
func Encode(events []Event) ([]byte, error) {
	b, err := json.Marshal(events)
	if err != nil {
		return nil, fmt.Errorf("encode events: %w", err)
	}
	return append([]byte{Version}, b...), nil
}

// ErrVersion is returned by Decode for a message of another version.
var ErrVersion = errors.New("walmsg: unknown message version")

// Decode returns the events of a message Encode made.
func Decode(msg []byte) ([]Event, error) {
	if len(msg) == 0 || msg[0] != Version {
		return nil, ErrVersion
	}
	var events []Event
	if err := json.Unmarshal(msg[1:], &events); err != nil {
		return nil, fmt.Errorf("walmsg: decode events: %w", err)
	}
	return events, nil
}

// SlotPrefix starts the name of every slot Slot returns.
const SlotPrefix = "txoutbox_messages_"

// LostRecovery says what a lost or missing slot of message storage means
// and how to recover: the relay logs it, and txoutbox status and the
// console show it beside a lost slot.
const LostRecovery = "events committed since the slot's last confirmed position can no longer be read from the WAL, " +
	"and Flush refuses to emit until the slot is back; create it again with txoutbox migrate --messages --recreate-lost-slot, " +
	"which acknowledges the loss (without it migrate refuses, so that no deploy replaces a lost slot unnoticed), " +
	"then compare the producers' records with the consumers' for the gap"

// Slot is the name of the durable replication slot ModeMessages streams
// for the outbox in schema (resolved, as for Prefix) of database: slot
// names are the server's, not a database's. It is txoutbox_messages_, then
// database and schema in the characters a slot name may have, [a-z0-9_],
// joined by "_"; when they had others, or made the name too long, they are
// cut short and a hash of both follows.
func Slot(database, schema string) string {
	const base = SlotPrefix
	db, dbChanged := slotChars(database)
	sc, scChanged := slotChars(schema)
	name := base + db + "_" + sc
	if !dbChanged && !scChanged && len(name) <= 63 {
		return name
	}
	db, sc = db[:min(len(db), 16)], sc[:min(len(sc), 16)]
	return fmt.Sprintf("%s%s_%s_%08x", base, db, sc, fnv32(database+"\x00"+schema))
}

// slotChars maps s to [a-z0-9_], reporting whether it changed anything.
func slotChars(s string) (string, bool) {
	clean := make([]byte, 0, len(s))
	changed := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '_':
			clean = append(clean, c)
		case c >= 'A' && c <= 'Z':
			clean, changed = append(clean, c+'a'-'A'), true
		default:
			clean, changed = append(clean, '_'), true
		}
	}
	return string(clean), changed
}

// fnv32 is FNV-1a: a hash both the relay and the producers compute.
func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// Spilled is an event the relay could not deliver from the stream, as it
// writes it into the outbox table: the event's fields, with those of its
// row's delivery state.
type Spilled struct {
	Event
	Dead     bool   `json:"dead"`
	Attempts int32  `json:"attempts"`
	WaitUS   int64  `json:"wait_us"` // the next attempt is due this long from now
	Error    string `json:"error,omitempty"`
}
