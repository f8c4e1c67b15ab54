package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
)

const migrateUsage = `
Create or upgrade the outbox tables: apply the migrations built into this
binary that the database does not have yet, in one transaction, and name
each one applied (or say that the tables were already up to date). Safe to
run on every deploy and from several processes at once.

With --print, write the migrations' SQL to stdout instead and touch no
database, for teams that apply migrations with their own tool (goose, atlas,
golang-migrate).`

const migrateExamples = `  txoutbox migrate --database-url postgres://app@db/app
  TXOUTBOX_DATABASE_URL=postgres://app@db/app txoutbox migrate --schema outbox
  txoutbox migrate --print > migrations/20260101000000_txoutbox.sql`

func runMigrate(ctx context.Context, args []string, stdout, _ io.Writer) error {
	var db dbFlags
	var printSQL bool
	fs := newFlagSet("migrate", migrateUsage, migrateExamples)
	db.register(fs)
	fs.BoolVar(&printSQL, "print", false, "write the SQL to stdout instead of applying it")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if err := outboxsql.CheckSchema(db.schema); err != nil {
		return fmt.Errorf("migrate: --schema: %w", err)
	}
	ms, err := outboxsql.Migrations()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if printSQL {
		return printMigrations(stdout, db.schema, ms)
	}
	pool, err := db.connect(ctx, "migrate")
	if err != nil {
		return err
	}
	defer pool.Close()
	applied, err := outboxsql.MigrateDB(ctx, pool, db.schema)
	if err != nil {
		return db.dbError("migrate", err)
	}
	where := "the search_path's schema"
	if db.schema != "" {
		where = "schema " + pgx.Identifier{db.schema}.Sanitize()
	}
	where = redact(where + " of " + databaseName(db.url))
	span := fmt.Sprintf("migrations %s to %s", migrationNumber(ms[0]), migrationNumber(ms[len(ms)-1]))
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "outbox tables were already up to date in %s (%s): nothing applied\n", where, span)
		return nil
	}
	for _, m := range applied {
		fmt.Fprintf(stdout, "applied %s\n", m.Name)
	}
	fmt.Fprintf(stdout, "outbox tables are up to date in %s (%s)\n", where, span)
	return nil
}

// printMigrations writes every migration, in order, as one SQL script.
func printMigrations(w io.Writer, schema string, ms []outboxsql.Migration) error {
	var b strings.Builder
	b.WriteString("-- txoutbox migrations: the outbox table and the relay's lease tables.\n")
	if schema != "" {
		s := pgx.Identifier{schema}.Sanitize()
		fmt.Fprintf(&b, "CREATE SCHEMA IF NOT EXISTS %s;\nSET search_path TO %s;\n", s, s)
	}
	for _, m := range ms {
		fmt.Fprintf(&b, "\n-- %s\n%s", m.Name, m.SQL)
		if !strings.HasSuffix(m.SQL, "\n") {
			b.WriteString("\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func migrationNumber(m outboxsql.Migration) string {
	return fmt.Sprintf("%03d", m.Version)
}
