package outbox

import (
	"cmp"
	"context"
	"errors"
	"fmt"

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
// --messages (or Migrate with MigrateConfig.Messages) to create it.
var ErrNoSlot = errors.New("outbox: the replication slot of message storage is missing or lost: create it with txoutbox migrate --messages")

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

// CreateMessageSlot creates the durable logical replication slot that
// StorageMessages emits for and relay.ModeMessages reads, for the outbox in
// schema ("" for the search_path's), unless it exists; it returns the
// slot's name and whether it created it. Migrate calls it with
// MigrateConfig.Messages. It needs wal_level=logical and a role with the
// REPLICATION attribute, and waits for the transactions running when it
// starts to end.
func CreateMessageSlot(ctx context.Context, db Beginner, schema string) (slot string, created bool, err error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return "", false, err
	}
	defer func() { _ = tx.Rollback(ctx) }()
	var database, current string
	if err := tx.QueryRow(ctx, "SELECT current_database(), current_schema()").Scan(&database, &current); err != nil {
		return "", false, err
	}
	slot = walmsg.Slot(database, cmp.Or(schema, current))
	// Run first in its transaction, which has written nothing: a slot
	// cannot be created after a write.
	if err := tx.QueryRow(ctx, outboxsql.CreateMessageSlot, slot).Scan(&created); err != nil {
		return slot, false, fmt.Errorf("create replication slot %s: %w", slot, err)
	}
	return slot, created, tx.Commit(ctx)
}

// msgWhere is where StorageMessages emits: the prefix of its messages and
// the slot that keeps them.
type msgWhere struct {
	database, schema string
	prefix, slot     string
}
