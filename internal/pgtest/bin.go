package pgtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// versionedDirs are globs of per-version install directories, searched newest
// version first: Debian/Ubuntu, RHEL/Fedora (PGDG), Homebrew (Apple silicon and
// Intel), Postgres.app.
var versionedDirs = []string{
	"/usr/lib/postgresql/*/bin",
	"/usr/pgsql-*/bin",
	"/opt/homebrew/opt/postgresql@*/bin",
	"/usr/local/opt/postgresql@*/bin",
	"/Applications/Postgres.app/Contents/Versions/*/bin",
}

// DefaultBinDirs returns where Start looks for initdb and postgres when
// Options.BinDirs is empty: the directories on PATH, then pg_config --bindir,
// then the usual per-version install directories, newest version first.
func DefaultBinDirs() []string {
	dirs := filepath.SplitList(os.Getenv("PATH"))
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); d != "" {
			dirs = append(dirs, d)
		}
	}
	for _, pattern := range versionedDirs {
		dirs = append(dirs, newestFirst(pattern)...)
	}
	return dirs
}

// newestFirst expands a glob with one * standing for a version and sorts the
// matches by that version, highest first ("17" before "9.6").
func newestFirst(pattern string) []string {
	matches, _ := filepath.Glob(pattern)
	prefix, suffix, _ := strings.Cut(pattern, "*")
	version := func(path string) []int {
		v := strings.TrimSuffix(strings.TrimPrefix(path, prefix), suffix)
		var nums []int
		for part := range strings.FieldsFuncSeq(v, func(r rune) bool { return r < '0' || r > '9' }) {
			n, _ := strconv.Atoi(part)
			nums = append(nums, n)
		}
		return nums
	}
	slices.SortStableFunc(matches, func(a, b string) int { return slices.Compare(version(b), version(a)) })
	return matches
}

// findBinDir returns the first directory holding both initdb and postgres.
func findBinDir(dirs []string) (string, error) {
	var searched []string
	for _, dir := range dirs {
		if dir == "" || slices.Contains(searched, dir) {
			continue
		}
		searched = append(searched, dir)
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", &NotFoundError{Searched: searched}
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
