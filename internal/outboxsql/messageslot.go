package outboxsql

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// MessageSlotState is the server's view of the durable slot of message
// storage.
type MessageSlotState struct {
	Exists bool
	// Lost reports a slot the server invalidated: its WAL was removed.
	Lost bool
	// ConfirmedLSN is the last position its reader confirmed.
	ConfirmedLSN string
}

// messageSlotState reads a slot; a logical slot whose restart_lsn is NULL
// was invalidated, as is one whose wal_status is lost.
const messageSlotState = `SELECT coalesce(wal_status = 'lost', false) OR restart_lsn IS NULL,
	coalesce(confirmed_flush_lsn::text, '')
FROM pg_replication_slots WHERE slot_name = $1::text`

// ReadMessageSlotState returns the server's state of slot.
func ReadMessageSlotState(ctx context.Context, db DB, slot string) (MessageSlotState, error) {
	s := MessageSlotState{Exists: true}
	err := db.QueryRow(ctx, messageSlotState, slot).Scan(&s.Lost, &s.ConfirmedLSN)
	if errors.Is(err, pgx.ErrNoRows) {
		return MessageSlotState{}, nil
	}
	if err != nil {
		return MessageSlotState{}, fmt.Errorf("read replication slot %s: %w", slot, err)
	}
	return s, nil
}

// MessageSlotRecord is the row of TableMessageSlots that txoutbox wrote
// when it created a slot of message storage (migrations/009).
type MessageSlotRecord struct {
	// CreatedLSN is the slot's consistent point when it was created (for
	// a slot created before the record existed, its confirmed position
	// when it was first recorded); CreatedAt when.
	CreatedLSN string
	CreatedAt  time.Time
}

// ReadMessageSlotRecord returns the record of slot in schema ("" for the
// search_path's), or nil when there is none.
func ReadMessageSlotRecord(ctx context.Context, db DB, schema, slot string) (*MessageSlotRecord, error) {
	var r MessageSlotRecord
	err := db.QueryRow(ctx, `SELECT created_lsn::text, created_at FROM `+Table(schema, TableMessageSlots)+
		` WHERE slot_name = $1`, slot).Scan(&r.CreatedLSN, &r.CreatedAt)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read the record of replication slot %s: %w", slot, err)
	}
	return &r, nil
}

// WriteMessageSlotRecord records slot in schema as created at lsn, now,
// replacing an earlier record of it.
func WriteMessageSlotRecord(ctx context.Context, db DB, schema, slot, lsn string) (*MessageSlotRecord, error) {
	r := MessageSlotRecord{CreatedLSN: lsn}
	err := db.QueryRow(ctx, `INSERT INTO `+Table(schema, TableMessageSlots)+` (slot_name, created_lsn) VALUES ($1, $2::pg_lsn)
		ON CONFLICT (slot_name) DO UPDATE SET created_lsn = excluded.created_lsn, created_at = excluded.created_at
		RETURNING created_at`, slot, lsn).Scan(&r.CreatedAt)
	if err != nil {
		return nil, fmt.Errorf("record replication slot %s: %w", slot, err)
	}
	return &r, nil
}

// LockMessageSlot serializes, until tx ends, the callers that create or
// record slot.
func LockMessageSlot(ctx context.Context, tx pgx.Tx, slot string) error {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "txoutbox_slot:"+slot); err != nil {
		return fmt.Errorf("lock replication slot %s: %w", slot, err)
	}
	return nil
}

// CreateMessageSlot creates the durable logical replication slot with
// pgoutput and returns its consistent point. It must run before tx has
// written anything.
func CreateMessageSlot(ctx context.Context, tx pgx.Tx, slot string) (string, error) {
	var lsn string
	if err := tx.QueryRow(ctx, `SELECT lsn::text FROM pg_create_logical_replication_slot($1::text, 'pgoutput')`, slot).Scan(&lsn); err != nil {
		return "", fmt.Errorf("create replication slot %s: %w", slot, err)
	}
	return lsn, nil
}

// DropMessageSlot drops slot, which no one may be streaming.
func DropMessageSlot(ctx context.Context, db DB, slot string) error {
	if _, err := db.Exec(ctx, `SELECT pg_drop_replication_slot($1::text)`, slot); err != nil {
		return fmt.Errorf("drop replication slot %s: %w", slot, err)
	}
	return nil
}
