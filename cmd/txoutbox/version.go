package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

const versionUsage = `
Print the module version of this binary and the revision of the source it
was built from, as the Go toolchain recorded them: the commit, its time, and
whether the tree had uncommitted changes ("modified"). "txoutbox --version"
prints the same.`

const versionExamples = `  txoutbox version
  txoutbox --version`

func runVersion(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("version", versionUsage, versionExamples)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	bi, _ := debug.ReadBuildInfo() // nil without build information
	fmt.Fprintln(stdout, versionLine(bi))
	return nil
}

// versionLine describes a build: "txoutbox v1.2.0 (revision 0123456789ab,
// 2026-01-02T03:04:05Z, modified; go1.26.0 linux/amd64)". A binary built
// from a source tree without a version says "devel"; one built outside
// version control has no revision.
func versionLine(bi *debug.BuildInfo) string {
	version, goVersion := "devel", runtime.Version()
	var details []string
	if bi != nil {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			version = v
		}
		if bi.GoVersion != "" {
			goVersion = bi.GoVersion
		}
		settings := make(map[string]string)
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if rev := settings["vcs.revision"]; rev != "" {
			details = append(details, "revision "+rev[:min(len(rev), 12)])
		}
		if t := settings["vcs.time"]; t != "" {
			details = append(details, t)
		}
		if settings["vcs.modified"] == "true" {
			details = append(details, "modified")
		}
	}
	platform := goVersion + " " + runtime.GOOS + "/" + runtime.GOARCH
	if len(details) == 0 {
		return fmt.Sprintf("txoutbox %s (%s)", version, platform)
	}
	return fmt.Sprintf("txoutbox %s (%s; %s)", version, strings.Join(details, ", "), platform)
}
