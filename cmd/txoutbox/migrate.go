package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/internal/inboxsql"
	"github.com/txoutbox/txoutbox/internal/outboxsql"
)

const migrateUsage = `
Create or upgrade the outbox tables: apply the migrations built into this
binary that the database does not have yet, in one transaction, and name
each one applied (or say that the tables were already up to date). Safe to
run on every deploy and from several processes at once.

With --print, write the migrations' SQL to stdout instead and touch no
database, for teams that apply migrations with their own tool (goose, atlas,
golang-migrate).

With --inbox, do the same for the inbox table of package inbox instead,
which a consumer keeps in its own database to process each event once.`

const migrateExamples = `  txoutbox migrate --database-url postgres://app@db/app
  TXOUTBOX_DATABASE_URL=postgres://app@db/app txoutbox migrate --schema outbox
  txoutbox migrate --print > migrations/20260101000000_txoutbox.sql
  txoutbox migrate --inbox --database-url postgres://app@db/consumer`

func runMigrate(ctx context.Context, args []string, stdout, _ io.Writer) error {
	var db dbFlags
	var printSQL, inbox bool
	fs := newFlagSet("migrate", migrateUsage, migrateExamples)
	db.register(fs)
	fs.BoolVar(&printSQL, "print", false, "write the SQL to stdout instead of applying it")
	fs.BoolVar(&inbox, "inbox", false, "migrate the consumer's inbox table (package inbox) instead of the outbox tables")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if err := outboxsql.CheckSchema(db.schema); err != nil {
		return fmt.Errorf("migrate: --schema: %w", err)
	}
	set, what, were, are := outboxsql.Outbox, "outbox tables", "were", "are"
	header := "the outbox table and the relay's lease tables"
	if inbox {
		set, what, were, are = inboxsql.Migrations, "the inbox table", "was", "is"
		header = "the consumer's inbox table"
	}
	ms, err := set.Read()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if printSQL {
		return printMigrations(stdout, db.schema, header, ms)
	}
	pool, err := db.connect(ctx, "migrate")
	if err != nil {
		return err
	}
	defer pool.Close()
	applied, err := set.MigrateDB(ctx, pool, db.schema)
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
		fmt.Fprintf(stdout, "%s %s already up to date in %s (%s): nothing applied\n", what, were, where, span)
		return nil
	}
	for _, m := range applied {
		fmt.Fprintf(stdout, "applied %s\n", m.Name)
	}
	fmt.Fprintf(stdout, "%s %s up to date in %s (%s)\n", what, are, where, span)
	return nil
}

// printMigrations writes every migration, in order, as one SQL script.
func printMigrations(w io.Writer, schema, header string, ms []outboxsql.Migration) error {
	var b strings.Builder
	fmt.Fprintf(&b, "-- txoutbox migrations: %s.\n", header)
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
