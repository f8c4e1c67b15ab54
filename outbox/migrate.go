package outbox

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.up.sql
var migrationFiles embed.FS

// TableEvents is the name of the outbox table. It lives in the schema named
// by Config.Schema, or on the connection's search_path when that is empty.
const TableEvents = "txoutbox_events"

// tableMigrations records which migrations have been applied.
const tableMigrations = "txoutbox_migrations"

// Migrations returns the embedded migration files, named
// NNN_name.up.sql, for teams that apply migrations with their own tool
// (goose, atlas, golang-migrate) instead of Migrate. The files create their
// tables on the search_path: run them with the search_path set to the schema
// you will name in Config.Schema.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return sub
}

// Migration is one embedded schema change.
type Migration struct {
	Version int    // NNN of the file name
	Name    string // file name
	SQL     string
}

// ListMigrations returns the embedded migrations in the order Migrate applies
// them.
func ListMigrations() ([]Migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		name := e.Name()
		num, _, ok := strings.Cut(name, "_")
		version, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must start with NNN_", name)
		}
		body, err := fs.ReadFile(migrationFiles, path.Join("migrations", name))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		ms = append(ms, Migration{Version: version, Name: name, SQL: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// MigrateConfig configures Migrate. The zero value migrates the schema on the
// connection's search_path.
type MigrateConfig struct {
	// Schema to create the tables in; created when missing. Defaults to the
	// connection's search_path. Use the same value in Config.Schema.
	Schema string
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
	if err := validateSchemaName(cfg.Schema); err != nil {
		return fmt.Errorf("migrate: MigrateConfig.Schema: %w", err)
	}
	ms, err := ListMigrations()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate: begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit

	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "txoutbox_migrate:"+cfg.Schema); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	if cfg.Schema != "" {
		schema := pgx.Identifier{cfg.Schema}.Sanitize()
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+schema); err != nil {
			return fmt.Errorf("migrate: create schema: %w", err)
		}
		if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+schema); err != nil {
			return fmt.Errorf("migrate: set search_path: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+tableMigrations+` (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return fmt.Errorf("migrate: create %s: %w", tableMigrations, err)
	}
	rows, err := tx.Query(ctx, "SELECT version FROM "+tableMigrations)
	if err != nil {
		return fmt.Errorf("migrate: read applied versions: %w", err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("migrate: read applied versions: %w", err)
	}
	done := make(map[int]bool, len(applied))
	for _, v := range applied {
		done[int(v)] = true
	}
	for _, m := range ms {
		if done[m.Version] {
			continue
		}
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return fmt.Errorf("migrate: apply %s: %w", m.Name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+tableMigrations+" (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
			return fmt.Errorf("migrate: record %s: %w", m.Name, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

// validateSchemaName rejects names Postgres would truncate or cannot hold;
// everything else is safe because it is always quoted.
func validateSchemaName(name string) error {
	switch {
	case name == "":
		return nil
	case len(name) > 63:
		return fmt.Errorf("%w: %q is longer than 63 bytes", ErrInvalidConfig, name)
	case strings.ContainsRune(name, 0):
		return fmt.Errorf("%w: %q contains a NUL byte", ErrInvalidConfig, name)
	case strings.TrimSpace(name) != name:
		return fmt.Errorf("%w: %q has leading or trailing spaces", ErrInvalidConfig, name)
	}
	return nil
}
