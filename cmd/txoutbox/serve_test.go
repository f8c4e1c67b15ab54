package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/internal/wire"
)

var serveURLRE = regexp.MustCompile(`msg="events API listening" url=(\S+)`)

// serveURL waits for the "listening" log line and returns the URL.
func serveURL(t *testing.T, stderr *lockedBuffer) string {
	t.Helper()
	var url string
	waitFor(t, 10*time.Second, "the events API to listen", func() bool {
		if m := serveURLRE.FindStringSubmatch(stderr.String()); m != nil {
			url = m[1]
		}
		return url != ""
	})
	return url
}

// startServe runs txoutbox serve with args in process until stop, which
// returns what it returned.
func startServe(t *testing.T, args ...string) (url string, stderr *lockedBuffer, stop func() error) {
	t.Helper()
	stderr = &lockedBuffer{}
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- dispatch(ctx, append([]string{"serve"}, args...), io.Discard, stderr) }()
	return serveURL(t, stderr), stderr, func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Fatal("serve did not stop")
			return nil
		}
	}
}

const (
	serveRelaySecret  = "relay-secret-for-serve-test"
	serveReaderSecret = "reader-secret-for-serve-test"
)

// serveKeysFile writes a keys file with a relay key and a reader key, by
// hash, and returns its path.
func serveKeysFile(t *testing.T) string {
	t.Helper()
	hash := func(s string) string {
		h := sha256.Sum256([]byte(s))
		return hex.EncodeToString(h[:])
	}
	path := filepath.Join(t.TempDir(), "keys.yaml")
	keys := "version: 1\nkeys:\n" +
		"  - name: relay\n    secret_sha256: " + hash(serveRelaySecret) + "\n    rights: [ingest]\n" +
		"  - name: reader\n    secret_sha256: " + hash(serveReaderSecret) + "\n    rights: [query]\n"
	if err := os.WriteFile(path, []byte(keys), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkServe ingests two events of each wire format with the relay key
// and reads them back with the reader key.
func checkServe(t *testing.T, url string) {
	t.Helper()
	do := func(method, path, secret, contentType, body string, header ...string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, url+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+secret)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	brite := `{"category":"billing","entity":"Invoice","action":"Paid","data":{"id":"inv-1","amount_cents":1250,"paid_at":"2026-11-23T10:00:00Z"},"actor":{"id":"user-4711","type":"user"}}`
	for _, tc := range []struct {
		what, path, contentType, body string
		header                        []string
		want                          int
	}{
		{"CloudEvents batch", "/", wire.ContentTypeCloudEventBatch, "[" + invoiceCE("ev-1", "inv-1") + "," + invoiceCE("ev-2", "inv-2") + "]", nil, http.StatusAccepted},
		{"duplicate", "/cloudevents", wire.ContentTypeCloudEvent, invoiceCE("ev-1", "inv-1"), nil, http.StatusConflict},
		{"schema failure", "/", wire.ContentTypeCloudEventBatch, "[" + strings.Replace(invoiceCE("ev-3", "inv-3"), `"EUR"`, `"DOGE"`, 1) + "]", nil, http.StatusUnprocessableEntity},
		{"bc-events", "/events", "application/json", brite, []string{wire.HeaderIdempotencyKey, "ev-4", wire.HeaderTenant, "acme"}, http.StatusCreated},
	} {
		if got, body := do(http.MethodPost, tc.path, serveRelaySecret, tc.contentType, tc.body, tc.header...); got != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.what, got, body, tc.want)
		}
	}
	if got, _ := do(http.MethodGet, "/api/events", serveRelaySecret, "", ""); got != http.StatusForbidden {
		t.Errorf("the relay key queries: %d, want 403", got)
	}
	status, body := do(http.MethodGet, "/api/events?topic=billing.Invoice*&order=desc", serveReaderSecret, "", "")
	var page eventsapi.EventsPage
	if err := json.Unmarshal([]byte(body), &page); err != nil || status != http.StatusOK {
		t.Fatalf("query: %d %s", status, body)
	}
	if len(page.Events) != 3 || page.Events[0].ID != "ev-4" || page.Events[0].Tenant != "acme" || page.Events[2].ID != "ev-1" {
		t.Errorf("query answered %s", body)
	}
}

func TestServeHelp(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	if err := dispatch(t.Context(), []string{"serve", "--help"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--listen address", "TXOUTBOX_LISTEN", "--keys file", "--database-url URL", "--topics file",
		"--max-age duration", "--max-events N", "secret_sha256", "development mode", "Examples:", "PROTOCOL.md"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("txoutbox serve --help lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := dispatch(t.Context(), []string{"--help"}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "serve") {
		t.Errorf("txoutbox --help does not list serve: %v\n%s", err, out.String())
	}
}

// TestServeErrors: what serve refuses before it listens, above all an
// address beyond this machine without keys.
func TestServeErrors(t *testing.T) {
	t.Parallel()
	keys := serveKeysFile(t)
	badKeys := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(badKeys, []byte("version: 1\nkeys: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--listen", "0.0.0.0:0"}, "without --keys"},
		{[]string{"serve", "--listen", ":0"}, "without --keys"},
		{[]string{"serve", "--listen", "[::]:0"}, "without --keys"},
		{[]string{"serve", "--listen", "192.0.2.1:8080"}, "without --keys"},
		{[]string{"serve", "--listen", "127.0.0.1"}, "serve: --listen:"},
		{[]string{"serve", "--listen", "127.0.0.1:99999"}, "serve: --listen:"},
		{[]string{"serve", "--keys", "no/such/keys.yaml"}, "serve: --keys:"},
		{[]string{"serve", "--keys", badKeys}, "no keys"},
		{[]string{"serve", "--keys", keys, "--topics", "no/such/file.yaml"}, "serve: --topics:"},
		{[]string{"serve", "--max-events", "-1"}, "MaxEvents"},
		{[]string{"serve", "--max-age", "-1h"}, "MaxAge"},
		{[]string{"serve", "extra"}, "unexpected argument"},
	} {
		err := dispatch(t.Context(), tc.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("txoutbox %s = %v, want an error containing %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

// TestServeInProcess runs txoutbox serve with keys and topics in process:
// both wire formats go in, the query API reads them, and cancellation (what
// SIGTERM is in main) stops it cleanly.
func TestServeInProcess(t *testing.T) {
	t.Parallel()
	url, stderr, stop := startServe(t, "--listen", "127.0.0.1:0", "--keys", serveKeysFile(t), "--topics", topicsFile,
		"--max-age", "24h", "--max-events", "1000")
	if !strings.Contains(stderr.String(), "2 keys from") || !strings.Contains(stderr.String(), " from "+topicsFile) {
		t.Errorf("the start-up log does not say which keys and topics:\n%s", stderr.String())
	}
	checkServe(t, url)
	if err := stop(); err != nil {
		t.Fatalf("serve = %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "events API stopped") {
		t.Errorf("no shutdown line:\n%s", stderr.String())
	}
	for _, secret := range []string{serveRelaySecret, serveReaderSecret} {
		if strings.Contains(stderr.String(), secret) {
			t.Error("the log shows a secret")
		}
	}
}

// TestServeDevelopmentMode: without keys serve says loudly that it is in
// development mode, and serves this machine.
func TestServeDevelopmentMode(t *testing.T) {
	t.Parallel()
	url, stderr, stop := startServe(t, "--listen", "127.0.0.1:0")
	if !strings.Contains(stderr.String(), "level=WARN") || !strings.Contains(stderr.String(), "NO API KEYS CONFIGURED") ||
		!strings.Contains(stderr.String(), "development mode (loopback only)") {
		t.Errorf("development mode not announced:\n%s", stderr.String())
	}
	resp, err := http.Get(url + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/events from loopback: %s", resp.Status)
	}
	if err := stop(); err != nil {
		t.Fatalf("serve = %v", err)
	}
}

// TestServeProcess runs the built binary: SIGTERM stops it with exit
// status 0 after it served.
func TestServeProcess(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	cmd, stderr := startSink(t, bin, io.Discard, "serve", "--listen", "127.0.0.1:0", "--keys", serveKeysFile(t), "--topics", topicsFile)
	checkServe(t, serveURL(t, stderr))
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("txoutbox serve after SIGTERM: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "events API stopped") {
		t.Errorf("no shutdown line:\n%s", stderr.String())
	}
}

// TestServePostgres: with --database-url the events are kept in Postgres,
// in tables serve creates, and a second serve on the same database (after
// the first stopped) still has them.
func TestServePostgres(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	keys := serveKeysFile(t)
	url, stderr, stop := startServe(t, "--listen", "127.0.0.1:0", "--keys", keys, "--topics", topicsFile, "--database-url", db)
	if !strings.Contains(stderr.String(), "store=postgres://") {
		t.Errorf("the start-up line does not name the database:\n%s", stderr.String())
	}
	checkServe(t, url)
	if err := stop(); err != nil {
		t.Fatalf("serve = %v\n%s", err, stderr.String())
	}

	url, stderr, stop = startServe(t, "--listen", "127.0.0.1:0", "--keys", keys, "--database-url", db)
	defer func() {
		if err := stop(); err != nil {
			t.Errorf("serve = %v\n%s", err, stderr.String())
		}
	}()
	req, err := http.NewRequest(http.MethodGet, url+"/api/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+serveReaderSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Events []eventsapi.Event `json:"events"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		t.Fatal(err)
	}
	if len(page.Events) != 3 {
		t.Errorf("after a restart the store holds %d events, want the 3 the first serve took", len(page.Events))
	}
}

// TestServePostgresUnreachable: a database that does not answer is named,
// without its password.
func TestServePostgresUnreachable(t *testing.T) {
	t.Parallel()
	err := dispatch(t.Context(), []string{"serve", "--listen", "127.0.0.1:0", "--database-url", "postgres://app:s3cret-pw@127.0.0.1:1/events?connect_timeout=1"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("serve on an unreachable database = %v, want an error naming it without the password", err)
	}
}
