package outboxconsole

import (
	"bufio"
	"bytes"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/eventstest"
	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/internal/walmsg"
	"github.com/txoutbox/txoutbox/outbox"
)

// bundle is a console over a seeded outbox, served on loopback.
type bundle struct {
	pool *pgxpool.Pool
	h    *Handler
	srv  *httptest.Server
	c    *http.Client
	log  *bytes.Buffer
}

// serve serves a console on loopback until t ends.
func serve(t *testing.T, pool *pgxpool.Pool, cfg *Config) (*Handler, *httptest.Server) {
	t.Helper()
	h, err := New(pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		_ = h.Close()
		srv.Close()
	})
	return h, srv
}

func setup(t *testing.T, cfg *Config) (*bundle, map[string][]string) {
	t.Helper()
	pool := migrated(t)
	seeded := eventstest.SeedStates(t, pool)
	var logs bytes.Buffer
	if cfg == nil {
		cfg = &Config{}
	}
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	h, srv := serve(t, pool, cfg)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	ids := map[string][]string{}
	for k, v := range seeded {
		for _, id := range v {
			ids[k] = append(ids[k], id.String())
		}
	}
	return &bundle{pool: pool, h: h, srv: srv, c: c, log: &logs}, ids
}

func (b *bundle) get(t *testing.T, path string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, b.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(t, req)
}

func (b *bundle) do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusSeeOther {
		return resp.StatusCode, resp.Header.Get("Location")
	}
	return resp.StatusCode, string(body)
}

// post sends a form as the console's own pages do: from its origin.
func (b *bundle) post(t *testing.T, path string, form url.Values, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, b.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.srv.URL)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return b.do(t, req)
}

var (
	csrfRe   = regexp.MustCompile(`<meta name="csrf" content="([^"]+)">`)
	hiddenRe = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
)

// csrf returns the CSRF token of a page.
func csrf(t *testing.T, page string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(page)
	if m == nil || m[1] == "" {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	return m[1]
}

// confirmation returns the hidden fields of a confirmation page's form.
func confirmation(t *testing.T, page string) url.Values {
	t.Helper()
	i := strings.Index(page, `name="confirm"`)
	if i < 0 {
		t.Fatalf("no confirmation form in:\n%s", page)
	}
	v := url.Values{}
	for _, m := range hiddenRe.FindAllStringSubmatch(page[strings.LastIndex(page[:i], "<form"):], -1) {
		v.Add(m[1], htmlUnescape(m[2]))
	}
	return v
}

func htmlUnescape(s string) string {
	return strings.NewReplacer("&#43;", "+", "&amp;", "&", "&#34;", `"`, "&#39;", "'", "&lt;", "<", "&gt;", ">").Replace(s)
}

func TestPages(t *testing.T) {
	t.Parallel()
	b, ids := setup(t, nil)
	for _, c := range []struct {
		path string
		want []string
	}{
		{"/", []string{`id="count-dead">2<`, `id="count-blocked">1<`, "billing.InvoiceOverdue", "relay-a", "overview/stream"}},
		{"/events?state=dead", []string{ids["dead"][0], ids["dead"][1], `id="replay-all"`, "HTTP 422"}},
		{"/events?state=blocked&topic=billing.InvoiceOverdue", []string{ids["blocked"][0]}},
		{"/events/" + ids["blocked"][0], []string{"inv-3", "blocked", ids["dead"][1], "Hidden: event data", `id="unblock"`}},
		{"/audit", []string{"No actions yet"}},
		{"/assets/console.js", []string{"EventSource"}},
	} {
		status, body := b.get(t, c.path)
		if status != http.StatusOK {
			t.Errorf("GET %s: %d\n%s", c.path, status, body)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s: no %q in\n%s", c.path, w, body)
			}
		}
	}
	for _, c := range []struct {
		path   string
		status int
	}{
		{"/events?state=stuck", http.StatusBadRequest},
		{"/events?from=yesterday", http.StatusBadRequest},
		{"/events?topic=" + strings.Repeat("t", 201), http.StatusBadRequest},
		{"/events/not-a-uuid", http.StatusBadRequest},
		{"/events/00000000-0000-0000-0000-000000000000", http.StatusNotFound},
		{"/assets/layout.html", http.StatusNotFound},
		{"/assets/missing.js", http.StatusNotFound},
	} {
		if status, body := b.get(t, c.path); status != c.status {
			t.Errorf("GET %s: %d, want %d\n%s", c.path, status, c.status, body)
		}
	}
}

// TestReplayFlow replays the dead events of a filter as the list's button
// does: a dry run that counts them, then the confirmation, once.
func TestReplayFlow(t *testing.T) {
	t.Parallel()
	b, _ := setup(t, nil)
	_, page := b.get(t, "/events?state=dead")
	token := csrf(t, page)
	status, page := b.post(t, "/actions/replay", url.Values{"csrf": {token}, "state": {"dead"}, "topic": {"billing.InvoiceOverdue"}})
	if status != http.StatusOK || !strings.Contains(page, `id="confirm-count">2<`) {
		t.Fatalf("dry run: %d\n%s", status, page)
	}
	var dead int
	if err := b.pool.QueryRow(t.Context(), "SELECT count(*) FROM txoutbox_events WHERE status = 'dead'").Scan(&dead); err != nil || dead != 2 {
		t.Fatalf("after the dry run %d dead, %v; want 2, unchanged", dead, err)
	}
	form := confirmation(t, page)
	status, page = b.post(t, "/actions/replay", form)
	if status != http.StatusOK || !strings.Contains(page, `id="result-count">2<`) {
		t.Fatalf("confirm: %d\n%s", status, page)
	}
	status, page = b.post(t, "/actions/replay", form)
	if status != http.StatusOK || !strings.Contains(page, "already carried out by local") {
		t.Fatalf("confirm again: %d\n%s", status, page)
	}
	if err := b.pool.QueryRow(t.Context(), "SELECT count(*) FROM txoutbox_events WHERE status = 'dead'").Scan(&dead); err != nil || dead != 0 {
		t.Fatalf("after the replay %d dead, %v", dead, err)
	}
	if !strings.Contains(b.log.String(), "action=replay actor=local") || strings.Count(b.log.String(), "action=replay") != 1 {
		t.Errorf("the log has not exactly one replay:\n%s", b.log.String())
	}
	if _, page := b.get(t, "/audit"); !strings.Contains(page, "<td>replay</td>") {
		t.Errorf("audit page:\n%s", page)
	}
}

// TestActionsNeedAFilter: a bulk action needs ids or the dead state; an
// unblock needs a key.
func TestActionsNeedAFilter(t *testing.T) {
	t.Parallel()
	b, _ := setup(t, nil)
	_, page := b.get(t, "/")
	token := csrf(t, page)
	for _, c := range []struct {
		path string
		form url.Values
	}{
		{"/actions/replay", url.Values{"topic": {"billing.InvoiceOverdue"}}},
		{"/actions/discard", url.Values{"state": {"pending"}}},
		{"/actions/unblock", url.Values{}},
		{"/actions/replay", url.Values{"id": {"nope"}}},
		{"/actions/replay", url.Values{"state": {"dead"}, "confirm": {"yes"}}},
	} {
		c.form.Set("csrf", token)
		if status, body := b.post(t, c.path, c.form); status != http.StatusBadRequest {
			t.Errorf("POST %s %v: %d, want 400\n%s", c.path, c.form, status, body)
		}
	}
	if status, _ := b.post(t, "/actions/delete", url.Values{"csrf": {token}}); status != http.StatusNotFound {
		t.Errorf("an unknown action: %d, want 404", status)
	}
}

func TestUnblock(t *testing.T) {
	t.Parallel()
	b, ids := setup(t, nil)
	_, page := b.get(t, "/events/"+ids["blocked"][0])
	status, page := b.post(t, "/actions/unblock", url.Values{"csrf": {csrf(t, page)}, "key": {"inv-3"}})
	if status != http.StatusOK || !strings.Contains(page, `id="confirm-count">1<`) {
		t.Fatalf("unblock dry run: %d\n%s", status, page)
	}
	form := confirmation(t, page)
	form.Set("reason", "fixed by hand")
	if status, page := b.post(t, "/actions/unblock", form); status != http.StatusOK || !strings.Contains(page, "discarded") {
		t.Fatalf("unblock: %d\n%s", status, page)
	}
	if _, page := b.get(t, "/events/"+ids["blocked"][0]); strings.Contains(page, `id="event-state">blocked<`) {
		t.Errorf("still blocked:\n%s", page)
	}
}

func TestReadOnly(t *testing.T) {
	t.Parallel()
	b, ids := setup(t, &Config{ReadOnly: true})
	_, page := b.get(t, "/events?state=dead")
	if !strings.Contains(page, `id="replay-all" disabled`) || !strings.Contains(page, `id="read-only"`) {
		t.Errorf("the list offers actions on a read-only console:\n%s", page)
	}
	status, body := b.post(t, "/actions/replay", url.Values{"csrf": {csrf(t, page)}, "id": {ids["dead"][0]}})
	if status != http.StatusForbidden || !strings.Contains(body, "read-only") {
		t.Errorf("replay on a read-only console: %d\n%s", status, body)
	}
}

func TestCSRF(t *testing.T) {
	t.Parallel()
	b, ids := setup(t, nil)
	_, page := b.get(t, "/")
	token := csrf(t, page)
	form := url.Values{"id": {ids["dead"][0]}}
	if status, _ := b.post(t, "/actions/replay", form); status != http.StatusForbidden {
		t.Errorf("no CSRF token: %d, want 403", status)
	}
	form.Set("csrf", "forged")
	if status, _ := b.post(t, "/actions/replay", form); status != http.StatusForbidden {
		t.Errorf("a forged CSRF token: %d, want 403", status)
	}
	form.Set("csrf", token)
	if status, _ := b.post(t, "/actions/replay", form, "Origin", "https://evil.example"); status != http.StatusForbidden {
		t.Errorf("another origin: %d, want 403", status)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, b.srv.URL+"/actions/replay", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if status, _ := b.do(t, req); status != http.StatusForbidden {
		t.Errorf("a cross-site fetch: %d, want 403", status)
	}
	if status, _ := b.post(t, "/actions/replay", form); status != http.StatusOK {
		t.Errorf("the page's own form: %d, want 200", status)
	}
}

// TestLoopbackOnlyWithoutCredentials: an open console refuses callers from
// beyond this machine.
func TestLoopbackOnlyWithoutCredentials(t *testing.T) {
	t.Parallel()
	h, err := New(migrated(t), &Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for _, remote := range []string{"10.1.2.3:5555", "[2001:db8::1]:5555", "garbage"} {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/events", nil)
		req.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "serves this machine only") {
			t.Errorf("from %s: %d %s", remote, w.Code, w.Body.String())
		}
	}
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/events", nil)
	req.RemoteAddr = "[::1]:5555"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Errorf("from ::1: %d", w.Code)
	}
}

// TestToken: with a token every caller, loopback too, signs in or sends it;
// the token never shows in a URL, a cookie or the log.
func TestToken(t *testing.T) {
	t.Parallel()
	const token = "s3cret-token-value"
	b, _ := setup(t, &Config{Token: token, Users: map[string]string{"alice": "pa55word"}})
	if status, loc := b.get(t, "/events"); status != http.StatusSeeOther || loc != "/login" {
		t.Fatalf("without credentials: %d %s, want a redirect to /login", status, loc)
	}
	if status, _ := b.get(t, "/events", "Authorization", "Bearer "+token); status != http.StatusOK {
		t.Errorf("with the bearer token: %d", status)
	}
	if status, _ := b.get(t, "/events", "Authorization", "Bearer wrong"); status != http.StatusSeeOther {
		t.Errorf("with a wrong token: %d, want a redirect", status)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, b.srv.URL+"/events", nil)
	req.SetBasicAuth("alice", "pa55word")
	if status, body := b.do(t, req); status != http.StatusOK || !strings.Contains(body, "alice") {
		t.Errorf("with basic auth: %d", status)
	}
	if status, _ := b.post(t, "/actions/replay", url.Values{"state": {"dead"}}); status != http.StatusUnauthorized {
		t.Errorf("an action without credentials: %d, want 401", status)
	}
	if status, body := b.post(t, "/login", url.Values{"token": {"wrong"}}); status != http.StatusUnauthorized || !strings.Contains(body, "not valid") {
		t.Errorf("sign in with a wrong token: %d", status)
	}
	if status, loc := b.post(t, "/login", url.Values{"token": {token}}); status != http.StatusSeeOther || loc != "/" {
		t.Fatalf("sign in: %d %s", status, loc)
	}
	u, _ := url.Parse(b.srv.URL)
	cookies := b.c.Jar.Cookies(u)
	if len(cookies) != 1 || strings.Contains(cookies[0].Value, token) {
		t.Fatalf("session cookies %v", cookies)
	}
	status, page := b.get(t, "/events?state=dead")
	if status != http.StatusOK {
		t.Fatalf("signed in: %d", status)
	}
	if status, _ := b.post(t, "/actions/replay", url.Values{"csrf": {csrf(t, page)}, "state": {"dead"}}); status != http.StatusOK {
		t.Errorf("signed-in action: %d", status)
	}
	// A session signed by another console is not one.
	other, err := newAccess(token, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: other.newSession("token", time.Now())}})
	if status, _ := b.get(t, "/events"); status != http.StatusSeeOther {
		t.Errorf("a forged session: %d, want a redirect", status)
	}
	if strings.Contains(b.log.String(), token) || strings.Contains(b.log.String(), "pa55word") {
		t.Errorf("a secret in the log:\n%s", b.log.String())
	}
}

func TestPayloads(t *testing.T) {
	t.Parallel()
	for _, show := range []bool{false, true} {
		b, ids := setup(t, &Config{ShowPayloads: show})
		_, page := b.get(t, "/events/"+ids["dead"][0])
		if got := strings.Contains(page, `days_overdue`); got != show {
			t.Errorf("ShowPayloads %v: data shown %v\n%s", show, got, page)
		}
		if _, list := b.get(t, "/events"); strings.Contains(list, "days_overdue") {
			t.Error("the list shows data")
		}
	}
}

// TestStream reads the live overview's first event, and Close ends it.
func TestStream(t *testing.T) {
	t.Parallel()
	b, _ := setup(t, nil)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, b.srv.URL+"/overview/stream", nil)
	resp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	var event strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v after %q", err, event.String())
		}
		if line == "\n" {
			break
		}
		event.WriteString(line)
	}
	ev := event.String()
	if !strings.HasPrefix(ev, "event: overview\ndata: ") || !strings.Contains(ev, `id="count-dead">2<`) {
		t.Errorf("first event:\n%s", ev)
	}
	for line := range strings.Lines(ev) {
		if !strings.HasPrefix(line, "event: ") && !strings.HasPrefix(line, "data: ") {
			t.Errorf("line %q is not a field of the event", line)
		}
	}
	_ = b.h.Close()
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Errorf("the stream did not end cleanly: %v", err)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	for _, cfg := range []Config{
		{Path: "console"},
		{Path: "/console"},
		{RefreshInterval: 10},
		{PageSize: PageSizeMax + 1},
		{Schema: " bad"},
	} {
		if _, err := New(pool, &cfg); err == nil {
			t.Errorf("New(%+v) = nil error", cfg)
		}
	}
	h, err := New(pool, &Config{Path: "/console/", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/console/", h)
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/console/events", nil)
	req.RemoteAddr = "127.0.0.1:1"
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, req)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `href="/console/assets/console.css"`) {
		t.Errorf("mounted at /console/: %d\n%s", w.Code, w.Body.String())
	}
}

// TestOverviewReplication: the overview shows txoutbox's replication slots
// once there are any, with the WAL each holds back, and a lost slot with
// how to recover.
func TestOverviewReplication(t *testing.T) {
	t.Parallel()
	b, _ := setup(t, nil)
	ms, err := outbox.CreateMessageSlot(t.Context(), b.pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	slot := ms.Name
	status, body := b.get(t, "/")
	row := regexp.MustCompile(`<tr data-slot="` + slot + `">\s*<td>` + slot + `</td><td>messages</td>\s*<td class="num">\d+(\.\d)? [kMG]?B</td><td>no</td>`)
	if status != http.StatusOK || !strings.Contains(body, "Replication slots") || !row.MatchString(body) {
		t.Errorf("overview with the messages slot %s: %d\n%s", slot, status, body)
	}

	render := func(r *Replication) string {
		t.Helper()
		var out bytes.Buffer
		if err := b.h.pages.t.ExecuteTemplate(&out, "overview-live", overviewView(&Overview{At: time.Now(), Replication: r})); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	if out := render(&Replication{}); strings.Contains(out, "Replication slots") {
		t.Errorf("no slots, and a replication block:\n%s", out)
	}
	out := render(&Replication{MaxSlotWALKeepSize: 10 << 30, Slots: []outboxsql.ReplicationSlot{
		{Name: "txoutbox_messages_app_public", Messages: true, RetainedBytes: 3 << 20, WALStatus: "lost", Lost: true},
	}})
	for _, want := range []string{"max_slot_wal_keep_size 10 GB", `class="lost"`, "3 MB", `<span class="badge dead">lost</span>`,
		template.HTMLEscapeString(walmsg.LostRecovery)} {
		if !strings.Contains(out, want) {
			t.Errorf("a lost slot: no %q in\n%s", want, out)
		}
	}
	if strings.Contains(out, `class="warning"`) {
		t.Errorf("a bounded max_slot_wal_keep_size warned:\n%s", out)
	}
}
