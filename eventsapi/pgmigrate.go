package eventsapi

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
)

// The PostgresStore's tables, in the schema PostgresStoreConfig.Schema names
// (the search_path's when it names none). Their names do not clash with the
// outbox's, so both may share a schema.
const (
	// pgTableEvents holds the events (migrations/001).
	pgTableEvents = "txoutbox_events_api_events"
	// pgSequencePositions hands out positions (migrations/001).
	pgSequencePositions = "txoutbox_events_api_positions"
	// pgTableMigrations records the applied migrations.
	pgTableMigrations = "txoutbox_events_api_migrations"
)

//go:embed migrations/*.sql
var pgMigrationFiles embed.FS

// PostgresMigrations returns the PostgresStore's migration files for teams
// that apply migrations with their own tool instead of MigratePostgres, in
// the layout golang-migrate reads (and atlas imports): NNN_name.up.sql, and
// NNN_name.down.sql reversing it. Goose reads [PostgresGooseMigrations].
// The files create their tables on the search_path: run them with the
// search_path set to the schema you name in PostgresStoreConfig.Schema, and
// with a version table of their own, apart from the outbox's.
func PostgresMigrations() fs.FS {
	sub, err := fs.Sub(pgMigrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return sub
}

// PostgresGooseMigrations returns the migrations of [PostgresMigrations] in
// the layout goose reads: one NNNNN_name.sql per migration with its up and
// down under -- +goose Up and -- +goose Down.
func PostgresGooseMigrations() fs.FS {
	return outboxsql.EmbeddedLayout(pgMigrationFiles, "migrations", outboxsql.LayoutGoose)
}

func pgMigrations() ([]outboxsql.Migration, error) {
	return outboxsql.ReadMigrations(pgMigrationFiles, "migrations")
}

// MigratePostgres creates or updates the PostgresStore's tables in the
// schema cfg names (only cfg.Schema is read; nil means the search_path's),
// creating the schema when it is missing. It applies, in one transaction,
// the embedded migrations the database does not have yet, so it is
// idempotent; and several processes may run it at once: they serialize on a
// transaction-scoped advisory lock, and the ones that come second find
// nothing left to do.
func MigratePostgres(ctx context.Context, pool *pgxpool.Pool, cfg *PostgresStoreConfig) error {
	var schema string
	if cfg != nil {
		schema = cfg.Schema
	}
	if err := outboxsql.CheckSchema(schema); err != nil {
		return fmt.Errorf("%w: eventsapi.PostgresStoreConfig.Schema: %w", ErrInvalidConfig, err)
	}
	ms, err := pgMigrations()
	if err != nil {
		return fmt.Errorf("migrate events API store: %w", err)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrate events API store: begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit
	if err := pgMigrate(ctx, tx, schema, ms); err != nil {
		return fmt.Errorf("migrate events API store: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrate events API store: commit: %w", err)
	}
	return nil
}

func pgMigrate(ctx context.Context, tx pgx.Tx, schema string, ms []outboxsql.Migration) error {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "txoutbox_events_api_migrate:"+schema); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	if schema != "" {
		s := pgx.Identifier{schema}.Sanitize()
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+s); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+s); err != nil {
			return fmt.Errorf("set search_path: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+pgTableMigrations+` (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return fmt.Errorf("create %s: %w", pgTableMigrations, err)
	}
	rows, err := tx.Query(ctx, "SELECT version FROM "+pgTableMigrations)
	if err != nil {
		return fmt.Errorf("read applied versions: %w", err)
	}
	applied, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return fmt.Errorf("read applied versions: %w", err)
	}
	for _, m := range ms {
		if slices.Contains(applied, int32(m.Version)) {
			continue
		}
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return fmt.Errorf("apply %s: %w", m.Name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+pgTableMigrations+" (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
			return fmt.Errorf("record %s: %w", m.Name, err)
		}
	}
	return nil
}

// pgCheckMigrated returns an error saying what to do when the schema does
// not have every migration this build knows.
func pgCheckMigrated(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	ms, err := pgMigrations()
	if err != nil {
		return err
	}
	want := ms[len(ms)-1].Version
	var have int
	err = pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+pgTable(schema, pgTableMigrations)).Scan(&have)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "42P01": // undefined_table
		return fmt.Errorf("the events API tables are missing from %s: run eventsapi.MigratePostgres first", pgSchemaName(schema))
	case err != nil:
		return fmt.Errorf("check migrations: %w", err)
	case have < want:
		return fmt.Errorf("the events API tables in %s are at migration %d, this build needs %d: run eventsapi.MigratePostgres", pgSchemaName(schema), have, want)
	}
	return nil
}

func pgSchemaName(schema string) string {
	if schema == "" {
		return "the search_path's schema"
	}
	return "schema " + strconv.Quote(schema)
}

// pgTable returns table's quoted name, qualified by schema unless it is "".
func pgTable(schema, table string) string { return outboxsql.Table(schema, table) }
