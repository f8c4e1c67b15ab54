// Package inboxsql is the one SQL layer of package inbox's table: next to
// its migrations, the table's name, the migration record, and the text of
// the queries, built once per schema by New. Package inbox and the
// txoutbox command (migrate --inbox) take their SQL from here.
package inboxsql

import (
	"embed"
	"io/fs"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
)

// Table is the inbox table (migrations/001).
const Table = "txoutbox_inbox"

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

// Migrations is the inbox table's migration set. Its record is apart from
// the outbox's, which may share the schema.
var Migrations = outboxsql.MigrationSet{
	Read:  func() ([]outboxsql.Migration, error) { return outboxsql.ReadMigrations(migrationFiles, "migrations") },
	Table: "txoutbox_inbox_migrations",
	Lock:  "txoutbox_inbox_migrate:",
}

// Queries are the inbox's statements on one schema's table.
type Queries struct {
	// Insert records ($1 consumer, $2 event id) unless it is there.
	Insert string
	// Prune deletes at most $2 rows recorded more than $1 seconds ago.
	Prune string
}

// New returns the queries on the table of schema ("" for the search_path's).
func New(schema string) Queries {
	t := outboxsql.Table(schema, Table)
	return Queries{
		Insert: `INSERT INTO ` + t + ` (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
		Prune: `DELETE FROM ` + t + ` WHERE (consumer, event_id) IN (
			SELECT consumer, event_id FROM ` + t + `
			WHERE processed_at < now() - make_interval(secs => $1) LIMIT $2)`,
	}
}
