package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTopicsDirectory gives every command that reads topic definitions a
// directory: the error names it once and says a file is wanted.
func TestTopicsDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, args := range [][]string{
		{"topics", "lint", dir},
		{"topics", "docs", "--topics", dir},
		{"gen", "--out", t.TempDir(), dir},
		{"relay", "--database-url", "postgres://127.0.0.1:1/x", "--sink", "noop", "--admin-addr", "", "--topics", dir},
		{"sink", "--addr", "127.0.0.1:0", "--topics", dir},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := dispatch(ctx, args, io.Discard, io.Discard)
		cancel()
		if err == nil || strings.Count(err.Error(), dir) != 1 || !strings.Contains(err.Error(), "is a directory (want a topic definitions file") {
			t.Errorf("txoutbox %s: %v; want an error naming the directory once and asking for a file", strings.Join(args, " "), err)
		}
	}
}

// TestTopicsOneTopic checks lint and docs on a file of one topic without a
// Description: counts in the singular, and a hint, not a failure, for the
// missing Description.
func TestTopicsOneTopic(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "topic_definitions.yaml")
	yaml := "DefaultCategory: billing\nTopics:\n  - Action: Created\n    Entity: Invoice\n    Schema: {type: object}\n"
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := dispatch(t.Context(), []string{"topics", "lint", file}, &out, io.Discard); err != nil {
		t.Fatalf("topics lint: %v\n%s", err, out.String())
	}
	want := file + ":3: billing.InvoiceCreated has no Description (hint: say in a sentence what happened; txoutbox topics docs shows it)\n" +
		file + ": 1 topic in 1 category (billing), all valid\n"
	if out.String() != want {
		t.Errorf("topics lint printed:\n%s\nwant:\n%s", out.String(), want)
	}
	out.Reset()
	if err := dispatch(t.Context(), []string{"topics", "docs", file}, &out, io.Discard); err != nil {
		t.Fatalf("topics docs: %v", err)
	}
	if !strings.Contains(out.String(), "\n1 topic; ") {
		t.Errorf("topics docs does not say 1 topic:\n%s", out.String())
	}
}
