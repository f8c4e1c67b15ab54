package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRelayReadsCredentialsFromFiles checks the relay sends the token and
// API key it reads from files, and never prints them.
func TestRelayReadsCredentialsFromFiles(t *testing.T) {
	t.Parallel()
	url, pool := newOutboxDB(t)
	insertEvents(t, pool, 3)

	var authOK, keyOK atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "Bearer t0ken-from-file" {
			authOK.Add(1)
		}
		if r.Header.Get("X-Api-Key") == "k3y-from-file" {
			keyOK.Add(1)
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	defer api.Close()

	dir := t.TempDir()
	tokenFile, keyFile := filepath.Join(dir, "token"), filepath.Join(dir, "key")
	if err := os.WriteFile(tokenFile, []byte("t0ken-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, []byte("k3y-from-file"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr lockedBuffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- dispatch(ctx, []string{"relay", "--database-url", url, "--sink", api.URL, "--admin-addr", "",
			"--log-level", "debug", "--bearer-token-file", tokenFile, "--api-key-header", "X-Api-Key", "--api-key-file", keyFile}, &stdout, &stderr)
	}()
	waitFor(t, 10*time.Second, "the events to be delivered", func() bool { return authOK.Load() > 0 && keyOK.Load() > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("relay = %v\n%s", err, stderr.String())
	}
	out := stdout.String() + stderr.String()
	if strings.Contains(out, "t0ken-from-file") || strings.Contains(out, "k3y-from-file") {
		t.Fatalf("the relay printed a credential:\n%s", out)
	}

	err := dispatch(t.Context(), []string{"relay", "--database-url", url, "--sink", api.URL, "--bearer-token-file", filepath.Join(dir, "missing")}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "--bearer-token-file") {
		t.Fatalf("missing token file: err = %v, want one naming --bearer-token-file", err)
	}
}
