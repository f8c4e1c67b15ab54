package inbox

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
)

//go:embed migrations/*.up.sql
var migrationFiles embed.FS

// tableMigrations records the inbox's applied migrations, apart from the
// outbox's, which may share the schema.
const tableMigrations = "txoutbox_inbox_migrations"

// migrations is the inbox table's outboxsql.MigrationSet.
var migrations = outboxsql.MigrationSet{
	Read:  func() ([]outboxsql.Migration, error) { return outboxsql.ReadMigrations(migrationFiles, "migrations") },
	Table: tableMigrations,
	Lock:  "txoutbox_inbox_migrate:",
}

// Migrations returns the embedded migration files, named NNN_name.up.sql,
// for teams that apply migrations with their own tool (goose, atlas,
// golang-migrate) instead of Migrate. They create the table on the
// search_path: run them with the search_path set to Config.Schema.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return sub
}

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
	if _, err := migrations.MigrateDB(ctx, db, c.Schema); err != nil {
		return fmt.Errorf("inbox: migrate: %w", err)
	}
	return nil
}
