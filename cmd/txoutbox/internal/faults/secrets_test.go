package faults

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/relay"
)

// passwordCluster starts a cluster that checks passwords (scram-sha-256)
// for every role but the superuser, with role u (password "right") owning
// database db. It returns the port.
func passwordCluster(t *testing.T) int {
	t.Helper()
	ctx := t.Context()
	c, err := pgtest.Start(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var hba string
	if err := conn.QueryRow(ctx, `SHOW hba_file`).Scan(&hba); err != nil {
		t.Fatal(err)
	}
	// Rewriting the file in place keeps its owner, the server's account.
	rules := "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
	if err := os.WriteFile(hba, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{`SELECT pg_reload_conf()`, `CREATE ROLE u LOGIN PASSWORD 'right'`, `CREATE DATABASE db OWNER u`} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	return c.Port()
}

// TestSecretDatabasePassword gives every subcommand that connects a database
// URL with a wrong password: each must fail (or, for the relay, keep
// retrying) saying the authentication failed, without printing the
// password, whether the URL comes from the flag or the environment.
func TestSecretDatabasePassword(t *testing.T) {
	t.Parallel()
	port := passwordCluster(t)
	const secret = "s3cret"
	for _, pw := range []string{secret, secret + "%2F%40x"} { // plain, and percent-encoded "s3cret/@x"
		dbURL := fmt.Sprintf("postgres://u:%s@127.0.0.1:%d/db?sslmode=disable", pw, port)
		if _, err := pgx.Connect(t.Context(), dbURL); err == nil || !strings.Contains(err.Error(), "password authentication failed") {
			t.Fatalf("connecting with the wrong password: %v; want an authentication failure", err)
		}
		check := func(name, out string) {
			t.Helper()
			if !strings.Contains(out, "password authentication failed") {
				t.Errorf("%s: the output does not say the authentication failed:\n%s", name, out)
			}
			if strings.Contains(out, secret) {
				t.Errorf("%s: the output shows the password:\n%s", name, out)
			}
		}
		for _, cmd := range []string{"migrate", "status", "inspect"} {
			out, err := runProc(t, 30*time.Second, nil, cmd, "--database-url", dbURL)
			if err == nil {
				t.Errorf("txoutbox %s with a wrong password exited 0", cmd)
			}
			check("txoutbox "+cmd, out)
			out, _ = runProc(t, 30*time.Second, []string{"TXOUTBOX_DATABASE_URL=" + dbURL}, cmd)
			check("TXOUTBOX_DATABASE_URL=... txoutbox "+cmd, out)
		}
		// The relay does not give up on the database; it logs and retries.
		p := startProc(t, nil, "relay", "--database-url", dbURL, "--sink", "noop", "--admin-addr", "", "--log-level", "debug")
		p.waitOutput("password authentication failed", 30*time.Second)
		if err := p.terminate(10 * time.Second); err != nil {
			t.Errorf("relay after SIGTERM: %v", err)
		}
		check("txoutbox relay", p.out.String())
	}
}

// TestSecretSinkCredentials runs the relay against an events API that keeps
// failing, with a bearer token from the environment and credentials in the
// sink URL's user info and query. The API gets them; neither the relay's
// log (at debug level) nor the last errors that txoutbox status and inspect
// show contain them.
func TestSecretSinkCredentials(t *testing.T) {
	t.Parallel()
	const token, key, password = "tok-9f8e7d6c", "key-1a2b3c4d", "pw-5e6f7a8b"
	e := newEnv(t, pgtest.NewDB(t), 4, relay.ModePoll)
	var mu sync.Mutex
	var auth, apiKey string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth, apiKey = r.Header.Get("Authorization"), r.URL.Query().Get("api_key")
		mu.Unlock()
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
	}))
	t.Cleanup(api.Close)
	u, _ := url.Parse(api.URL)
	sinkURL := fmt.Sprintf("http://ops:%s@%s/?api_key=%s", password, u.Host, key)

	w := e.startWriters(t, writerConfig{n: 1, pace: 10 * time.Millisecond})
	time.Sleep(200 * time.Millisecond)
	w.halt()
	p := startProc(t, []string{"TXOUTBOX_BEARER_TOKEN=" + token, "TXOUTBOX_SINK=" + sinkURL},
		"relay", "--database-url", e.url, "--admin-addr", "", "--log-level", "debug", "--retry-base", "50ms", "--retry-max", "200ms")
	waitUntil(t, 30*time.Second, func() string { return "a delivery attempt recorded:\n" + tail(p.out.String(), 20) }, func() bool {
		var failed int
		if err := e.pool.QueryRow(t.Context(), `SELECT count(*) FROM txoutbox_events WHERE last_error IS NOT NULL`).Scan(&failed); err != nil {
			t.Fatal(err)
		}
		return failed > 0
	})
	if err := p.terminate(10 * time.Second); err != nil {
		t.Errorf("relay after SIGTERM: %v", err)
	}
	mu.Lock()
	if auth != "Bearer "+token || apiKey != key {
		t.Errorf("the events API got Authorization %q and api_key %q; want the configured credentials", auth, apiKey)
	}
	mu.Unlock()

	outputs := map[string]string{"txoutbox relay": p.out.String()}
	for _, args := range [][]string{{"status"}, {"inspect", "--show-data"}, {"inspect", "--json"}} {
		out, err := runProc(t, 30*time.Second, nil, append(args, "--database-url", e.url)...)
		if err != nil {
			t.Fatalf("txoutbox %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		outputs["txoutbox "+strings.Join(args, " ")] = out
	}
	if !strings.Contains(outputs["txoutbox inspect --show-data"], "503") {
		t.Errorf("inspect does not show the last error:\n%s", outputs["txoutbox inspect --show-data"])
	}
	for name, out := range outputs {
		for _, secret := range []string{token, key, password} {
			if strings.Contains(out, secret) {
				t.Errorf("%s shows a sink credential:\n%s", name, out)
			}
		}
	}
}

// TestSecretAdminLoopback reads the relay's default admin address from its
// --help: /livez and /readyz are served on the loopback interface unless
// an operator says otherwise.
func TestSecretAdminLoopback(t *testing.T) {
	t.Parallel()
	out, err := runProc(t, 30*time.Second, nil, "relay", "--help")
	if err != nil {
		t.Fatalf("txoutbox relay --help: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`--admin-addr address\s+.*\n\s+\(default ([^;)]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no default for --admin-addr in:\n%s", out)
	}
	host, _, err := net.SplitHostPort(m[1])
	if err != nil {
		t.Fatalf("default admin address %q: %v", m[1], err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		t.Errorf("default admin address %q does not bind the loopback interface", m[1])
	}
}

// TestSecretTLSVerify points the relay at an HTTPS events API whose
// certificate no known CA signed: it must refuse to send anything until
// --insecure-skip-verify is given, and then warn that verification is off.
func TestSecretTLSVerify(t *testing.T) {
	t.Parallel()
	e := newEnv(t, pgtest.NewDB(t), 4, relay.ModePoll)
	var mu sync.Mutex
	posts := 0
	api := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		posts++
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	api.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	api.StartTLS()
	t.Cleanup(api.Close)
	w := e.startWriters(t, writerConfig{n: 1, pace: 10 * time.Millisecond})
	time.Sleep(200 * time.Millisecond)
	w.halt()

	args := []string{"relay", "--database-url", e.url, "--sink", api.URL, "--admin-addr", "", "--retry-base", "50ms", "--retry-max", "200ms"}
	strict := startProc(t, nil, args...)
	if !strict.waitOutput("certificate", 30*time.Second) {
		t.Errorf("the relay did not report the unknown certificate:\n%s", tail(strict.out.String(), 20))
	}
	if err := strict.terminate(10 * time.Second); err != nil {
		t.Errorf("relay after SIGTERM: %v", err)
	}
	mu.Lock()
	if posts != 0 {
		t.Errorf("the relay posted %d times to a server it could not verify", posts)
	}
	mu.Unlock()

	lax := startProc(t, nil, append(args, "--insecure-skip-verify")...)
	waitUntil(t, 30*time.Second, func() string { return "a post with --insecure-skip-verify:\n" + tail(lax.out.String(), 20) }, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return posts > 0
	})
	if err := lax.terminate(10 * time.Second); err != nil {
		t.Errorf("relay after SIGTERM: %v", err)
	}
	if out := lax.out.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "verification is off") {
		t.Errorf("--insecure-skip-verify without a warning:\n%s", tail(out, 20))
	}
}
