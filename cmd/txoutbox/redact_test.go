package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestRedact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:pw@host:5432/db", "postgres://u:xxxxx@host:5432/db"},
		{`unexpected argument "postgres://u:secret@host/db"`, `unexpected argument "postgres://u:xxxxx@host/db"`},
		{"htps://user:pass@host/x is not a URL", "htps://user:xxxxx@host/x is not a URL"},
		{"cannot parse postgres://u:p@[bad", "cannot parse postgres://u:xxxxx@[bad"},
		{"postgres://u:p@ss/w@rd@host/db", "postgres://u:xxxxx@host/db"},
		{"postgres://u:s3cret%2F%40x@host/db", "postgres://u:xxxxx@host/db"},
		{"postgres://u@host/db and https://host/a@b", "postgres://u@host/db and https://host/a@b"},
		{"flag -postgres://u:pw@h", "flag -postgres://u:xxxxx@h"},
		{"host=db user=app password=s3cret dbname=app", "host=db user=app password=xxxxx dbname=app"},
		{"host=db password='s3 cr\\'et' dbname=app", "host=db password=xxxxx dbname=app"},
		{`"host=db PASSWORD=s3cret"`, `"host=db PASSWORD=xxxxx"`},
		{"https://api/x?token=abc&b=1&api_key=k&client_secret=s", "https://api/x?token=xxxxx&b=1&api_key=xxxxx&client_secret=xxxxx"},
		{"postgres://h/db?sslpassword=abc", "postgres://h/db?sslpassword=xxxxx"},
		{"password=", "password="},
		{"key=inv-1 id=3 nothing secret", "key=inv-1 id=3 nothing secret"},
		{"stdout", "stdout"},
	} {
		if got := redact(tc.in); got != tc.want {
			t.Errorf("redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRedactErr(t *testing.T) {
	t.Parallel()
	base := errors.New("connect: password \"s3cret/@x\" refused\n\tattempt 1\n\tattempt 1\n")
	err := redactErr(base, "postgres://u:s3cret%2F%40x@h/db", "host=h password=s3cret/@x")
	if want := `connect: password "xxxxx" refused attempt 1`; err.Error() != want {
		t.Errorf("redactErr = %q, want %q", err, want)
	}
	if !errors.Is(err, base) {
		t.Error("errors.Is does not see the original error")
	}
}

func TestDatabaseName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"postgres://app:s3cret@db.internal:6432/orders?sslmode=disable", "postgres://app@db.internal:6432/orders"},
		{"postgres://app:s3cret@db.internal/orders", "postgres://app@db.internal:5432/orders"},
		{"host=db.internal port=6432 user=app password=s3cret dbname=orders", "postgres://app@db.internal:6432/orders"},
		{"postgres://app:s3cret@[bad", "postgres://app:xxxxx@[bad"},
	} {
		if got := databaseName(tc.in); got != tc.want {
			t.Errorf("databaseName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// planted is the password the secret tests plant; no output may show it.
const planted = "PLANTEDpw"

// plantedValues hold the planted password in the shapes a user may type:
// URLs that parse and ones that do not, a wrong scheme, a keyword/value
// connection string, a query parameter, and the broker sinks' URLs. Their
// hosts are closed loopback ports, so that every command fails at once.
var plantedValues = []string{
	"postgres://u:" + planted + "@127.0.0.1:1/x?sslmode=disable&connect_timeout=1",
	"postgres://u:" + planted + "@[bad",
	"htps://user:" + planted + "@127.0.0.1:1/x",
	"https://user:" + planted + "@127.0.0.1:1/x",
	"host=127.0.0.1 port=1 user=u password=" + planted + " connect_timeout=1",
	"https://127.0.0.1:1/x?token=" + planted,
	"nats://u:" + planted + "@127.0.0.1:1",
	"amqp://u:" + planted + "@127.0.0.1:1/",
}

// commandPaths returns every command as typed, with its subcommands.
func commandPaths(t *testing.T) [][]string {
	t.Helper()
	subcommands := map[string][]string{"topics": {"lint", "docs"}}
	var paths [][]string
	for _, c := range commands() {
		if subs, ok := subcommands[c.name]; ok {
			for _, s := range subs {
				paths = append(paths, []string{c.name, s})
			}
			continue
		}
		paths = append(paths, []string{c.name})
	}
	return paths
}

var helpFlag = regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`)

// commandFlags returns the names of the flags path's --help lists.
func commandFlags(t *testing.T, path []string) []string {
	t.Helper()
	var out bytes.Buffer
	if err := dispatch(t.Context(), append(path[:len(path):len(path)], "--help"), &out, io.Discard); err != nil {
		t.Fatalf("%s --help: %v", strings.Join(path, " "), err)
	}
	if !strings.Contains(out.String(), "\nFlags:\n") {
		t.Fatalf("%s --help lists no flags; a command with subcommands belongs in commandPaths:\n%s", strings.Join(path, " "), out.String())
	}
	var names []string
	for _, m := range helpFlag.FindAllStringSubmatch(out.String(), -1) {
		names = append(names, m[1])
	}
	return names
}

// safeArgs are flags that make each command fail fast or stop at once and
// write nothing: an unreachable database, no admin listener, a free port.
func safeArgs(t *testing.T, path []string, flags []string) map[string]string {
	args := map[string]string{}
	for _, f := range flags {
		switch f {
		case "database-url":
			args[f] = plantedValues[0]
		case "admin-addr":
			args[f] = ""
		case "sink":
			if path[0] == "relay" {
				args[f] = "noop"
			}
		case "addr":
			args[f] = "127.0.0.1:0"
		case "log-level":
			args[f] = "debug"
		case "out":
			args[f] = t.TempDir()
		case "topics":
			if path[0] == "gen" { // so that gen never writes
				args[f] = "missing-topic-definitions.yaml"
			}
		}
	}
	return args
}

// runPlanted runs path with flags and the extra arguments, and fails the
// test if its output or error shows the planted password.
func runPlanted(t *testing.T, ctx context.Context, path []string, flags map[string]string, extra ...string) {
	t.Helper()
	args := append([]string(nil), path...)
	for k, v := range flags {
		args = append(args, "--"+k+"="+v)
	}
	args = append(args, extra...)
	var stdout, stderr lockedBuffer
	err := dispatch(ctx, args, &stdout, &stderr)
	t.Logf("txoutbox %q: %v", args, err)
	for what, out := range map[string]string{"stdout": stdout.String(), "stderr": stderr.String(), "the error": errString(err)} {
		if strings.Contains(out, planted) {
			t.Errorf("txoutbox %q: %s shows the password:\n%s", args, what, out)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestNoSecretsPrinted plants a password in every flag and as an argument
// of every command, in the flag, the environment and as an unknown command
// or flag, and checks that no output and no error shows it.
func TestNoSecretsPrinted(t *testing.T) {
	t.Chdir(t.TempDir()) // a command that writes a file writes it here
	type run struct {
		path  []string
		flags map[string]string
		extra []string
	}
	var runs []run
	var envRuns []run // the planted flag set in the environment: extra[0] is its name
	for _, path := range commandPaths(t) {
		flags := commandFlags(t, path)
		for _, v := range plantedValues {
			for _, f := range flags {
				args := safeArgs(t, path, flags)
				args[f] = v
				runs = append(runs, run{path, args, nil})
				args = safeArgs(t, path, flags)
				delete(args, f)
				envRuns = append(envRuns, run{path, args, []string{envName(f), v}})
			}
			runs = append(runs, run{path, safeArgs(t, path, flags), []string{v}}, run{path, nil, []string{"--" + v}})
		}
	}
	for _, v := range plantedValues {
		runs = append(runs, run{[]string{v}, nil, nil}, run{[]string{"topics", v}, nil, nil})
	}

	t.Run("env", func(t *testing.T) {
		// Sequential, as t.Setenv wants, on a cancelled context: what the
		// environment sets flows as a flag does once parsed.
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		for _, r := range envRuns {
			t.Run(strings.Join(r.path, " ")+" "+r.extra[0], func(t *testing.T) {
				t.Setenv(r.extra[0], r.extra[1])
				runPlanted(t, ctx, r.path, r.flags)
			})
		}
	})
	t.Run("args", func(t *testing.T) {
		for _, r := range runs {
			t.Run(strings.Join(r.path, " "), func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
				defer cancel()
				runPlanted(t, ctx, r.path, r.flags, r.extra...)
			})
		}
	})
}
