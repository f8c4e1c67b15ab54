package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/internal/walmsg"
)

// Storage says where Flush writes events.
type Storage string

const (
	// StorageTable writes one row per event into the outbox table, which
	// every relay mode reads.
	StorageTable Storage = "table"

	// StorageMessages writes no row: each Flush emits its events as one
	// transactional logical decoding message (pg_logical_emit_message),
	// which PostgreSQL keeps in the write-ahead log for the outbox's
	// replication slot until a relay in relay.ModeMessages has delivered
	// it. It saves the table insert, its index entries, the relay's DELETE
	// and the vacuum behind them.
	//
	// It needs wal_level=logical and the slot, which Migrate creates with
	// MigrateConfig.Messages (txoutbox migrate --messages). Flush refuses
	// with ErrNoSlot while the slot is missing or lost, so no event is
	// emitted that no relay would read; the caller's transaction must then
	// roll back. Dedupe keys are carried to the sink but not enforced: with
	// no row, nothing remembers an earlier event's key.
	StorageMessages Storage = "messages"
)

// ErrNoSlot is wrapped by Flush's error in StorageMessages when the
// outbox's replication slot is missing or lost: run txoutbox migrate
// --messages (or Migrate with MigrateConfig.Messages) to create it. When
// it existed before, that refuses with a *SlotLostError, and creating it
// again needs --recreate-lost-slot (MigrateConfig.RecreateLostSlot).
var ErrNoSlot = errors.New("outbox: the replication slot of message storage is missing or lost: create it with txoutbox migrate --messages (--recreate-lost-slot when it was lost)")

// emit writes events as one logical decoding message, if the outbox's slot
// is there to keep it.
func (c *Client) emit(ctx context.Context, db outboxsql.DB, events []*Event) error {
	// The database, and the search_path's schema unless Config.Schema
	// names one, asked once: the message's prefix and the slot's name
	// hold them.
	where := c.msgWhere.Load()
	if where == nil {
		var w msgWhere
		if err := db.QueryRow(ctx, "SELECT current_database(), current_schema()").Scan(&w.database, &w.schema); err != nil {
			return fmt.Errorf("emit events: current database: %w", err)
		}
		w.schema = cmp.Or(c.cfg.Schema, w.schema)
		w.prefix, w.slot = walmsg.Prefix(w.schema), walmsg.Slot(w.database, w.schema)
		c.msgWhere.Store(&w)
		where = &w
	}
	msg := make([]walmsg.Event, len(events))
	for i, e := range events {
		msg[i] = walmsg.Event{
			ID: e.ID.String(), Topic: e.Topic, Category: e.Category, Entity: e.Entity, Action: e.Action,
			Data: e.Data, ActorID: e.ActorID, ActorType: e.ActorType, JobID: e.JobID, Source: e.Source,
			Key: e.Key, Traceparent: e.Traceparent, Tenant: e.Tenant, CausationID: e.CausationID,
			DedupeKey: e.DedupeKey, Collection: e.Target.Collection, Project: e.Target.Project,
			Layout: e.Target.Layout, Time: e.Time,
		}
	}
	body, err := walmsg.Encode(msg)
	if err != nil {
		return fmt.Errorf("emit events: %w", err)
	}
	tag, err := db.Exec(ctx, outboxsql.EmitMessage, where.prefix, body, where.slot)
	if err != nil {
		return fmt.Errorf("emit events: %w", err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("emit events: %w (slot %s)", ErrNoSlot, where.slot)
	}
	return nil
}

// ErrSlotLost is matched by a *SlotLostError.
var ErrSlotLost = errors.New("outbox: the replication slot of message storage was lost")

// SlotLostError is returned by CreateMessageSlot (and so by Migrate with
// MigrateConfig.Messages) when the outbox's record says the slot of message
// storage existed, but the server has lost it: dropped, or invalidated
// because its WAL went past max_slot_wal_keep_size. The events committed
// after its last confirmed position were never delivered, and a slot
// created again under the same name would not read them: creating it
// needs MessageSlotConfig.RecreateLost (txoutbox migrate --messages
// --recreate-lost-slot), which acknowledges the loss.
type SlotLostError struct {
	// Slot is the slot's name.
	Slot string
	// CreatedLSN and CreatedAt are the lost slot's, as recorded when it
	// was created (for a slot created before the record existed, its
	// confirmed position and the time it was first recorded); both empty
	// when it was lost before it was recorded.
	CreatedLSN string
	CreatedAt  time.Time
	// ConfirmedLSN is the last position its relay confirmed when the
	// server still has the slot, invalidated; "" when it was dropped.
	ConfirmedLSN string
}

func (e *SlotLostError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "outbox: the replication slot %s of message storage", e.Slot)
	if e.CreatedLSN != "" {
		fmt.Fprintf(&b, ", created at %s on %s,", e.CreatedLSN, e.CreatedAt.UTC().Format(time.RFC3339))
	}
	if e.ConfirmedLSN != "" {
		fmt.Fprintf(&b, " was lost (invalidated; last confirmed at %s): ", e.ConfirmedLSN)
	} else {
		b.WriteString(" was lost (dropped): ")
	}
	b.WriteString(walmsg.LostRecovery)
	return b.String()
}

// Unwrap returns ErrSlotLost.
func (e *SlotLostError) Unwrap() error { return ErrSlotLost }

// MessageSlotConfig configures CreateMessageSlot. The zero value creates
// the slot of the search_path's outbox.
type MessageSlotConfig struct {
	// Schema of the outbox the slot is for. Defaults to the connection's
	// search_path. Use the same value in Config.Schema.
	Schema string

	// RecreateLost creates the slot again when the outbox's record says it
	// was lost, acknowledging that the events committed after its last
	// confirmed position were not delivered (MessageSlot.Lost says since
	// when). Without it CreateMessageSlot returns a *SlotLostError.
	RecreateLost bool
}

// MessageSlot is the slot CreateMessageSlot created or found.
type MessageSlot struct {
	// Name is the slot's name, as in pg_replication_slots.
	Name string
	// Created reports whether CreateMessageSlot created it.
	Created bool
	// CreatedLSN and CreatedAt are the slot's record: the position it was
	// created at, and when.
	CreatedLSN string
	CreatedAt  time.Time
	// Lost is the lost slot that MessageSlotConfig.RecreateLost replaced;
	// nil when there was none.
	Lost *SlotLostError
}

// CreateMessageSlot creates the durable logical replication slot that
// StorageMessages emits for and relay.ModeMessages reads, unless it
// exists, and records it in the outbox's tables (migration 009): its name,
// the position it was created at, and when. Migrate calls it with
// MigrateConfig.Messages. A slot that exists but has no record yet (one
// created before the record existed) is recorded as it is.
//
// When the record says the slot existed but the server has lost it, the
// events after its last confirmed position can no longer be read, and a
// new slot would silently start after them: CreateMessageSlot returns a
// *SlotLostError, unless cfg.RecreateLost acknowledges the loss; then it
// drops what is left of the lost slot, creates it again, and returns the
// loss in MessageSlot.Lost.
//
// It needs wal_level=logical and a role with the REPLICATION attribute,
// and waits for the transactions running when it creates the slot to end.
// Callers for the same slot serialize on a transaction-scoped advisory
// lock.
func CreateMessageSlot(ctx context.Context, db Beginner, cfg *MessageSlotConfig) (*MessageSlot, error) {
	if cfg == nil {
		cfg = &MessageSlotConfig{}
	}
	if err := checkSchema(cfg.Schema); err != nil {
		return nil, fmt.Errorf("create replication slot: MessageSlotConfig.Schema: %w", err)
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("create replication slot: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var database, current string
	if err := tx.QueryRow(ctx, "SELECT current_database(), current_schema()").Scan(&database, &current); err != nil {
		return nil, fmt.Errorf("create replication slot: %w", err)
	}
	s := &MessageSlot{Name: walmsg.Slot(database, cmp.Or(cfg.Schema, current))}
	// Nothing before the slot's creation writes: a slot cannot be created
	// in a transaction that wrote.
	if err := outboxsql.LockMessageSlot(ctx, tx, s.Name); err != nil {
		return nil, err
	}
	rec, err := outboxsql.ReadMessageSlotRecord(ctx, tx, cfg.Schema, s.Name)
	if err != nil {
		return nil, err
	}
	state, err := outboxsql.ReadMessageSlotState(ctx, tx, s.Name)
	if err != nil {
		return nil, err
	}
	switch {
	case state.Exists && !state.Lost && rec != nil:
		s.CreatedLSN, s.CreatedAt = rec.CreatedLSN, rec.CreatedAt
		return s, nil
	case state.Exists && !state.Lost:
		// Created before the record existed: recorded as it is now.
		rec, err = outboxsql.WriteMessageSlotRecord(ctx, tx, cfg.Schema, s.Name, state.ConfirmedLSN)
		if err != nil {
			return nil, err
		}
		s.CreatedLSN, s.CreatedAt = rec.CreatedLSN, rec.CreatedAt
		return s, tx.Commit(ctx)
	case rec != nil || state.Exists:
		lost := &SlotLostError{Slot: s.Name, ConfirmedLSN: state.ConfirmedLSN}
		if rec != nil {
			lost.CreatedLSN, lost.CreatedAt = rec.CreatedLSN, rec.CreatedAt
		}
		if !cfg.RecreateLost {
			return s, fmt.Errorf("create replication slot: %w", lost)
		}
		s.Lost = lost
		if state.Exists {
			if err := outboxsql.DropMessageSlot(ctx, tx, s.Name); err != nil {
				return nil, err
			}
		}
	}
	lsn, err := outboxsql.CreateMessageSlot(ctx, tx, s.Name)
	if err != nil {
		return nil, err
	}
	if rec, err = outboxsql.WriteMessageSlotRecord(ctx, tx, cfg.Schema, s.Name, lsn); err != nil {
		return nil, err
	}
	s.Created, s.CreatedLSN, s.CreatedAt = true, rec.CreatedLSN, rec.CreatedAt
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("create replication slot %s: %w", s.Name, err)
	}
	return s, nil
}

// msgWhere is where StorageMessages emits: the prefix of its messages and
// the slot that keeps them.
type msgWhere struct {
	database, schema string
	prefix, slot     string
}
