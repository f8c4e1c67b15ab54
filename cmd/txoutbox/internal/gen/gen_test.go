package gen_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"go/format"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/cmd/txoutbox/internal/gen"
	"github.com/txoutbox/txoutbox/topics"
)

var update = flag.Bool("update", false, "rewrite the golden files and the billingevents example")

// generate loads a definitions file and generates package pkg from it.
func generate(t *testing.T, file, pkg string) []byte {
	t.Helper()
	reg, err := topics.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	src, err := gen.Generate(reg, &gen.Config{Package: pkg})
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func compareOrUpdate(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("generated code differs from %s (rerun with -update after checking the change):\n%s", path, firstDiff(want, got))
	}
}

func firstDiff(want, got []byte) string {
	wl, gl := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := range max(len(wl), len(gl)) {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return "line " + strconv.Itoa(i+1) + ":\n  want " + w + "\n  got  " + g
		}
	}
	return ""
}

func TestGolden(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			compareOrUpdate(t, strings.TrimSuffix(f, ".yaml")+".go.golden", generate(t, f, name))
		})
	}
}

// The example package is what `go generate` makes of the root definitions;
// this keeps it from going stale.
func TestBillingEventsUpToDate(t *testing.T) {
	t.Parallel()
	reg, err := topics.Load("../../../../topic_definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src, err := gen.Generate(reg, &gen.Config{Package: "billingevents"})
	if err != nil {
		t.Fatal(err)
	}
	compareOrUpdate(t, "../../../../examples/billingevents/"+gen.FileNameDefault, src)
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	for _, f := range []string{"../../../../topic_definitions.yaml", "testdata/shapes.yaml"} {
		first := generate(t, f, "events")
		for range 5 {
			if again := generate(t, f, "events"); !bytes.Equal(first, again) {
				t.Fatalf("%s: a second run gave different output:\n%s", f, firstDiff(first, again))
			}
		}
		formatted, err := format.Source(first)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(formatted, first) {
			t.Errorf("%s: output is not gofmt-clean", f)
		}
		if line, _, _ := strings.Cut(string(first), "\n"); line != gen.Header {
			t.Errorf("%s: first line %q, want %q", f, line, gen.Header)
		}
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	reg, err := topics.Load("../../../../topic_definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, pkg := range []string{"", "1abc", "func", "my-pkg", "_"} {
		if _, err := gen.Generate(reg, &gen.Config{Package: pkg}); !errors.Is(err, gen.ErrInvalidConfig) {
			t.Errorf("Package %q: err = %v, want ErrInvalidConfig", pkg, err)
		}
	}
	if _, err := gen.Generate(reg, nil); !errors.Is(err, gen.ErrInvalidConfig) {
		t.Errorf("nil config: err = %v, want ErrInvalidConfig", err)
	}
	src, err := gen.Generate(reg, &gen.Config{Package: "x", Source: "/somewhere/defs.yaml"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(src, []byte("\n// Source: defs.yaml\n")) {
		t.Errorf("Source is not named by its base name:\n%.200s", src)
	}
}

func TestPackageNameFor(t *testing.T) {
	t.Parallel()
	for dir, want := range map[string]string{
		"billingevents":  "billingevents",
		"billing-events": "billingevents",
		"Billing_Events": "billingevents",
		"2fa":            "events",
		"...":            "events",
		"type":           "events",
	} {
		if got := gen.PackageNameFor(dir); got != want {
			t.Errorf("PackageNameFor(%q) = %q, want %q", dir, got, want)
		}
	}
}

// buildOverlay builds a main package made of files that exist only in an
// overlay, under a directory of this module that does not exist on disk, so
// that nothing is written into the source tree. files maps a path relative
// to that directory to its contents. It returns the go command's output.
func buildOverlay(t *testing.T, files map[string]string) (string, error) {
	t.Helper()
	root, err := filepath.Abs("../../../..")
	if err != nil {
		t.Fatal(err)
	}
	virtual := filepath.Join(root, "cmd", "txoutbox", "internal", "gen", "testdata", "overlay-"+strings.ReplaceAll(t.Name(), "/", "-"))
	tmp := t.TempDir()
	replace := map[string]string{}
	for name, body := range files {
		real := filepath.Join(tmp, strings.ReplaceAll(name, "/", "_")+".txt")
		if err := os.WriteFile(real, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		replace[filepath.Join(virtual, filepath.FromSlash(name))] = real
	}
	b, err := json.Marshal(map[string]any{"Replace": replace})
	if err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(tmp, "overlay.json")
	if err := os.WriteFile(overlay, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	rel, err := filepath.Rel(root, virtual)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-overlay="+overlay, "-o", os.DevNull, "./"+filepath.ToSlash(rel))
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// usesBillingEvents is a program against the generated billingevents
// package; %s is the AmountCents value.
const usesBillingEvents = `package main

import (
	"context"

	"github.com/txoutbox/txoutbox/cmd/txoutbox/internal/gen/testdata/%s/billingevents"
	"github.com/txoutbox/txoutbox/outbox"
)

func main() {
	var sess *outbox.Session
	_ = billingevents.InvoiceCreated(context.Background(), sess, billingevents.Invoice{
		ID:          "inv-1",
		Customer:    billingevents.InvoiceCustomer{ID: "cus-1", Name: "Ada"},
		AmountCents: %s,
		Currency:    billingevents.InvoiceCurrencyEUR,
		Status:      billingevents.InvoiceStatusOpen,
		DueDate:     "2026-12-31",
	})
	reason := "duplicate"
	_ = billingevents.PaymentRefunded(context.Background(), sess, billingevents.PaymentRefundedData{
		ID: "pay-1", InvoiceID: "inv-1", AmountCents: 5, Reason: &reason,
	})
}
`

// The point of generated code: a field of the wrong type does not compile.
func TestWrongFieldTypeDoesNotCompile(t *testing.T) {
	t.Parallel()
	src := generate(t, "../../../../topic_definitions.yaml", "billingevents")
	for _, tc := range []struct {
		name, amount string
		ok           bool
	}{
		{"int", "1250", true},
		{"string", `"1250"`, false},
		{"float", "12.5", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := "overlay-" + strings.ReplaceAll(t.Name(), "/", "-")
			out, err := buildOverlay(t, map[string]string{
				"billingevents/" + gen.FileNameDefault: string(src),
				"main.go":                              fmt.Sprintf(usesBillingEvents, dir, tc.amount),
			})
			switch {
			case tc.ok && err != nil:
				t.Fatalf("correct program does not build: %v\n%s", err, out)
			case !tc.ok && err == nil:
				t.Fatalf("AmountCents: %s compiled", tc.amount)
			case !tc.ok && !strings.Contains(out, "cannot use "+tc.amount):
				t.Fatalf("build failed for another reason than the field's type:\n%s", out)
			}
		})
	}
}

// Every golden file is a package that compiles and passes go vet's checks
// the compiler runs (struct tags included).
func TestGoldenCompiles(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/*.go.golden")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	overlay := map[string]string{}
	var imports, uses strings.Builder
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".go.golden")
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		overlay[name+"/"+gen.FileNameDefault] = string(body)
		fmt.Fprintf(&imports, "\t%q\n", "github.com/txoutbox/txoutbox/cmd/txoutbox/internal/gen/testdata/overlay-"+t.Name()+"/"+name)
		fmt.Fprintf(&uses, "\t_ = %s.Header\n", name)
		overlay[name+"/header.go"] = "package " + name + "\n\n// Header is used by the test program.\nconst Header = 0\n"
	}
	overlay["main.go"] = "package main\n\nimport (\n" + imports.String() + ")\n\nfunc main() {\n" + uses.String() + "}\n"
	if out, err := buildOverlay(t, overlay); err != nil {
		t.Fatalf("generated code does not build: %v\n%s", err, out)
	}
}
