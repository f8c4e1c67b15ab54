package pgtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRemoveStale(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	self := os.Getpid()
	dirs := map[string]string{ // name -> owner marker ("" for none)
		dirPrefix + "dead":        strconv.Itoa(dead.Process.Pid) + " 1\n",
		dirPrefix + "recycled":    strconv.Itoa(self) + " 1\n", // live pid, other start time
		dirPrefix + "alive":       strconv.Itoa(self) + " " + procStartTime(self) + "\n",
		dirPrefix + "new-unowned": "",
		dirPrefix + "old-unowned": "",
		dirPrefix + "garbled":     "not a pid\n",
		"unrelated-dead":          strconv.Itoa(dead.Process.Pid) + "\n",
	}
	for name, marker := range dirs {
		dir := filepath.Join(parent, name)
		if err := os.MkdirAll(filepath.Join(dir, dataSubdir), 0o700); err != nil {
			t.Fatal(err)
		}
		if marker != "" {
			if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(marker), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	old := time.Now().Add(-2 * staleGrace)
	if err := os.Chtimes(filepath.Join(parent, dirPrefix+"old-unowned"), old, old); err != nil {
		t.Fatal(err)
	}

	var removed []string
	for _, d := range removeStale(parent) {
		removed = append(removed, filepath.Base(d))
	}
	slices.Sort(removed)
	want := []string{dirPrefix + "dead", dirPrefix + "old-unowned", dirPrefix + "recycled"}
	if runtimeHasProc() && !slices.Equal(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	for name := range dirs {
		_, err := os.Stat(filepath.Join(parent, name))
		if gone := os.IsNotExist(err); gone != slices.Contains(removed, name) {
			t.Errorf("%s: exists = %v after reporting removed = %v", name, !gone, slices.Contains(removed, name))
		}
	}
}

// runtimeHasProc reports whether process start times are available, which
// telling a recycled pid from its original needs.
func runtimeHasProc() bool { return procStartTime(os.Getpid()) != "" }

func TestNewestFirst(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	for _, v := range []string{"9.6", "17", "15", "10"} {
		if err := os.MkdirAll(filepath.Join(root, v, "bin"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, d := range newestFirst(filepath.Join(root, "*", "bin")) {
		got = append(got, filepath.Base(filepath.Dir(d)))
	}
	if want := []string{"17", "15", "10", "9.6"}; !slices.Equal(got, want) {
		t.Errorf("order %v, want %v", got, want)
	}
}

func TestFindBinDir(t *testing.T) {
	t.Parallel()
	onlyInitdb, both := t.TempDir(), t.TempDir()
	for path, mode := range map[string]os.FileMode{
		filepath.Join(onlyInitdb, "initdb"): 0o755,
		filepath.Join(both, "initdb"):       0o755,
		filepath.Join(both, "postgres"):     0o755,
	} {
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	got, err := findBinDir([]string{"", onlyInitdb, onlyInitdb, both})
	if err != nil || got != both {
		t.Fatalf("findBinDir = %q, %v; want %q", got, err, both)
	}
	_, err = findBinDir([]string{onlyInitdb, onlyInitdb})
	nf, ok := err.(*NotFoundError)
	if !ok || !slices.Equal(nf.Searched, []string{onlyInitdb}) {
		t.Fatalf("err = %v, want *NotFoundError searching [%s] once", err, onlyInitdb)
	}
}

func TestDBName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("TestSomething/With Spaces-and.Dots", 4)
	a, b := dbName(long, 1), dbName(long, 2)
	for _, name := range []string{a, b} {
		if len(name) > 63 || !strings.HasPrefix(name, DBPrefix) {
			t.Errorf("%q: want at most 63 bytes starting %q", name, DBPrefix)
		}
		if strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
			t.Errorf("%q: want only lower-case letters, digits and underscores", name)
		}
	}
	if a == b {
		t.Errorf("two databases named %q", a)
	}
}
