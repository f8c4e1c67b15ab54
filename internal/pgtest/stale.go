package pgtest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// staleGrace is how old a cluster directory without an owner marker must be
// before it counts as abandoned; younger ones may be mid-creation.
const staleGrace = time.Minute

// removeStale removes the cluster directories under parent whose owning process
// has died (a test binary that panicked never runs its cleanup), stopping any
// server still running in them first. It returns the directories removed and
// leaves alone whatever it cannot prove abandoned.
func removeStale(parent string) []string {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return nil
	}
	var removed []string
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), dirPrefix) {
			continue
		}
		dir := filepath.Join(parent, e.Name())
		if !abandoned(dir) {
			continue
		}
		stopStaleServer(filepath.Join(dir, dataSubdir))
		if os.RemoveAll(dir) == nil {
			removed = append(removed, dir)
		}
	}
	return removed
}

// abandoned reports whether the process recorded in dir's owner marker is gone.
func abandoned(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		fi, serr := os.Stat(dir)
		return os.IsNotExist(err) && serr == nil && time.Since(fi.ModTime()) > staleGrace
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return false
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil {
		return false
	}
	start := ""
	if len(fields) > 1 {
		start = fields[1]
	}
	return !processAlive(pid, start)
}

// stopStaleServer stops a server still running on dataDir — one that outlived
// its owner, e.g. where no parent-death signal exists — and waits briefly for it
// to go. It signals only a process that is a postgres on exactly this data
// directory.
func stopStaleServer(dataDir string) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || !isPostmasterOf(pid, dataDir) {
		return
	}
	if signalPid(pid, sigImmediateShutdown) != nil {
		return
	}
	for range 100 {
		if !processAlive(pid, "") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
