package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/inboxsql"
	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/outbox"
)

const migrateUsage = `
Create or upgrade the outbox tables: apply the migrations built into this
binary that the database does not have yet, in one transaction, and name
each one applied (or say that the tables were already up to date). Safe to
run on every deploy and from several processes at once.

For teams that apply migrations with their own tool, --print and --out
write the migrations instead and touch no database, in the layout --format
names:

  sql             plain SQL, the up migrations only: with --print one script
                  (CREATE SCHEMA and search_path first when --schema is
                  given); with --out one NNN_name.sql per migration, an
                  atlas migration directory once "atlas migrate hash" has
                  written its atlas.sum
  goose           with --print one goose migration holding every up under
                  "-- +goose Up" and every down, in reverse, under
                  "-- +goose Down", to save under a version of your own;
                  with --out one NNNNN_name.sql per migration
  golang-migrate  --out only: NNN_name.up.sql and NNN_name.down.sql per
                  migration (atlas imports it: atlas migrate import
                  --from "file://DIR?format=golang-migrate")

--out creates DIR when missing, leaves files that are already there with the
same content, and refuses to overwrite one that differs. The files create
their tables on the search_path: run the tool with the search_path set to
the schema you give the relay (--schema applies to the plain script only).

With --inbox, do all of this for the inbox table of package inbox instead,
which a consumer keeps in its own database to process each event once.

With --messages, also create the durable replication slot of message
storage (outbox.StorageMessages, relay --mode messages) unless it exists,
and record it (name, the position it was created at, and when) in the
outbox's tables: producers refuse to emit without it. It needs
wal_level=logical and a role with the REPLICATION attribute, and waits for
the transactions running then to end. From then on PostgreSQL keeps the WAL
the slot's relay has not confirmed; bound it with max_slot_wal_keep_size
(see the README's Delivery modes).

When the record says the slot existed but the server lost it (dropped, or
invalidated past max_slot_wal_keep_size), the events committed after its
last confirmed position were never delivered, and a new slot would start
after them: --messages then fails, saying since when, and exits 1, so that
no deploy replaces a lost slot unnoticed. --recreate-lost-slot acknowledges
the loss and creates the slot again, printing what was lost; then compare
the producers' records with the consumers' for the gap.`

const migrateExamples = `  txoutbox migrate --database-url postgres://app@db/app
  TXOUTBOX_DATABASE_URL=postgres://app@db/app txoutbox migrate --schema outbox
  txoutbox migrate --print > schema/txoutbox.sql
  txoutbox migrate --print --format goose > migrations/20260101000000_txoutbox.sql
  txoutbox migrate --out db/migrations/txoutbox --format golang-migrate
  txoutbox migrate --inbox --database-url postgres://app@db/consumer
  txoutbox migrate --messages --database-url postgres://app@db/app
  txoutbox migrate --messages --recreate-lost-slot --database-url postgres://app@db/app`

func runMigrate(ctx context.Context, args []string, stdout, _ io.Writer) error {
	var db dbFlags
	var printSQL, inbox, messages, recreate bool
	var format, out string
	fs := newFlagSet("migrate", migrateUsage, migrateExamples)
	db.register(fs)
	fs.BoolVar(&printSQL, "print", false, "write the migrations to stdout instead of applying them")
	fs.StringVar(&out, "out", "", "write the migrations as files into `directory` instead of applying them")
	fs.StringVar(&format, "format", string(outboxsql.LayoutSQL), "layout of --print and --out: sql, goose or golang-migrate")
	fs.BoolVar(&inbox, "inbox", false, "migrate the consumer's inbox table (package inbox) instead of the outbox tables")
	fs.BoolVar(&messages, "messages", false, "also create the replication slot of message storage (outbox.StorageMessages, relay --mode messages); needs wal_level=logical and the REPLICATION attribute")
	fs.BoolVar(&recreate, "recreate-lost-slot", false, "with --messages, create the slot again when it was lost, acknowledging that the events after its last confirmed position were not delivered")
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
	// --format is read with --print and --out only: TXOUTBOX_FORMAT may hold
	// the relay's wire format.
	layout := outboxsql.Layout(format)
	switch {
	case printSQL && out != "":
		return errors.New("migrate: --print and --out: choose one (stdout or a directory)")
	case recreate && !messages:
		return errors.New("migrate: --recreate-lost-slot creates the slot of message storage again: add --messages")
	case messages && inbox:
		return errors.New("migrate: --messages creates the outbox's replication slot, not the inbox's: drop one of them")
	case messages && (printSQL || out != ""):
		return errors.New("migrate: --messages creates a replication slot, which no migration file can (it cannot be created in a transaction that wrote): apply the files with your tool, then run txoutbox migrate --messages")
	case (printSQL || out != "") && !slices.Contains(outboxsql.Layouts, layout):
		return fmt.Errorf("migrate: --format %q: want sql, goose or golang-migrate", format)
	case (out != "" || (printSQL && layout != outboxsql.LayoutSQL)) && db.schema != "":
		return errors.New("migrate: --schema applies to the plain script (--print --format sql); a migration tool applies the files on its connection's search_path: set it there")
	case out != "":
		return writeMigrations(stdout, out, ms, layout)
	case printSQL && layout == outboxsql.LayoutGolangMigrate:
		return errors.New("migrate: golang-migrate reads an up and a down file per migration: write them with --out DIR")
	case printSQL && layout == outboxsql.LayoutGoose:
		return printGoose(stdout, header, ms)
	case printSQL:
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
		return createSlot(ctx, stdout, pool, db, messages, recreate)
	}
	for _, m := range applied {
		fmt.Fprintf(stdout, "applied %s\n", m.Name)
	}
	fmt.Fprintf(stdout, "%s %s up to date in %s (%s)\n", what, are, where, span)
	return createSlot(ctx, stdout, pool, db, messages, recreate)
}

// createSlot creates, with --messages, the replication slot of message
// storage.
func createSlot(ctx context.Context, stdout io.Writer, pool *pgxpool.Pool, db dbFlags, messages, recreate bool) error {
	if !messages {
		return nil
	}
	slot, err := outbox.CreateMessageSlot(ctx, pool, &outbox.MessageSlotConfig{Schema: db.schema, RecreateLost: recreate})
	if _, lost := errors.AsType[*outbox.SlotLostError](err); lost {
		return fmt.Errorf("migrate: --messages: %w; to create the slot again, acknowledging the loss, add --recreate-lost-slot", err)
	}
	if err != nil {
		return db.dbError("migrate: --messages", err)
	}
	switch {
	case slot.Lost != nil:
		fmt.Fprintf(stdout, "LOST: %s\n", slot.Lost.Error())
		fmt.Fprintf(stdout, "created replication slot %s for message storage again at %s, acknowledging the loss: the events committed after the lost slot's last confirmed position were not delivered\n", slot.Name, slot.CreatedLSN)
	case slot.Created:
		fmt.Fprintf(stdout, "created replication slot %s for message storage at %s: PostgreSQL keeps the WAL it has not confirmed (bound it with max_slot_wal_keep_size)\n", slot.Name, slot.CreatedLSN)
	default:
		fmt.Fprintf(stdout, "replication slot %s for message storage already exists (created at %s on %s)\n", slot.Name, slot.CreatedLSN, slot.CreatedAt.UTC().Format(time.RFC3339))
	}
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
		fmt.Fprintf(&b, "\n-- %s\n%s", m.Name, withNewline(m.SQL))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// printGoose writes every migration as one goose migration: the ups in
// order, then the downs in reverse order.
func printGoose(w io.Writer, header string, ms []outboxsql.Migration) error {
	var up, down strings.Builder
	fmt.Fprintf(&up, "-- txoutbox migrations: %s.\n", header)
	for i, m := range ms {
		fmt.Fprintf(&up, "\n-- %s\n%s", m.Name, withNewline(m.SQL))
		r := ms[len(ms)-1-i]
		if i > 0 {
			down.WriteString("\n")
		}
		fmt.Fprintf(&down, "-- %s\n%s", strings.Replace(r.Name, ".up.sql", ".down.sql", 1), withNewline(r.Down))
	}
	_, err := io.WriteString(w, outboxsql.GooseMigration(up.String(), down.String()))
	return err
}

// writeMigrations writes the files of layout into dir, creating it when
// missing. A file already there is left when its content is the same, and
// an error when it differs.
func writeMigrations(stdout io.Writer, dir string, ms []outboxsql.Migration, layout outboxsql.Layout) error {
	files, err := outboxsql.Files(ms, layout)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("migrate: --out: %w", err)
	}
	for _, f := range files {
		name := filepath.Join(dir, f.Name)
		have, err := os.ReadFile(name)
		switch {
		case err == nil && bytes.Equal(have, f.Data):
			fmt.Fprintln(stdout, redact(fmt.Sprintf("unchanged %s in %s", f.Name, dir)))
			continue
		case err == nil:
			return fmt.Errorf("migrate: --out: %s exists and differs from this binary's migration: remove it or write to another directory", name)
		case !errors.Is(err, fs.ErrNotExist):
			return fmt.Errorf("migrate: --out: %w", err)
		}
		if err := os.WriteFile(name, f.Data, 0o644); err != nil {
			return fmt.Errorf("migrate: --out: %w", err)
		}
		fmt.Fprintln(stdout, redact(fmt.Sprintf("wrote %s in %s", f.Name, dir)))
	}
	return nil
}

func withNewline(s string) string {
	if s == "" || strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

func migrationNumber(m outboxsql.Migration) string {
	return fmt.Sprintf("%03d", m.Version)
}
