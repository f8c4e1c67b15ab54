package main

import (
	"bytes"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionLine(t *testing.T) {
	t.Parallel()
	platform := runtime.GOOS + "/" + runtime.GOARCH
	vcs := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"release", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.0"},
			Settings: vcs("vcs.revision", "0123456789abcdef0123", "vcs.time", "2026-01-02T03:04:05Z", "vcs.modified", "false")},
			"txoutbox v1.2.0 (revision 0123456789ab, 2026-01-02T03:04:05Z; go1.26.0 " + platform + ")"},
		{"modified clone", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"},
			Settings: vcs("vcs.revision", "abc", "vcs.modified", "true")},
			"txoutbox devel (revision abc, modified; go1.26.0 " + platform + ")"},
		{"no version control", &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "(devel)"}},
			"txoutbox devel (go1.26.0 " + platform + ")"},
		{"no build information", nil, "txoutbox devel (" + runtime.Version() + " " + platform + ")"},
	} {
		if got := versionLine(tc.bi); got != tc.want {
			t.Errorf("%s: versionLine = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestVersionCommand(t *testing.T) {
	t.Parallel()
	var outs []string
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		var out bytes.Buffer
		if err := dispatch(t.Context(), args, &out, io.Discard); err != nil {
			t.Fatalf("txoutbox %s: %v", strings.Join(args, " "), err)
		}
		if !strings.HasPrefix(out.String(), "txoutbox ") || strings.Count(out.String(), "\n") != 1 {
			t.Errorf("txoutbox %s printed %q, want one line naming the version", strings.Join(args, " "), out.String())
		}
		outs = append(outs, out.String())
	}
	if outs[0] != outs[1] || outs[1] != outs[2] {
		t.Errorf("txoutbox version and --version differ: %q", outs)
	}
	var help bytes.Buffer
	if err := dispatch(t.Context(), []string{"--help"}, &help, io.Discard); err != nil || !strings.Contains(help.String(), "txoutbox --version") || !strings.Contains(help.String(), "  version ") {
		t.Errorf("txoutbox --help does not mention version and --version (%v):\n%s", err, help.String())
	}
}

func TestClosest(t *testing.T) {
	t.Parallel()
	names := []string{"database-url", "schema", "batch-size", "sink", "status", "relay"}
	for name, want := range map[string]string{
		"databse-url": "database-url", "database_url": "database-url", "shcema": "schema", "sinks": "sink",
		"stauts": "status", "relya": "relay", "x": "", "frobnicate": "", "url": "",
	} {
		if got := closest(name, names); got != want {
			t.Errorf("closest(%q) = %q, want %q", name, got, want)
		}
	}
}
