package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/internal/pgtest"
)

// TestMigrateNamesApplied checks that migrate names the migrations it
// applied, and says when there were none to apply.
func TestMigrateNamesApplied(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	for _, schema := range []string{"", "ops"} {
		args := []string{"migrate", "--database-url", url, "--schema", schema}
		var out bytes.Buffer
		if err := dispatch(t.Context(), args, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		if want := "applied 001_create_events.up.sql\napplied 002_create_relay.up.sql\napplied 003_create_console.up.sql\n" +
			"applied 004_console_indexes.up.sql\napplied 005_event_target.up.sql\napplied 006_pending_state_index.up.sql\napplied 007_pending_topic_index.up.sql\napplied 008_wal_publication.up.sql\napplied 009_message_slot.up.sql\noutbox tables are up to date in "; !strings.HasPrefix(out.String(), want) {
			t.Errorf("first migrate --schema %q says:\n%s\nwant it to start with:\n%s", schema, out.String(), want)
		}
		out.Reset()
		if err := dispatch(t.Context(), args, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out.String(), "outbox tables were already up to date in ") || !strings.HasSuffix(out.String(), ": nothing applied\n") {
			t.Errorf("second migrate --schema %q says:\n%s", schema, out.String())
		}
	}
	err := dispatch(t.Context(), []string{"migrate", "--database-url", url, "--schema", strings.Repeat("s", 64)}, io.Discard, io.Discard)
	if err == nil || !strings.HasPrefix(err.Error(), "migrate: --schema: ") {
		t.Errorf("migrate with a 64-byte schema name: %v, want an error naming --schema", err)
	}
}

// TestMigrateInbox checks migrate --inbox applies the inbox table beside
// the outbox's in one schema, each with its own record, and prints its SQL.
func TestMigrateInbox(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	for _, args := range [][]string{
		{"migrate", "--database-url", url, "--schema", "billing"},
		{"migrate", "--inbox", "--database-url", url, "--schema", "billing"},
	} {
		if err := dispatch(t.Context(), args, io.Discard, io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := dispatch(t.Context(), []string{"migrate", "--inbox", "--database-url", url, "--schema", "billing"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if want := "the inbox table was already up to date in schema \"billing\""; !strings.HasPrefix(out.String(), want) {
		t.Errorf("second migrate --inbox says:\n%s\nwant it to start with %s", out.String(), want)
	}
	out.Reset()
	if err := dispatch(t.Context(), []string{"migrate", "--inbox", "--print"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "-- 001_create_inbox.up.sql\n") || !strings.Contains(out.String(), "CREATE TABLE txoutbox_inbox") {
		t.Errorf("migrate --inbox --print:\n%s", out.String())
	}
}

// TestMigrateOut checks that --out writes each layout's files, leaves
// identical ones, and refuses to overwrite one that differs.
func TestMigrateOut(t *testing.T) {
	t.Parallel()
	for format, want := range map[string][]string{
		"sql":   {"001_create_events.sql", "002_create_relay.sql", "003_create_console.sql", "004_console_indexes.sql", "005_event_target.sql", "006_pending_state_index.sql", "007_pending_topic_index.sql", "008_wal_publication.sql", "009_message_slot.sql"},
		"goose": {"00001_create_events.sql", "00002_create_relay.sql", "00003_create_console.sql", "00004_console_indexes.sql", "00005_event_target.sql", "00006_pending_state_index.sql", "00007_pending_topic_index.sql", "00008_wal_publication.sql", "00009_message_slot.sql"},
		"golang-migrate": {"001_create_events.down.sql", "001_create_events.up.sql", "002_create_relay.down.sql", "002_create_relay.up.sql",
			"003_create_console.down.sql", "003_create_console.up.sql", "004_console_indexes.down.sql", "004_console_indexes.up.sql",
			"005_event_target.down.sql", "005_event_target.up.sql",
			"006_pending_state_index.down.sql", "006_pending_state_index.up.sql",
			"007_pending_topic_index.down.sql", "007_pending_topic_index.up.sql",
			"008_wal_publication.down.sql", "008_wal_publication.up.sql",
			"009_message_slot.down.sql", "009_message_slot.up.sql"},
	} {
		dir := filepath.Join(t.TempDir(), "migrations")
		args := []string{"migrate", "--out", dir, "--format", format}
		var out bytes.Buffer
		if err := dispatch(t.Context(), args, &out, io.Discard); err != nil {
			t.Fatalf("%s: %v", format, err)
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if !slices.Equal(names, want) || strings.Count(out.String(), "wrote ") != len(want) {
			t.Errorf("--format %s wrote %v, saying:\n%s", format, names, out.String())
		}
		out.Reset()
		if err := dispatch(t.Context(), args, &out, io.Discard); err != nil || strings.Count(out.String(), "unchanged ") != len(want) {
			t.Errorf("--format %s again: %v\n%s", format, err, out.String())
		}
		if err := os.WriteFile(filepath.Join(dir, want[0]), []byte("-- edited\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := dispatch(t.Context(), args, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "exists and differs") {
			t.Errorf("--format %s over an edited file: %v", format, err)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--print", "--format", "golang-migrate"}, "write them with --out DIR"},
		{[]string{"--print", "--format", "flyway"}, `--format "flyway": want sql, goose or golang-migrate`},
		{[]string{"--print", "--out", t.TempDir()}, "choose one"},
		{[]string{"--print", "--format", "goose", "--schema", "ops"}, "--schema applies to the plain script"},
	} {
		err := dispatch(t.Context(), append([]string{"migrate"}, c.args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("migrate %v: %v, want an error containing %q", c.args, err, c.want)
		}
	}
	var out bytes.Buffer
	if err := dispatch(t.Context(), []string{"migrate", "--print", "--format", "goose"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	up, down := strings.Index(s, "-- +goose Up\n"), strings.Index(s, "\n-- +goose Down\n")
	if up != 0 || down < 0 || strings.Index(s, "-- 002_create_relay.down.sql") > strings.Index(s, "-- 001_create_events.down.sql") {
		t.Errorf("migrate --print --format goose: want the ups, then the downs in reverse:\n%s", s)
	}
}

// TestMigrateMessages checks that migrate --messages creates the slot of
// message storage once, and refuses the flags it cannot go with.
func TestMigrateMessages(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	args := []string{"migrate", "--messages", "--database-url", url, "--schema", "billing"}
	for i, want := range []string{"created replication slot txoutbox_messages_", "replication slot txoutbox_messages_"} {
		var out bytes.Buffer
		if err := dispatch(t.Context(), args, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		last := out.String()[strings.LastIndex(strings.TrimSuffix(out.String(), "\n"), "\n")+1:]
		if !strings.HasPrefix(last, want) || (i == 1) != strings.Contains(last, "already exists") {
			t.Errorf("migrate --messages, run %d, ends with %q", i+1, last)
		}
	}
	for _, extra := range [][]string{{"--inbox"}, {"--print"}, {"--out", t.TempDir()}} {
		err := dispatch(t.Context(), append([]string{"migrate", "--messages", "--database-url", url}, extra...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--messages") {
			t.Errorf("migrate --messages %s = %v, want an error naming --messages", extra[0], err)
		}
	}
	if err := dispatch(t.Context(), []string{"migrate", "--recreate-lost-slot", "--database-url", url}, io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "add --messages") {
		t.Errorf("migrate --recreate-lost-slot without --messages = %v", err)
	}
}

// TestMigrateMessagesLostSlot: a deploy's migrate --messages, run after
// the slot was dropped while no relay ran, refuses to create it again,
// saying it was lost and how to recover; --recreate-lost-slot creates it,
// printing what was lost.
func TestMigrateMessagesLostSlot(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	args := []string{"migrate", "--messages", "--database-url", url}
	if err := dispatch(t.Context(), args, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
		WHERE database = current_database() AND starts_with(slot_name, 'txoutbox_messages_')`); err != nil {
		t.Fatal(err)
	}
	for range 2 { // a second deploy refuses too
		var out bytes.Buffer
		err := dispatch(t.Context(), args, &out, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "was lost") || !strings.Contains(err.Error(), "--recreate-lost-slot") {
			t.Fatalf("migrate --messages after the slot was dropped = %v\n%s", err, out.String())
		}
	}
	var out bytes.Buffer
	if err := dispatch(t.Context(), append(args, "--recreate-lost-slot"), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "LOST: ") || !strings.Contains(s, "created replication slot txoutbox_messages_") ||
		!strings.Contains(s, "again") {
		t.Errorf("migrate --messages --recreate-lost-slot says:\n%s", s)
	}
	out.Reset()
	if err := dispatch(t.Context(), args, &out, io.Discard); err != nil || !strings.Contains(out.String(), "already exists") {
		t.Errorf("migrate --messages once the slot is back = %v\n%s", err, out.String())
	}
}
