package main

import (
	"bytes"
	"io"
	"strings"
	"testing"

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
		if want := "applied 001_create_events.up.sql\napplied 002_create_relay.up.sql\noutbox tables are up to date in "; !strings.HasPrefix(out.String(), want) {
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
