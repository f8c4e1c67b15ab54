package outbox

import (
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
)

// Migrations returns the embedded migration files for teams that apply
// migrations with their own tool instead of Migrate, in the layout
// golang-migrate reads: NNN_name.up.sql, and NNN_name.down.sql reversing it.
// Atlas imports this layout (atlas migrate import --from
// "file://DIR?format=golang-migrate"); goose reads [GooseMigrations].
// Open it with golang-migrate's iofs source:
//
//	src, err := iofs.New(outbox.Migrations(), ".")
//
// The files create their tables on the search_path: run them with the
// search_path set to the schema you will name in Config.Schema.
func Migrations() fs.FS { return outboxsql.MigrationFS() }

// GooseMigrations returns the migrations of [Migrations] in the layout goose
// reads: one NNNNN_name.sql per migration, its up under -- +goose Up and its
// down under -- +goose Down. Hand it to goose.NewProvider (or
// goose.SetBaseFS):
//
//	p, err := goose.NewProvider(goose.DialectPostgres, db, outbox.GooseMigrations())
func GooseMigrations() fs.FS {
	return outboxsql.EmbeddedLayout(outboxsql.MigrationFS(), ".", outboxsql.LayoutGoose)
}

// MigrateConfig configures Migrate. The zero value migrates the schema on the
// connection's search_path.
type MigrateConfig struct {
	// Schema to create the tables in; created when missing. Defaults to the
	// connection's search_path. Use the same value in Config.Schema.
	Schema string

	// Messages also creates the durable replication slot that
	// StorageMessages emits for and relay.ModeMessages reads, unless it
	// exists. Creating it needs wal_level=logical and a role with the
	// REPLICATION attribute, and waits for the transactions running then
	// to end. From then on PostgreSQL keeps the WAL the slot has not
	// confirmed: see the README's Delivery modes for max_slot_wal_keep_size.
	// When the slot was lost, Migrate returns a *SlotLostError rather than
	// create it again (see CreateMessageSlot).
	Messages bool

	// RecreateLostSlot, with Messages, creates the slot again when it was
	// lost, acknowledging that the events committed after its last
	// confirmed position were not delivered; Migrate logs what was lost
	// as an error on Logger.
	RecreateLostSlot bool

	// Logger receives the report of a lost slot created again. Defaults
	// to slog.Default().
	Logger *slog.Logger
}

// Beginner starts a transaction; *pgxpool.Pool, *pgx.Conn and pgx.Tx
// satisfy it.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Migrate applies the embedded migrations that the database does not have
// yet, in one transaction. It is idempotent, and safe when several processes
// run it at once: they serialize on a transaction-scoped advisory lock, and
// the ones that come second find nothing left to do.
func Migrate(ctx context.Context, db Beginner, cfg *MigrateConfig) error {
	if cfg == nil {
		cfg = &MigrateConfig{}
	}
	if err := checkSchema(cfg.Schema); err != nil {
		return fmt.Errorf("migrate: MigrateConfig.Schema: %w", err)
	}
	if _, err := outboxsql.MigrateDB(ctx, db, cfg.Schema); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if cfg.Messages {
		s, err := CreateMessageSlot(ctx, db, &MessageSlotConfig{Schema: cfg.Schema, RecreateLost: cfg.RecreateLostSlot})
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if s.Lost != nil {
			cmp.Or(cfg.Logger, slog.Default()).Error("created the lost replication slot of message storage again",
				"slot", s.Name, "lost", s.Lost.Error(), "created_lsn", s.CreatedLSN)
		}
	}
	return nil
}

// checkSchema applies outboxsql's rule for schema names, as an
// ErrInvalidConfig.
func checkSchema(name string) error {
	if err := outboxsql.CheckSchema(name); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}
