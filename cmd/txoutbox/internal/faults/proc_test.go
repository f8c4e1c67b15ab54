package faults

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is a txoutbox process started by a test.
type proc struct {
	cmd  *exec.Cmd
	out  *lockedBuffer // stdout and stderr
	done chan struct{}
	err  error // Wait's result, once done is closed
}

// startProc runs the txoutbox binary with args and env added to a clean
// environment (no TXOUTBOX_ variables of the test's own). It is killed at
// cleanup if still running.
func startProc(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(txoutboxBinary(t), args...)
	p.cmd.Env = append(cleanEnv(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start txoutbox %s: %v", args[0], err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// runProc runs the txoutbox binary to completion, for at most timeout, and
// returns its output and exit error.
func runProc(t testing.TB, timeout time.Duration, env []string, args ...string) (string, error) {
	t.Helper()
	p := startProc(t, env, args...)
	select {
	case <-p.done:
		return p.out.String(), p.err
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("txoutbox %s still running after %s:\n%s", strings.Join(args, " "), timeout, p.out.String())
		return "", nil
	}
}

func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TXOUTBOX_") {
			env = append(env, kv)
		}
	}
	return env
}

// kill sends SIGKILL and waits for the process to go. It fails when the
// process had already exited on its own: a relay must not stop by itself.
func (p *proc) kill() error {
	select {
	case <-p.done:
		return fmt.Errorf("exited before it was killed (%v):\n%s", p.err, p.out.String())
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.done
	return nil
}

// terminate sends SIGTERM and waits up to timeout for a clean exit.
func (p *proc) terminate(timeout time.Duration) error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return errors.New("did not exit within " + timeout.String() + " of SIGTERM")
	}
}

// waitOutput waits up to timeout for the output to contain s.
func (p *proc) waitOutput(s string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.out.String(), s) {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-p.done:
			return strings.Contains(p.out.String(), s)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return true
}

// lockedBuffer is a bytes.Buffer safe for concurrent writes and reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// tail returns the last lines of s.
func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}
