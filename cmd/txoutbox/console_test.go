package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/internal/pgtest"
)

var consoleURLRE = regexp.MustCompile(`msg="console listening" url=(\S+)`)

// TestConsole serves the console from the command: it asks for the token,
// then shows the outbox, and stops on cancel.
func TestConsole(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	if err := dispatch(t.Context(), []string{"migrate", "--database-url", url}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	const token = "console-test-token"
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- dispatch(ctx, []string{"console", "--database-url", url, "--listen", "127.0.0.1:0", "--token-file", tokenFile, "--read-only"},
			io.Discard, stderr)
	}()
	var base string
	waitFor(t, 10*time.Second, "the console to listen", func() bool {
		if m := consoleURLRE.FindStringSubmatch(stderr.String()); m != nil {
			base = m[1]
		}
		return base != ""
	})
	get := func(auth string) int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"events", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := get(""); got != http.StatusSeeOther {
		t.Errorf("without the token: %d, want a redirect to sign in", got)
	}
	if got := get("Bearer " + token); got != http.StatusOK {
		t.Errorf("with the token: %d", got)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("console = %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("console did not stop")
	}
	if log := stderr.String(); strings.Contains(log, token) || !strings.Contains(log, "access=token") || !strings.Contains(log, "read_only=true") {
		t.Errorf("log:\n%s", log)
	}
}

func TestConsoleErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	badUsers := filepath.Join(dir, "users")
	if err := os.WriteFile(badUsers, []byte("alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"console", "--database-url", "postgres://127.0.0.1:1/x", "--listen", "0.0.0.0:8090"}, "serves this machine only"},
		{[]string{"console", "--database-url", "postgres://127.0.0.1:1/x", "--token-file", filepath.Join(dir, "missing")}, "token file"},
		{[]string{"console", "--database-url", "postgres://127.0.0.1:1/x", "--token-file", empty}, "token file: empty"},
		{[]string{"console", "--database-url", "postgres://127.0.0.1:1/x", "--users-file", badUsers}, "line 1: want user:password"},
		{[]string{"console"}, "--database-url"},
	} {
		err := dispatch(t.Context(), c.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: err = %v, want one saying %q", c.args, err, c.want)
		}
	}
}

// TestRelayConsoleNeedsAdminAddr: --console is served on the admin address,
// so it needs one.
func TestRelayConsoleNeedsAdminAddr(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDB(t)
	err := dispatch(t.Context(), []string{"relay", "--database-url", url, "--sink", "noop", "--console", "--admin-addr", ""}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--admin-addr, which is empty") {
		t.Errorf("err = %v", err)
	}
	err = dispatch(t.Context(), []string{"relay", "--database-url", url, "--sink", "noop", "--console", "--admin-addr", "0.0.0.0:0"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--console-token-file") {
		t.Errorf("err = %v", err)
	}
}

// TestRelayConsole mounts the console on the relay's admin address: it
// shows the relay holding partitions, beside /livez, and the relay stops
// cleanly with a live stream open.
func TestRelayConsole(t *testing.T) {
	t.Parallel()
	url, _ := newOutboxDB(t)
	var stderr lockedBuffer
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- dispatch(ctx, []string{"relay", "--database-url", url, "--sink", "noop", "--admin-addr", "127.0.0.1:0", "--console"},
			io.Discard, &stderr)
	}()
	addrRE := regexp.MustCompile(`"admin endpoints listening" addr=(\S+)`)
	var addr string
	waitFor(t, 10*time.Second, "the admin address", func() bool {
		if m := addrRE.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	})
	if code := get(t, "http://"+addr+"/livez"); code != http.StatusOK {
		t.Errorf("/livez = %d", code)
	}
	waitFor(t, 10*time.Second, "the console to show the relay's partitions", func() bool {
		resp, err := http.Get("http://" + addr + "/console/")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && strings.Contains(string(body), "holding 64 of 64 partitions")
	})
	stream, err := http.Get("http://" + addr + "/console/overview/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("relay = %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the relay did not stop with a console stream open")
	}
}
