package inbox

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/internal/inboxsql"
	"github.com/txoutbox/txoutbox/internal/outboxsql"
)

// Migrations returns the embedded migration files, named NNN_name.up.sql,
// for teams that apply migrations with their own tool (goose, atlas,
// golang-migrate) instead of Migrate. They create the table on the
// search_path: run them with the search_path set to Config.Schema.
func Migrations() fs.FS { return inboxsql.MigrationFS() }

// Beginner starts a transaction; *pgxpool.Pool, *pgx.Conn and pgx.Tx
// satisfy it.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// Migrate creates or upgrades the inbox table in cfg's schema (created when
// missing), applying the embedded migrations the database does not have
// yet in one transaction. It is idempotent, and safe when several processes
// run it at once: they serialize on a transaction-scoped advisory lock. It
// records its progress in its own table, so the inbox can share a schema
// with the outbox's tables. `txoutbox migrate --inbox` does the same.
func Migrate(ctx context.Context, db Beginner, cfg *Config) error {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if err := outboxsql.CheckSchema(c.Schema); err != nil {
		return fmt.Errorf("inbox: migrate: Config.Schema: %w: %w", ErrInvalidConfig, err)
	}
	if _, err := inboxsql.Migrations.MigrateDB(ctx, db, c.Schema); err != nil {
		return fmt.Errorf("inbox: migrate: %w", err)
	}
	return nil
}
