package clitest

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/internal/pgtest"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// binDir holds the binary build makes, for the whole test run.
var binDir string

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "txoutbox-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	binDir = dir
	code := pgtest.Wrap(m).Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// build builds the binary once per test run. It first stats every Go file
// of the module from inside a test, where go test records the files a test
// looks at: a cached result is then reused only while the binary's sources
// are unchanged.
func build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := filepath.Abs("../../..")
		if err == nil {
			err = filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if e.IsDir() && path != root && (strings.HasPrefix(e.Name(), ".") || e.Name() == "testdata") {
					return filepath.SkipDir
				}
				if name := e.Name(); strings.HasSuffix(name, ".go") || strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".sql") || name == "go.mod" || name == "go.sum" {
					_, err = os.Stat(path)
				}
				return err
			})
		}
		if err != nil {
			buildErr = fmt.Errorf("list the module's files: %w", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out := filepath.Join(binDir, "txoutbox")
		if msg, err := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/txoutbox/txoutbox/cmd/txoutbox").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build txoutbox: %w\n%s", err, msg)
			return
		}
		binary = out
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// result is what one run of the binary did.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// run runs the binary in dir ("" for this directory) with args, an
// environment without TXOUTBOX_ variables plus env, and a time limit.
func run(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	return runTimeout(t, time.Minute, dir, env, args...)
}

func runTimeout(t *testing.T, limit time.Duration, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, build(t), args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TXOUTBOX_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("txoutbox %s: no exit within %s\n%s%s", strings.Join(args, " "), limit, stdout.String(), stderr.String())
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run txoutbox: %v", err)
		}
		code = ee.ExitCode()
	}
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// mustRun runs the binary and fails the test unless it exits 0.
func mustRun(t *testing.T, env []string, args ...string) result {
	t.Helper()
	r := run(t, "", env, args...)
	if r.code != 0 {
		t.Fatalf("txoutbox %s:\n%s", strings.Join(args, " "), r)
	}
	return r
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (rerun with -update after checking):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	r := mustRun(t, nil, "--help")
	for _, name := range []string{"migrate", "topics", "gen", "status", "inspect", "replay", "demo"} {
		if !strings.Contains(r.stdout, "\n  "+name+" ") {
			t.Errorf("txoutbox --help does not list %s:\n%s", name, r.stdout)
		}
		args := []string{name, "--help"}
		if name == "topics" {
			args = []string{"topics", "lint", "--help"}
		}
		h := mustRun(t, nil, args...)
		if !strings.Contains(h.stdout, "Examples:\n  txoutbox "+args[0]) || !strings.Contains(h.stdout, "TXOUTBOX_") {
			t.Errorf("txoutbox %s has no examples or env vars:\n%s", strings.Join(args, " "), h.stdout)
		}
	}
	if r := run(t, "", nil, "topics"); r.code != 1 || !strings.Contains(r.stderr, "lint, docs, diff or asyncapi") {
		t.Errorf("txoutbox topics without a command:\n%s", r)
	}
}

func TestTopicsLint(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/lint/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no lint testdata: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := run(t, "testdata/lint", nil, "topics", "lint", name)
			golden(t, strings.TrimSuffix(f, ".yaml")+".golden", r.String())
		})
	}
	t.Run("env", func(t *testing.T) {
		t.Parallel()
		r := run(t, "testdata/lint", []string{"TXOUTBOX_TOPICS=good.yaml"}, "topics", "lint")
		if r.code != 0 || !strings.HasPrefix(r.stdout, "good.yaml: 2 topics") {
			t.Errorf("TXOUTBOX_TOPICS is not read:\n%s", r)
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		t.Parallel()
		r := run(t, "", nil, "topics", "lint", "testdata/lint/missing.yaml")
		if r.code != 1 || r.stderr != "txoutbox: topics lint: cannot read testdata/lint/missing.yaml: no such file or directory\n" {
			t.Errorf("missing file:\n%s", r)
		}
		r = run(t, "", nil, "topics", "lint", "testdata")
		if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, "is a directory") {
			t.Errorf("a directory:\n%s", r)
		}
	})
	t.Run("two files", func(t *testing.T) {
		t.Parallel()
		r := run(t, "testdata/lint", nil, "topics", "lint", "good.yaml", "typos.yaml")
		if r.code != 1 || !strings.Contains(r.stderr, `unexpected argument "typos.yaml"`) {
			t.Errorf("two files:\n%s", r)
		}
	})
}

func TestTopicsDocs(t *testing.T) {
	t.Parallel()
	r := mustRun(t, nil, "topics", "docs", "--topics", "../../../topic_definitions.yaml")
	want, err := os.ReadFile("../internal/gen/testdata/topic_definitions.md.golden")
	if err != nil {
		t.Fatal(err)
	}
	if r.stdout != string(want) {
		t.Errorf("topics docs differs from the catalogue cmd/txoutbox/internal/gen tests:\n%s", r.stdout)
	}
	if r := run(t, "testdata/lint", nil, "topics", "docs", "typos.yaml"); r.code != 1 || !strings.Contains(r.stderr, "typos.yaml:4:5: unknown key") {
		t.Errorf("docs of a bad file:\n%s", r)
	}
}

func TestGen(t *testing.T) {
	t.Parallel()
	defs, err := filepath.Abs("../../../topic_definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../../examples/billingevents/topics_gen.go")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "billingevents")
	out := filepath.Join(dir, "topics_gen.go")

	// The package name defaults to the directory's.
	r := mustRun(t, nil, "gen", "--out", dir, defs)
	if !strings.Contains(r.stdout, "wrote "+out+": package billingevents, 9 topics") {
		t.Errorf("gen says:\n%s", r)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("gen wrote something else than examples/billingevents/topics_gen.go:\n%s", got)
	}

	// Unchanged input changes nothing, not even the file's time.
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(out, old, old); err != nil {
		t.Fatal(err)
	}
	r = mustRun(t, []string{"TXOUTBOX_TOPICS=" + defs}, "gen", "--package", "billingevents", "--out", dir)
	if !strings.Contains(r.stdout, "is up to date") {
		t.Errorf("second run says:\n%s", r)
	}
	if fi, err := os.Stat(out); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("second run touched the file: %v %v", fi.ModTime(), err)
	}
	mustRun(t, nil, "gen", "--check", "--out", dir, defs)

	if err := os.WriteFile(out, append(got, "// edited\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := run(t, "", nil, "gen", "--check", "--out", dir, defs); r.code != 1 || !strings.Contains(r.stderr, "out of date") {
		t.Errorf("--check on an edited file:\n%s", r)
	}

	r = mustRun(t, nil, "gen", "--package", "events", "--out", "-", defs)
	if !strings.HasPrefix(r.stdout, "// Code generated by txoutbox gen. DO NOT EDIT.\n") || !strings.Contains(r.stdout, "\npackage events\n") {
		t.Errorf("--out - printed:\n%.300s", r.stdout)
	}
	if r := run(t, "", nil, "gen", "--package", "my-events", "--out", "-", defs); r.code != 1 || !strings.Contains(r.stderr, `--package: "my-events" is not a Go package name`) {
		t.Errorf("bad package:\n%s", r)
	}
	if r := run(t, "testdata/lint", nil, "gen", "--out", "-", "typos.yaml"); r.code != 1 || !strings.Contains(r.stderr, "4 problems in typos.yaml") {
		t.Errorf("gen of a bad file:\n%s", r)
	}
}
