package topics_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/topics"
)

var update = flag.Bool("update", false, "rewrite testdata/invalid/*.golden from the current output")

// TestParseInvalid loads each broken file in testdata/invalid and compares the
// full error text with its golden file, so a change to any message is seen
// in review.
func TestParseInvalid(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 10 {
		t.Fatalf("found %d invalid files, want at least 10", len(files))
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(strings.TrimSuffix(name, ".yaml"), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			reg, err := topics.Parse(name, data)
			if err == nil {
				t.Fatalf("Parse succeeded with %d topics, want an error", len(reg.Topics()))
			}
			var lerr *topics.LoadError
			if !errors.As(err, &lerr) || len(lerr.Errors) == 0 {
				t.Fatalf("err = %T %v, want *topics.LoadError with problems", err, err)
			}
			for i, d := range lerr.Errors {
				if d.File != name || d.Line < 1 || d.Column < 1 {
					t.Errorf("problem %d has position %s:%d:%d, want %s with line and column", i, d.File, d.Line, d.Column, name)
				}
				if i > 0 && (d.Line < lerr.Errors[i-1].Line ||
					d.Line == lerr.Errors[i-1].Line && d.Column < lerr.Errors[i-1].Column) {
					t.Errorf("problems not sorted by position: %v before %v", lerr.Errors[i-1], d)
				}
			}
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			got := err.Error() + "\n"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestParseInvalid -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("error text differs from %s:\n got:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}
