package outboxsql

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DB runs queries. *pgxpool.Pool, *pgxpool.Conn, *pgx.Conn and pgx.Tx
// satisfy it, so every query can run inside the caller's transaction.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

var (
	_ DB = (*pgxpool.Pool)(nil)
	_ DB = (*pgxpool.Conn)(nil)
	_ DB = (*pgx.Conn)(nil)
	_ DB = pgx.Tx(nil)
)

// The tables, created by the migrations in the schema a Config names, or on
// the connection's search_path when it names none.
const (
	// TableEvents is the outbox table (migrations/001).
	TableEvents = "txoutbox_events"
	// TableRelays holds a heartbeat row per running relay (migrations/002).
	TableRelays = "txoutbox_relays"
	// TablePartitions holds the 64 partition leases (migrations/002).
	TablePartitions = "txoutbox_partitions"

	// Partitions is the number of partitions the events table is split
	// into by the hash of the ordering key (its generated part column,
	// migrations/001). Relays lease whole partitions, so it is also the most
	// relays that can share the work.
	Partitions = 64
	// TableMigrations records which migrations have been applied.
	TableMigrations = "txoutbox_migrations"
	// TableMessageSlots records the slot of message storage txoutbox
	// created (migrations/009).
	TableMessageSlots = "txoutbox_message_slots"
)

// The values of the events' status column.
const (
	// StatusPending events wait for delivery, or for a retry.
	StatusPending = "pending"
	// StatusDelivered events were delivered and are kept for the relay's
	// retention period.
	StatusDelivered = "delivered"
	// StatusDead events failed permanently and wait for a replay.
	StatusDead = "dead"
)

// CheckSchema rejects schema names PostgreSQL would truncate (longer than 63
// bytes) or that quoting cannot carry (a NUL byte), and names with leading or
// trailing spaces, which are almost always a mistake. Every other name is
// safe because it is always quoted. "" (the search_path) is valid.
func CheckSchema(name string) error {
	switch {
	case name == "":
		return nil
	case len(name) > 63:
		return fmt.Errorf("%q is longer than 63 bytes", name)
	case strings.ContainsRune(name, 0):
		return fmt.Errorf("%q contains a NUL byte", name)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%q has leading or trailing spaces", name)
	}
	return nil
}

// Table returns table's quoted name, qualified by schema unless it is "".
func Table(schema, table string) string {
	if schema == "" {
		return pgx.Identifier{table}.Sanitize()
	}
	return pgx.Identifier{schema, table}.Sanitize()
}
