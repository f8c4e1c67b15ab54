package outboxsql

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/internal/walmsg"
)

// SlotPrefix starts the name of every replication slot txoutbox creates:
// the relays' temporary slots in ModeWAL (RelaySlotPrefix) and the durable
// slot of message storage (walmsg.SlotPrefix).
const SlotPrefix = "txoutbox_"

// RelaySlotPrefix starts the name of a ModeWAL relay's temporary slot; a
// random suffix makes it unique per stream.
const RelaySlotPrefix = "txoutbox_relay_"

// replicationSettings reads the server settings the WAL modes depend on,
// and whether the record of message storage's slot, table $1, exists.
// max_slot_wal_keep_size is in MB (-1: unbounded), NULL before
// PostgreSQL 13.
const replicationSettings = `SELECT current_setting('wal_level'),
	current_setting('max_replication_slots')::int,
	current_setting('max_wal_senders')::int,
	(SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size'),
	to_regclass($1) IS NOT NULL`

// replicationSlots lists txoutbox's slots of the current database. The
// columns of later PostgreSQL versions (wal_status and safe_wal_size from
// 13, invalidation_reason from 17) are read through to_jsonb, so the
// query runs on every version and they are NULL where missing. A logical
// slot whose restart_lsn is NULL was invalidated: it is lost too.
const replicationSlots = `SELECT s.slot_name::text, s.temporary, s.active,
	coalesce(s.restart_lsn::text, ''), coalesce(s.confirmed_flush_lsn::text, ''),
	coalesce(pg_wal_lsn_diff(w.lsn, s.restart_lsn), 0)::bigint,
	coalesce(j->>'wal_status', ''), (j->>'safe_wal_size')::bigint,
	coalesce(j->>'wal_status' = 'lost', false) OR (s.slot_type = 'logical' AND s.restart_lsn IS NULL)
		OR coalesce(j->>'invalidation_reason', '') <> ''
FROM pg_replication_slots s
CROSS JOIN LATERAL to_jsonb(s) j
CROSS JOIN (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END AS lsn) w
WHERE s.database = current_database() AND starts_with(s.slot_name::text, $1::text)
ORDER BY s.slot_name`

// Replication is the state of logical replication as txoutbox uses it in
// the current database: the server's settings and txoutbox's slots.
type Replication struct {
	// WALLevel is the server's wal_level; the WAL modes need "logical".
	WALLevel string `json:"wal_level"`
	// MaxReplicationSlots and MaxWALSenders bound the slots and streams
	// of the whole server.
	MaxReplicationSlots int `json:"max_replication_slots"`
	MaxWALSenders       int `json:"max_wal_senders"`
	// MaxSlotWALKeepSize bounds the WAL a slot may hold back, in bytes: -1
	// when unbounded, and also -1 before PostgreSQL 13, which has no bound.
	MaxSlotWALKeepSize int64 `json:"max_slot_wal_keep_size_bytes"`
	// Slots are txoutbox's slots in the current database, by name.
	Slots []ReplicationSlot `json:"slots"`
}

// Unbounded reports whether a slot may hold back WAL without limit.
func (r *Replication) Unbounded() bool { return r.MaxSlotWALKeepSize < 0 }

// Warning is the warning of a durable slot (one that holds back WAL while
// no relay streams it, unlike a relay's temporary slot) under an unbounded
// max_slot_wal_keep_size, saying what to set; "" otherwise.
func (r *Replication) Warning() string {
	if !r.Unbounded() {
		return ""
	}
	for _, s := range r.Slots {
		if !s.Temporary {
			return "max_slot_wal_keep_size is unbounded (-1): while no relay confirms the slot, PostgreSQL keeps all WAL until the disk is full; " +
				"bound it with ALTER SYSTEM SET max_slot_wal_keep_size = '10GB' (what your disk can hold), then SELECT pg_reload_conf()"
		}
	}
	return ""
}

// ReplicationSlot is one of txoutbox's replication slots.
type ReplicationSlot struct {
	Name string `json:"name"`
	// Messages is set for the durable slot of message storage; the
	// others are ModeWAL relays' temporary slots.
	Messages bool `json:"messages"`
	// Temporary slots go with their connection and hold no WAL after it.
	Temporary bool `json:"temporary"`
	// Active reports whether a relay streams the slot now.
	Active bool `json:"active"`
	// RestartLSN is the oldest WAL position the slot holds back;
	// ConfirmedFlushLSN the last one its reader confirmed.
	RestartLSN        string `json:"restart_lsn"`
	ConfirmedFlushLSN string `json:"confirmed_flush_lsn"`
	// RetainedBytes is the WAL the slot holds back: from RestartLSN to
	// the server's current position.
	RetainedBytes int64 `json:"retained_bytes"`
	// WALStatus is pg_replication_slots.wal_status (PostgreSQL 13+):
	// reserved, extended, unreserved or lost.
	WALStatus string `json:"wal_status,omitempty"`
	// SafeWALSize is how much more WAL may be written before the slot is
	// lost; nil when unbounded (or before PostgreSQL 13).
	SafeWALSize *int64 `json:"safe_wal_size,omitempty"`
	// Lost reports a slot invalidated by the server: its WAL was removed
	// (wal_status lost), so what it held can no longer be read; or, with
	// Missing, a slot of message storage that txoutbox created and that is
	// gone.
	Lost bool `json:"lost"`
	// Missing reports a slot of message storage that the outbox's record
	// (migrations/009) says txoutbox created, and that the server no
	// longer has: it was dropped. Lost is set too.
	Missing bool `json:"missing,omitempty"`
}

// ReadReplication returns the server's replication settings and txoutbox's
// slots in the current database, with the slots of message storage that
// the record of the outbox in schema ("" for the search_path's) names and
// the server no longer has, as missing.
func ReadReplication(ctx context.Context, db DB, schema string) (*Replication, error) {
	r := &Replication{Slots: []ReplicationSlot{}}
	var keepMB *int64
	var recorded bool // the outbox has the record of message storage's slot (migration 009)
	records := Table(schema, TableMessageSlots)
	if err := db.QueryRow(ctx, replicationSettings, records).Scan(&r.WALLevel, &r.MaxReplicationSlots, &r.MaxWALSenders, &keepMB, &recorded); err != nil {
		return nil, fmt.Errorf("read replication settings: %w", err)
	}
	r.MaxSlotWALKeepSize = -1
	if keepMB != nil && *keepMB >= 0 {
		r.MaxSlotWALKeepSize = *keepMB << 20
	}
	rows, err := db.Query(ctx, replicationSlots, SlotPrefix)
	if err != nil {
		return nil, fmt.Errorf("read replication slots: %w", err)
	}
	var s ReplicationSlot
	_, err = pgx.ForEachRow(rows, []any{&s.Name, &s.Temporary, &s.Active, &s.RestartLSN, &s.ConfirmedFlushLSN,
		&s.RetainedBytes, &s.WALStatus, &s.SafeWALSize, &s.Lost}, func() error {
		s.Messages = strings.HasPrefix(s.Name, walmsg.SlotPrefix)
		r.Slots = append(r.Slots, s)
		s.SafeWALSize = nil // the next row's, not shared with this one
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read replication slots: %w", err)
	}
	if !recorded {
		return r, nil
	}
	missing, err := missingMessageSlots(ctx, db, records)
	if err != nil {
		return nil, err
	}
	for _, name := range missing {
		r.Slots = append(r.Slots, ReplicationSlot{Name: name, Messages: true, Lost: true, Missing: true})
	}
	return r, nil
}

// missingMessageSlots returns the slots that records, the outbox's record
// of message storage's slot, names and the server does not have.
func missingMessageSlots(ctx context.Context, db DB, records string) ([]string, error) {
	rows, err := db.Query(ctx, `SELECT r.slot_name FROM `+records+` r
		WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots s WHERE s.slot_name = r.slot_name)
		ORDER BY r.slot_name`)
	if err != nil {
		return nil, fmt.Errorf("read the record of message storage's slot: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read the record of message storage's slot: %w", err)
	}
	return names, nil
}

// Recovery says what to do about slot, lost: for the slot of message
// storage walmsg.LostRecovery, for a relay's temporary slot that nothing
// is lost.
func (s ReplicationSlot) Recovery() string {
	if s.Messages {
		return walmsg.LostRecovery
	}
	return "the relay opens a new stream with a new slot and polls the table meanwhile: no event is lost"
}

// ByteSize spells a size for people, in units of 1024 as PostgreSQL's
// settings and pg_size_pretty do: 0 B, 812 B, 1.5 kB, 56 kB, 10 GB.
func ByteSize(n int64) string {
	const units = "kMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n)/1024, 0
	for ; f >= 1024 && i < len(units)-1; i++ {
		f /= 1024
	}
	if f < 10 && f != float64(int64(f)) {
		return fmt.Sprintf("%.1f %cB", f, units[i])
	}
	return fmt.Sprintf("%.0f %cB", f, units[i])
}
