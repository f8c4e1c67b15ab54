package main

import (
	"context"
	"io"
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
