package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relaywatermill"
)

func TestHelp(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := dispatch(t.Context(), []string{"--help"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "relay") {
		t.Errorf("txoutbox --help does not list relay:\n%s", out.String())
	}
	out.Reset()
	if err := dispatch(t.Context(), []string{"relay", "--help"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--database-url URL", "TXOUTBOX_DATABASE_URL", "--poison-policy", "--topics file", "TXOUTBOX_TOPICS", "Examples:", "/readyz"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("txoutbox relay --help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, nil, "no command given"},
		{[]string{"frobnicate"}, nil, `unknown command "frobnicate" (see txoutbox --help)`},
		{[]string{"stauts"}, nil, `unknown command "stauts"; did you mean status?`},
		{[]string{"status", "--databse-url", "x"}, nil, "status: flag provided but not defined: -databse-url; did you mean --database-url?"},
		{[]string{"relay", "-batchsize=5"}, nil, "did you mean --batch-size?"},
		{[]string{"relay", "--frobnicate"}, nil, "-frobnicate (see txoutbox relay --help)"},
		{[]string{"relay", "--batch-size", "many"}, nil, "relay: invalid value"},
		{[]string{"relay", "extra"}, nil, `unexpected argument "extra"`},
		{[]string{"relay", "--sink", "noop"}, nil, "--database-url (TXOUTBOX_DATABASE_URL) is required"},
		{[]string{"relay"}, map[string]string{"TXOUTBOX_DATABASE_URL": "postgres://x/y"}, "--sink (TXOUTBOX_SINK) is required"},
		{[]string{"relay"}, map[string]string{"TXOUTBOX_LEASE": "soon"}, `invalid value "soon" for TXOUTBOX_LEASE`},
		{[]string{"relay", "--database-url", "postgres://x/y", "--sink", "redis://b"}, nil, `--sink: "redis://b" is not`},
		{[]string{"relay", "--database-url", "postgres://x/y", "--sink", "noop", "--poison-policy", "drop"}, nil, `--poison-policy: "drop"`},
		{[]string{"relay", "--database-url", "postgres://x/y", "--sink", "noop", "--log-level", "loud"}, nil, "--log-level"},
		{[]string{"relay", "--database-url", "postgres://x/y", "--sink", "noop"}, map[string]string{"TXOUTBOX_TOPICS": "no-such-topics.yaml"}, "--topics: "},
		{[]string{"relay", "--database-url", "postgres://x/y", "--sink", "https://api", "--format", "xml"}, nil, "Format"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			err := dispatch(t.Context(), tc.args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error = %v, want one line containing %q", err, tc.want)
			}
		})
	}
}

// newOutboxDB returns the URL of a fresh migrated database and a pool on it.
func newOutboxDB(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	url := pgtest.NewDB(t)
	pool, err := pgxpool.New(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := outbox.Migrate(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	return url, pool
}

// insertEvents commits n events on 10 keys and returns their ids.
func insertEvents(t *testing.T, pool *pgxpool.Pool, n int) map[string]bool {
	t.Helper()
	rows, err := pool.Query(t.Context(), `INSERT INTO txoutbox_events
		(id, topic, category, entity, action, data, actor_id, actor_type, job_id, source, key, published_at)
		SELECT gen_random_uuid(), 'billing.InvoiceCreated', 'billing', 'Invoice', 'Created',
			json_build_object('n', i), 'u', 'user', 'j', 'test', 'k' || i % 10, now()
		FROM generate_series(1, $1) i RETURNING id::text`, n)
	if err != nil {
		t.Fatal(err)
	}
	ids := make(map[string]bool, n)
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

func ownedPartitions(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM txoutbox_partitions WHERE owner IS NOT NULL`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// lockedBuffer is a bytes.Buffer safe for one writer and one reader.
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

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRelayStdout runs txoutbox relay in process: every event is printed
// once, and on cancellation it returns nil with its partitions released.
func TestRelayStdout(t *testing.T) {
	t.Parallel()
	url, pool := newOutboxDB(t)
	ids := insertEvents(t, pool, 200)
	var stdout, stderr lockedBuffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- dispatch(ctx, []string{"relay", "--database-url", url, "--sink", "stdout", "--admin-addr", "127.0.0.1:0"}, &stdout, &stderr)
	}()
	waitFor(t, 10*time.Second, "200 lines", func() bool { return strings.Count(stdout.String(), "\n") == 200 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("relay = %v\n%s", err, stderr.String())
	}
	for line := range strings.Lines(stdout.String()) {
		var ev struct {
			ID       string            `json:"id"`
			Metadata map[string]string `json:"metadata"`
			Data     json.RawMessage   `json:"data"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if !ids[ev.ID] || ev.Metadata[relaywatermill.MetaTopic] != "billing.InvoiceCreated" || len(ev.Data) == 0 {
			t.Fatalf("unexpected line %s", line)
		}
		delete(ids, ev.ID)
	}
	if n := ownedPartitions(t, pool); n != 0 {
		t.Errorf("%d partitions still owned after shutdown", n)
	}
}

// buildBinary builds txoutbox into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "txoutbox")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startBinary runs the built binary with args; its stderr is returned, and
// the admin address it logs.
func startBinary(t *testing.T, bin string, stdout io.Writer, args ...string) (*exec.Cmd, *lockedBuffer, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "TXOUTBOX_ADMIN_ADDR=127.0.0.1:0")
	var stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	addrRE := regexp.MustCompile(`"admin endpoints listening" addr=(\S+)`)
	var addr string
	deadline := time.Now().Add(10 * time.Second)
	for addr == "" {
		if m := addrRE.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no admin address logged:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cmd, &stderr, addr
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// TestRelayProcessSIGTERM runs the binary: its health endpoints answer, and
// SIGTERM stops it cleanly, exit status 0, partitions released.
func TestRelayProcessSIGTERM(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	url, pool := newOutboxDB(t)
	insertEvents(t, pool, 100)
	var stdout lockedBuffer
	cmd, stderr, addr := startBinary(t, bin, &stdout, "relay", "--database-url", url, "--sink", "stdout")
	waitFor(t, 10*time.Second, "100 lines", func() bool { return strings.Count(stdout.String(), "\n") == 100 })
	if code := get(t, "http://"+addr+"/livez"); code != http.StatusOK {
		t.Errorf("/livez = %d", code)
	}
	if code := get(t, "http://"+addr+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d", code)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("relay exited with %v\n%s", err, stderr.String())
	}
	if n := ownedPartitions(t, pool); n != 0 {
		t.Errorf("%d partitions still owned after SIGTERM", n)
	}
}

// TestRelayProcessKilled kills a relay process with SIGKILL while the events
// API holds one of its batches. Nothing is lost: a second relay takes its
// partitions over once their leases expire and delivers the rest, the held
// batch included.
func TestRelayProcessKilled(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	url, pool := newOutboxDB(t)
	ids := insertEvents(t, pool, 2000)

	var mu sync.Mutex
	got := make(map[string]int)
	requests := 0
	held := make(chan struct{})
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch []struct {
			ID string `json:"id"`
		}
		if err := json.NewDecoder(r.Body).Decode(&batch); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		requests++
		if requests == 3 {
			mu.Unlock()
			close(held)
			<-r.Context().Done() // held until the relay is killed
			return
		}
		for _, ev := range batch {
			got[ev.ID]++
		}
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(api.Close)

	cmd, _, _ := startBinary(t, bin, io.Discard, "relay", "--database-url", url, "--sink", api.URL,
		"--batch-size", "100", "--lease", "1s")
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the relay never sent a third batch")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if n := ownedPartitions(t, pool); n == 0 {
		t.Fatal("no leases held after SIGKILL: the test proves nothing")
	}

	r, err := relay.New(pool, relay.SinkFunc(func(_ context.Context, events []*outbox.Event) error {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range events {
			got[ev.ID.String()]++
		}
		return nil
	}), &relay.Config{LeaseTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	waitFor(t, 30*time.Second, "every event", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == len(ids)
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for id := range got {
		if !ids[id] {
			t.Fatalf("unknown event %s delivered", id)
		}
	}
	t.Logf("%d events, %d requests before the kill", len(ids), requests)
}

// TestRelayStartLine checks that the relay's first log line names the
// database and the sink, without their credentials.
func TestRelayStartLine(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	var stderr lockedBuffer
	err := dispatch(ctx, []string{"relay", "--database-url", "postgres://app:s3cret@127.0.0.1:1/orders", "--admin-addr", "",
		"--sink", "https://user:t0ken@127.0.0.1:1/events?api_key=k3y"}, io.Discard, &stderr)
	if err != nil {
		t.Fatalf("relay: %v\n%s", err, stderr.String())
	}
	line, _, _ := strings.Cut(stderr.String(), "\n")
	for _, want := range []string{`msg="relay starting"`, "database=postgres://app@127.0.0.1:1/orders", "sink=https://user@127.0.0.1:1/events"} {
		if !strings.Contains(line, want) {
			t.Errorf("the relay's first line lacks %q:\n%s", want, line)
		}
	}
	if out := stderr.String(); strings.Contains(out, "s3cret") || strings.Contains(out, "t0ken") || strings.Contains(out, "k3y") {
		t.Errorf("the relay printed a credential:\n%s", out)
	}
}
