package eventsapi_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/internal/ingest"
	"github.com/txoutbox/txoutbox/internal/testlog"
	"github.com/txoutbox/txoutbox/internal/wire"
)

func hexHash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(h[:])
}

// TestParseKeys: a keys file with a secret of each kind; the plain one is
// warned about. Not parallel: it sets an environment variable.
func TestParseKeys(t *testing.T) {
	const envSecret = "from-the-environment-0123"
	t.Setenv("TXOUTBOX_TEST_DASHBOARD_KEY", envSecret)
	keys, err := eventsapi.ParseKeys([]byte(`
version: 1
keys:
  - name: relay
    secret_sha256: ` + hexHash(relaySecret) + `
    rights: [ingest]
  - name: acme-dashboard
    tenant: acme
    secret_env: TXOUTBOX_TEST_DASHBOARD_KEY
    rights: [subscribe, query]
  - name: local
    secret: ` + adminSecret + `
    rights: [ingest, subscribe, query]
`))
	if err != nil {
		t.Fatal(err)
	}
	if keys.Len() != 3 || len(keys.Warnings()) != 1 || !strings.Contains(keys.Warnings()[0], `"local"`) || strings.Contains(keys.Warnings()[0], adminSecret) {
		t.Errorf("%d keys, warnings %q", keys.Len(), keys.Warnings())
	}
	logger, log := testlog.New()
	srv, err := eventsapi.New(&eventsapi.Config{Keys: keys, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if !strings.Contains(log.String(), "plain text") {
		t.Errorf("the server does not log the keys' warnings:\n%s", log)
	}
	for _, tc := range []struct {
		secret string
		want   int
	}{{envSecret, http.StatusOK}, {adminSecret, http.StatusOK}, {relaySecret, http.StatusForbidden}, {hexHash(relaySecret), http.StatusUnauthorized}} {
		req := httptest.NewRequest(http.MethodGet, "/api/events", nil)
		req.Header.Set("Authorization", "Bearer "+tc.secret)
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, req)
		if w.Code != tc.want {
			t.Errorf("key %.6s…: %d %s, want %d", tc.secret, w.Code, w.Body, tc.want)
		}
	}
}

// TestParseKeysErrors: a keys file the server cannot trust is refused, the
// error naming the key and never its secret.
func TestParseKeysErrors(t *testing.T) {
	t.Parallel()
	const secret = "a-secret-long-enough-0123"
	key := func(fields string) string {
		return "version: 1\nkeys:\n  - name: k1\n" + fields
	}
	for name, tc := range map[string]struct{ yaml, mention string }{
		"no version":       {"keys:\n  - name: k1\n    secret: " + secret + "\n    rights: [query]\n", "version"},
		"version 2":        {"version: 2\nkeys: []\n", "version"},
		"no keys":          {"version: 1\nkeys: []\n", "no keys"},
		"unknown field":    {key("    secret: " + secret + "\n    rights: [query]\n    tenants: [a]\n"), "tenants"},
		"no secret":        {key("    rights: [query]\n"), "k1"},
		"two secrets":      {key("    secret: " + secret + "\n    secret_sha256: " + hexHash(secret) + "\n    rights: [query]\n"), "exactly one"},
		"short secret":     {key("    secret: short\n    rights: [query]\n"), "shorter"},
		"bad hash":         {key("    secret_sha256: abc123\n    rights: [query]\n"), "64 hex"},
		"env not set":      {key("    secret_env: TXOUTBOX_TEST_NO_SUCH_VARIABLE\n    rights: [query]\n"), "TXOUTBOX_TEST_NO_SUCH_VARIABLE"},
		"no rights":        {key("    secret: " + secret + "\n"), "no rights"},
		"unknown right":    {key("    secret: " + secret + "\n    rights: [query, admin]\n"), "admin"},
		"bad name":         {"version: 1\nkeys:\n  - name: 'the relay'\n    secret: " + secret + "\n    rights: [query]\n", "name"},
		"no name":          {"version: 1\nkeys:\n  - secret: " + secret + "\n    rights: [query]\n", "name"},
		"two of one name":  {key("    secret: " + secret + "\n    rights: [query]\n  - name: k1\n    secret: " + secret + "-2\n    rights: [query]\n"), `"k1"`},
		"one secret twice": {key("    secret: " + secret + "\n    rights: [query]\n  - name: k2\n    secret_sha256: " + hexHash(secret) + "\n    rights: [query]\n"), "same secret"},
		"not YAML":         {"version: [1\n", "yaml"},
	} {
		_, err := eventsapi.ParseKeys([]byte(tc.yaml))
		if !errors.Is(err, eventsapi.ErrInvalidKeys) || !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("%s: %v, want ErrInvalidKeys mentioning %q", name, err, tc.mention)
		}
		if err != nil && (strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), hexHash(secret))) {
			t.Errorf("%s: the error shows the secret: %v", name, err)
		}
	}
}

// TestLoadKeys: a file holding plain secrets that other users may read is
// warned about.
func TestLoadKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	plain := "version: 1\nkeys:\n  - name: local\n    secret: " + adminSecret + "\n    rights: [query]\n"
	hashed := "version: 1\nkeys:\n  - name: relay\n    secret_sha256: " + hexHash(relaySecret) + "\n    rights: [ingest]\n"
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		warnings      int
		readable      bool
	}{
		{"plain-open.yaml", plain, 0o644, 2, true},
		{"plain-closed.yaml", plain, 0o600, 1, false},
		{"hashed-open.yaml", hashed, 0o644, 0, false},
	} {
		path := filepath.Join(dir, tc.name)
		if err := os.WriteFile(path, []byte(tc.content), tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tc.mode); err != nil { // past the umask
			t.Fatal(err)
		}
		keys, err := eventsapi.LoadKeys(path)
		if err != nil {
			t.Fatal(err)
		}
		ws := strings.Join(keys.Warnings(), "\n")
		if len(keys.Warnings()) != tc.warnings || strings.Contains(ws, "chmod 600") != tc.readable {
			t.Errorf("%s: warnings %q", tc.name, keys.Warnings())
		}
	}
	if _, err := eventsapi.LoadKeys(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("LoadKeys of a missing file: no error")
	}
}

// TestAuthAnswers: without a credential or with a wrong one, 401 with a
// Bearer challenge; with a key lacking the right, 403 naming the key and
// the right.
func TestAuthAnswers(t *testing.T) {
	t.Parallel()
	b := setupAPI(t, apiOptions{})
	for _, tc := range []struct {
		what, method, path, ctype, body string
		headers                         []string
		want                            int
		code, challenge, mention        string
	}{
		{"no credential", "GET", "/api/events", "", "", nil, 401, ingest.CodeUnauthorized, `Bearer realm="txoutbox events API"`, "Authorization"},
		{"unknown key", "GET", "/api/events", "", "", []string{"Authorization", "Bearer " + unknownSecret}, 401, ingest.CodeUnauthorized, `error="invalid_token"`, "unknown credential"},
		{"the hash for the key", "GET", "/api/events", "", "", []string{"Authorization", "Bearer " + hexHash(querySecret)}, 401, ingest.CodeUnauthorized, `error="invalid_token"`, "unknown"},
		{"Basic", "GET", "/api/events", "", "", []string{"Authorization", "Basic " + querySecret}, 401, ingest.CodeUnauthorized, "Bearer", "Bearer"},
		{"bearer in lower case", "GET", "/api/events", "", "", []string{"Authorization", "bearer " + querySecret}, 200, "", "", ""},
		{"X-Api-Key", "GET", "/api/events", "", "", []string{"X-Api-Key", querySecret}, 200, "", "", ""},
		{"ingest key queries", "GET", "/api/events", "", "", []string{"Authorization", "Bearer " + relaySecret}, 403, ingest.CodeForbidden, "", "relay\\\" does not hold the query right"},
		{"query key ingests", "POST", "/events", "application/json", briteInvoice("inv-1", 1), []string{"Authorization", "Bearer " + querySecret}, 403, ingest.CodeForbidden, "", "ingest"},
		{"no key ingests", "POST", "/", wire.ContentTypeCloudEvent, "{}", nil, 401, ingest.CodeUnauthorized, "Bearer", ""},
		{"ticket for the query API", "GET", "/api/events?ticket=abc", "", "", nil, 401, ingest.CodeUnauthorized, "Bearer", "subscription"},
		{"ticket by a subscriber", "POST", "/api/tickets", "", "", []string{"Authorization", "Bearer " + watchSecret}, 201, "", "", ""},
		{"ticket by a reader", "POST", "/api/tickets", "", "", []string{"Authorization", "Bearer " + querySecret}, 403, ingest.CodeForbidden, "", "subscribe"},
		{"ticket by a ticket", "POST", "/api/tickets?ticket=abc", "", "", nil, 401, ingest.CodeUnauthorized, "Bearer", ""},
		{"health", "GET", "/healthz", "", "", nil, 200, "", "", ""},
	} {
		a := b.do(t, tc.method, tc.path, "", tc.ctype, tc.body, tc.headers...)
		if a.status != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.what, a.status, a.body, tc.want)
			continue
		}
		if tc.code != "" && (a.errorCode(t) != tc.code || !strings.Contains(a.body, tc.mention)) {
			t.Errorf("%s: %s, want %s mentioning %q", tc.what, a.body, tc.code, tc.mention)
		}
		if got := a.header.Get("WWW-Authenticate"); (tc.want == 401) != (got != "") || !strings.Contains(got, tc.challenge) {
			t.Errorf("%s: WWW-Authenticate %q, want %q", tc.what, got, tc.challenge)
		}
	}
}

// TestDevMode: with no keys the server serves loopback callers only, with
// every right, and says so when it starts.
func TestDevMode(t *testing.T) {
	t.Parallel()
	b := setupAPI(t, apiOptions{devMode: true})
	if !strings.Contains(b.log.String(), `"level":"WARN"`) || !strings.Contains(b.log.String(), "NO API KEYS CONFIGURED") {
		t.Errorf("development mode not announced:\n%s", b.log)
	}
	// Over real HTTP from 127.0.0.1: every right, every tenant.
	if a := b.do(t, http.MethodPost, "/", "", wire.ContentTypeCloudEvent, cloudEvent("c1", "billing.InvoiceCreated", invoiceData("inv-1", 1), "tenant", "acme")); a.status != http.StatusCreated {
		t.Errorf("ingest from loopback: %d %s", a.status, a.body)
	}
	if p := b.page(t, "tenant=acme", ""); len(p.Events) != 1 {
		t.Errorf("query from loopback: %+v", p)
	}
	if a := b.do(t, http.MethodPost, "/api/tickets", "", "", ""); a.status != http.StatusCreated {
		t.Errorf("ticket from loopback: %d %s", a.status, a.body)
	}
	for remote, want := range map[string]int{
		"192.0.2.1:1234":         http.StatusForbidden,
		"[::ffff:192.0.2.1]:1":   http.StatusForbidden,
		"10.0.0.1:80":            http.StatusForbidden,
		"@":                      http.StatusForbidden,
		"":                       http.StatusForbidden,
		"127.0.0.1:5":            http.StatusOK,
		"127.3.4.5:5":            http.StatusOK,
		"[::1]:5":                http.StatusOK,
		"[::ffff:127.0.0.1]:5":   http.StatusOK,
		"localhost.example.com:": http.StatusForbidden,
	} {
		req := httptest.NewRequest(http.MethodGet, "/api/events", nil)
		req.RemoteAddr = remote
		req.Header.Set("X-Forwarded-For", "127.0.0.1") // not believed
		w := httptest.NewRecorder()
		b.srv.ServeHTTP(w, req)
		if w.Code != want {
			t.Errorf("from %q: %d %s, want %d", remote, w.Code, w.Body, want)
		}
		if w.Code == http.StatusForbidden && !strings.Contains(w.Body.String(), "configure keys") {
			t.Errorf("from %q: %s, want it to say to configure keys", remote, w.Body)
		}
	}
}

// TestSecretsNeverLogged: whatever is tried with keys, right or wrong, the
// log names keys by name and never shows a secret, nor a ticket.
func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()
	b := setupAPI(t, apiOptions{registry: true})
	secrets := []string{relaySecret, acmeSecret, acmeIngest, querySecret, watchSecret, adminSecret, unknownSecret}
	for _, s := range secrets {
		b.do(t, http.MethodGet, "/api/events", s, "", "")
		b.do(t, http.MethodGet, "/api/events", "", "", "", "X-Api-Key", s)
		b.do(t, http.MethodPost, "/events", s, "application/json", briteInvoice("inv-1", -1))
		b.do(t, http.MethodPost, "/events", s, "application/json", briteInvoice("inv-1", 1), wire.HeaderTenant, "globex")
		b.do(t, http.MethodPost, "/api/tickets", s, "", "")
		b.do(t, http.MethodGet, "/api/events", "", "", "", "Authorization", "Basic "+s)
	}
	a := b.do(t, http.MethodPost, "/api/tickets", watchSecret, "", "")
	var tk struct{ Ticket string }
	a.decode(t, &tk)
	b.do(t, http.MethodGet, "/api/events?ticket="+tk.Ticket, "", "", "")
	secrets = append(secrets, tk.Ticket)
	log := b.log.String()
	for _, s := range secrets {
		if strings.Contains(log, s) || strings.Contains(log, hexHash(s)) {
			t.Errorf("the log shows the secret %.6s…", s)
		}
	}
	for _, want := range []string{`"key":"relay"`, `"key":"acme-relay"`, "unknown credential", "lacks the right"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %s", want)
		}
	}
	keys := testKeys(t)
	var buf testlog.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("keys", "keys", keys, "key", eventsapi.Key{Name: "k", SecretSHA256: eventsapi.HashSecret(adminSecret)})
	for _, s := range []string{fmt.Sprint(keys), fmt.Sprintf("%+v", *keys), buf.String(), fmt.Sprintf("%v", eventsapi.Key{Name: "k", SecretSHA256: eventsapi.HashSecret(adminSecret)})} {
		if strings.Contains(s, hexHash(adminSecret)) || strings.Contains(s, adminSecret) || strings.Contains(s, fmt.Sprint(eventsapi.HashSecret(adminSecret))) {
			t.Errorf("printing keys shows a secret or its hash: %s", s)
		}
	}
}

// TestDevelopmentIntended: a server made keyless on purpose says so at
// level Info, not with the warning an accidental one gets, and Development
// with Keys is a config error.
func TestDevelopmentIntended(t *testing.T) {
	t.Parallel()
	logger, log := testlog.New()
	srv, err := eventsapi.New(&eventsapi.Config{Development: true, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if s := log.String(); !strings.Contains(s, `"level":"INFO"`) || !strings.Contains(s, "development mode") || strings.Contains(s, "NO API KEYS") {
		t.Errorf("intended development mode logged:\n%s", s)
	}
	if _, err := eventsapi.New(&eventsapi.Config{Development: true, Keys: testKeys(t)}); !errors.Is(err, eventsapi.ErrInvalidConfig) {
		t.Errorf("Development with Keys: %v, want ErrInvalidConfig", err)
	}
}
