package clitest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// topics diff exits 0 when nothing breaks, 3 when something does, and 1 on
// an error, so that CI can tell them apart.
func TestTopicsDiffExitStatus(t *testing.T) {
	t.Parallel()
	old, err := filepath.Abs("../../../topic_definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(old)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, from, to string) string {
		if !strings.Contains(string(data), from) {
			t.Fatalf("the definitions lack %q", from)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Replace(string(data), from, to, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	breaking := write("breaking.yaml", "enum: [EUR, GBP, USD]", "enum: [EUR, GBP]")
	compatible := write("compatible.yaml", "enum: [EUR, GBP, USD]", "enum: [EUR, GBP, USD, CHF]")
	for _, c := range []struct {
		new  string
		code int
		want string
	}{
		{old, 0, "0 breaking changes, 0 other changes"},
		{compatible, 0, `info: billing.InvoiceCreated /properties/currency/enum: enum values added: "CHF"`},
		{breaking, 3, breaking + `:33: breaking: billing.InvoiceCreated /properties/currency/enum: enum values removed: "USD"`},
		{filepath.Join(dir, "missing.yaml"), 1, ""},
	} {
		r := run(t, "", nil, "topics", "diff", old, c.new)
		if r.code != c.code || !strings.Contains(r.stdout, c.want) {
			t.Errorf("topics diff %s: exit %d, want %d; stdout:\n%s\nstderr: %s", filepath.Base(c.new), r.code, c.code, r.stdout, r.stderr)
		}
	}
}
