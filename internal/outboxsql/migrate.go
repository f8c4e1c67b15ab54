package outboxsql

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

// MigrationFS returns the migration files, NNN_name.up.sql, at its root.
func MigrationFS() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded directory is fixed at build time
	}
	return sub
}

// Migration is one schema change.
type Migration struct {
	Version int    // NNN of the file name
	Name    string // file name
	SQL     string
}

// Migrations returns the migrations in the order Migrate applies them.
func Migrations() ([]Migration, error) { return ReadMigrations(migrationFiles, "migrations") }

// MigrationSet is the migrations of one set of tables and where their
// progress is recorded. The outbox's tables are one set; package inbox's
// table, which lives in the consumer's database, is another, with its own
// record so that the two never share version numbers.
type MigrationSet struct {
	// Read returns the migrations in order.
	Read func() ([]Migration, error)
	// Table records the applied versions, next to the set's tables.
	Table string
	// Lock is the key of the advisory lock that serializes migrators,
	// followed by the schema.
	Lock string
}

// Outbox is the outbox's tables' MigrationSet.
var Outbox = MigrationSet{Read: Migrations, Table: TableMigrations, Lock: "txoutbox_migrate:"}

// ReadMigrations reads the migrations of directory dir of fsys, files named
// NNN_name.up.sql, in version order. The events API's store reads its own
// with it too.
func ReadMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
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
		body, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		ms = append(ms, Migration{Version: version, Name: name, SQL: string(body)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// MigrateDB is Outbox.MigrateDB.
func MigrateDB(ctx context.Context, db Beginner, schema string) ([]Migration, error) {
	return Outbox.MigrateDB(ctx, db, schema)
}

// Migrate is Outbox.Migrate.
func Migrate(ctx context.Context, tx pgx.Tx, schema string) ([]Migration, error) {
	return Outbox.Migrate(ctx, tx, schema)
}

// Beginner starts a transaction; *pgxpool.Pool, *pgx.Conn and pgx.Tx
// satisfy it.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// MigrateDB applies the migrations schema ("" for the search_path's) does
// not have yet in one transaction of db, as Migrate does, and returns those
// it applied: none when the schema was up to date.
func (set MigrationSet) MigrateDB(ctx context.Context, db Beginner, schema string) ([]Migration, error) {
	if err := CheckSchema(schema); err != nil {
		return nil, fmt.Errorf("schema: %w", err)
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit
	applied, err := set.Migrate(ctx, tx, schema)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return applied, nil
}

// Migrate applies, in tx, the migrations that schema ("" for the
// search_path's) does not have yet, creating the schema when it is missing,
// and returns those it applied, in order. Concurrent callers serialize on a
// transaction-scoped advisory lock, so the ones that come second find
// nothing left to do once the first commits.
func (set MigrationSet) Migrate(ctx context.Context, tx pgx.Tx, schema string) ([]Migration, error) {
	ms, err := set.Read()
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", set.Lock+schema); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if schema != "" {
		s := pgx.Identifier{schema}.Sanitize()
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+s); err != nil {
			return nil, fmt.Errorf("create schema: %w", err)
		}
		if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+s); err != nil {
			return nil, fmt.Errorf("set search_path: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+set.Table+` (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return nil, fmt.Errorf("create %s: %w", set.Table, err)
	}
	rows, err := tx.Query(ctx, "SELECT version FROM "+set.Table)
	if err != nil {
		return nil, fmt.Errorf("read applied versions: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, fmt.Errorf("read applied versions: %w", err)
	}
	done := make(map[int]bool, len(versions))
	for _, v := range versions {
		done[int(v)] = true
	}
	var applied []Migration
	for _, m := range ms {
		if done[m.Version] {
			continue
		}
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return nil, fmt.Errorf("apply %s: %w", m.Name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+set.Table+" (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
			return nil, fmt.Errorf("record %s: %w", m.Name, err)
		}
		applied = append(applied, m)
	}
	return applied, nil
}
