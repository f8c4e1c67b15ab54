package pgtest

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// runAs is the unprivileged account the server runs as when the tests run as
// root: initdb and postgres refuse to run as root.
type runAs struct {
	name     string
	uid, gid uint32
}

// serverUser picks the account to run initdb and postgres as: nil when not root,
// else "postgres" if it exists, else "nobody".
func serverUser() (*runAs, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		return &runAs{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
	}
	return nil, errors.New("pgtest: running as root and neither a postgres nor a nobody account exists to run the server as")
}

// chown hands path to the server's account, if there is one.
func (u *runAs) chown(path string) error {
	if u == nil {
		return nil
	}
	return os.Chown(path, int(u.uid), int(u.gid))
}

// checkReachable reports the first directory from dir up to the root that the
// account cannot search: the server could not even reach its data directory.
func (u *runAs) checkReachable(dir string) error {
	if u == nil {
		return nil
	}
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		perm := fi.Mode().Perm()
		bit := perm & 0o001
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			switch {
			case st.Uid == u.uid:
				bit = perm & 0o100
			case st.Gid == u.gid:
				bit = perm & 0o010
			}
		}
		if bit == 0 {
			return fmt.Errorf("pgtest: the server runs as user %s, which cannot enter %s (mode %v); choose another Options.TempDir or make it searchable (chmod o+x)", u.name, d, perm)
		}
		if parent := filepath.Dir(d); parent == d {
			return nil
		}
	}
}

// owns reports whether fi belongs to the server's account (or, when there is
// none, to this process's user) and only that account can write it, so that a
// cached data directory in a shared temp directory cannot have been planted.
func (u *runAs) owns(fi os.FileInfo) bool {
	uid := uint32(os.Geteuid())
	if u != nil {
		uid = u.uid
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == uid && fi.Mode().Perm()&0o022 == 0
}

// sysProcAttr makes the child die with the thread that starts it (see spawn)
// and, as root, run as the unprivileged account.
func sysProcAttr(u *runAs, deathSig syscall.Signal) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Pdeathsig: deathSig}
	if u != nil {
		attr.Credential = &syscall.Credential{Uid: u.uid, Gid: u.gid, NoSetGroups: true}
	}
	return attr
}

const (
	sigFastShutdown      = syscall.SIGINT
	sigImmediateShutdown = syscall.SIGQUIT
)

// procStartTime identifies a process incarnation, so that a recycled pid is not
// mistaken for the process that wrote a marker. Empty if unknown.
func procStartTime(pid int) string {
	_, start := procStat(pid)
	return start
}

// procStat returns the state and start time fields of /proc/<pid>/stat, or
// empty strings if the process does not exist.
func procStat(pid int) (state, start string) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", ""
	}
	// The command name (field 2) is in parentheses and may contain spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return "", ""
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state); the start time is field 22.
	if len(fields) < 20 {
		return "", ""
	}
	return fields[0], fields[19]
}

// processAlive reports whether pid is running and, when start is not empty, is
// still the same incarnation. A zombie counts as dead: in a container whose
// init does not reap, an orphaned server may stay one indefinitely.
func processAlive(pid int, start string) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	state, now := procStat(pid)
	if state == "Z" || state == "X" {
		return false
	}
	return start == "" || now == "" || now == start
}

// isPostmasterOf reports whether pid is a postgres server on dataDir, so that a
// stale cleanup only ever signals the server it means to.
func isPostmasterOf(pid int, dataDir string) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	args := strings.Split(string(b), "\x00")
	return len(args) > 0 && filepath.Base(args[0]) == "postgres" && strings.Contains(string(b), dataDir)
}

// signalPid sends sig to pid.
func signalPid(pid int, sig syscall.Signal) error {
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signal %d: %w", pid, err)
	}
	return nil
}
