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
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return ""
	}
	// The command name (field 2) is in parentheses and may contain spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state); start time is field 22.
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}

// processAlive reports whether pid is running and, when start is not empty, is
// still the same incarnation.
func processAlive(pid int, start string) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	if start != "" {
		if now := procStartTime(pid); now != "" && now != start {
			return false
		}
	}
	return true
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
