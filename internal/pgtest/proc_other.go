//go:build !linux

package pgtest

import (
	"errors"
	"os"
	"syscall"
)

// runAs is the unprivileged account the server runs as when the tests run as
// root. Switching accounts is implemented on Linux only; elsewhere run the tests
// as an ordinary user.
type runAs struct {
	name     string
	uid, gid uint32
}

func serverUser() (*runAs, error) { return nil, nil }

func (u *runAs) chown(string) error { return nil }

func (u *runAs) checkReachable(string) error { return nil }

// owns accepts only a private directory: one this user could read but not
// own would be another account's.
func (u *runAs) owns(fi os.FileInfo) bool { return fi.Mode().Perm()&0o077 == 0 }

// sysProcAttr has no parent-death signal outside Linux: a server whose test
// binary crashed is removed by the next start's stale cleanup instead.
func sysProcAttr(*runAs, syscall.Signal) *syscall.SysProcAttr { return nil }

var (
	sigFastShutdown      = syscall.Signal(0x2) // SIGINT
	sigImmediateShutdown = syscall.Signal(0x3) // SIGQUIT
)

func procStartTime(int) string { return "" }

func processAlive(pid int, _ string) bool {
	if pid <= 0 {
		return false
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || !errors.Is(err, os.ErrProcessDone)
}

// isPostmasterOf cannot check the command line portably, so it never claims a
// process: stale cleanup then leaves a live server alone.
func isPostmasterOf(int, string) bool { return false }

func signalPid(pid int, sig syscall.Signal) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Signal(sig)
}
