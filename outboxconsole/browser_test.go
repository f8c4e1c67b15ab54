//go:build browser

// The console in a real browser: headless Chromium driven by chromedriver.
// Run with
//
//	go test -tags browser -run Browser ./outboxconsole/
//
// (.ci/run installs chromium and chromium-driver first). With
// TXOUTBOX_SCREENSHOTS=docs the screenshots of the README are written there.

package outboxconsole

import (
	"context"
	"log/slog"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/eventstest"
	"github.com/txoutbox/txoutbox/internal/webdriver"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// browser starts chromedriver and a headless Chromium, and stops them when
// t ends. A machine without them fails the test, saying what to install.
func browser(t *testing.T) *webdriver.Session {
	t.Helper()
	ctx := t.Context()
	chromium := os.Getenv("TXOUTBOX_CHROMIUM")
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if chromium != "" {
			break
		}
		chromium, _ = osexec.LookPath(name)
	}
	driver := os.Getenv("TXOUTBOX_CHROMEDRIVER")
	if driver == "" {
		driver, _ = osexec.LookPath("chromedriver")
	}
	if chromium == "" || driver == "" {
		t.Fatal("the browser tests need Chromium and chromedriver: apt-get install chromium chromium-driver " +
			"(or set TXOUTBOX_CHROMIUM and TXOUTBOX_CHROMEDRIVER)")
	}
	d, err := webdriver.Start(ctx, driver)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	s, err := d.NewSession(ctx, chromium, []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(), "--window-size=1400,1000",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

// screenshot saves the page as name.png in $TXOUTBOX_SCREENSHOTS, or in
// the test's temporary directory.
func screenshot(t *testing.T, s *webdriver.Session, name string) {
	t.Helper()
	dir := os.Getenv("TXOUTBOX_SCREENSHOTS")
	if dir == "" {
		dir = t.TempDir()
	}
	png, err := s.Screenshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// seedBrowser fills an outbox for the browser: eight billing.InvoiceOverdue
// events, five of them dead, a ninth blocked behind the first dead one,
// three dead billing.InvoiceCreated events, and an hour of backlog samples
// for the charts. It returns the dead
// InvoiceOverdue ids.
func seedBrowser(t *testing.T, pool *pgxpool.Pool) []uuid.UUID {
	t.Helper()
	ids := eventstest.PublishOverdue(t, pool, 8)
	exec(t, pool, `UPDATE txoutbox_events SET status = 'dead', attempts = 10, next_attempt_at = now(),
		last_error = 'HTTP 422 Unprocessable Entity: data.amount must be positive' WHERE id = ANY($1)`, ids[:5])
	exec(t, pool, `INSERT INTO txoutbox_events (id, topic, category, entity, action, data, actor_id, actor_type, job_id, source,
			key, published_at, status, attempts, last_error)
		SELECT gen_random_uuid(), 'billing.InvoiceCreated', category, entity, 'Created', data, actor_id, actor_type, job_id, source,
			'inv-1' || key, published_at, 'dead', 1, 'HTTP 400 Bad Request: unknown field "days_overdue"'
		FROM txoutbox_events WHERE id = ANY($1)`, ids[5:8])
	// A later event of inv-0, blocked behind the dead one.
	exec(t, pool, `INSERT INTO txoutbox_events (id, topic, category, entity, action, data, actor_id, actor_type, job_id, source,
			key, published_at)
		SELECT gen_random_uuid(), topic, category, entity, action, data, actor_id, actor_type, job_id, source, key, now()
		FROM txoutbox_events WHERE id = $1`, ids[0])
	// An hour in which publishing peaked and the relay, slowed by failures,
	// let a backlog build up and then drained it.
	exec(t, pool, `INSERT INTO txoutbox_samples (at, last_seq, pending, dead)
		SELECT to_timestamp(floor(extract(epoch FROM now()) / 10) * 10) - (360 - i) * interval '10 seconds',
			(i * 30 + 2000 * (1 - cos(pi() * i / 180)))::bigint, (400 * sin(pi() * i / 360) ^ 2)::bigint + 20, least(i / 40, 8)
		FROM generate_series(1, 359) i`)
	return ids[:5]
}

// runRelay runs a relay over pool until t ends; its sink records the ids
// it receives.
func runRelay(t *testing.T, pool *pgxpool.Pool) func() []uuid.UUID {
	t.Helper()
	var mu sync.Mutex
	var got []uuid.UUID
	sink := relay.SinkFunc(func(_ context.Context, evs []*outbox.Event) error {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			got = append(got, e.ID)
		}
		return nil
	})
	r, err := relay.New(pool, sink, &relay.Config{ID: "relay-1", LeaseTTL: 3 * time.Second, Retention: time.Hour,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay: %v", err)
		}
	})
	return func() []uuid.UUID {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
}

// serveBrowser serves a console that refreshes its overview every second.
func serveBrowser(t *testing.T, pool *pgxpool.Pool, cfg *Config) string {
	t.Helper()
	cfg.RefreshInterval = time.Second
	cfg.Logger = slog.New(slog.DiscardHandler)
	_, srv := serve(t, pool, cfg)
	return srv.URL
}

// TestBrowserReplay: an operator filters the dead events of one topic,
// replays them all, and watches the dead count reach 0 as a running relay
// delivers them.
func TestBrowserReplay(t *testing.T) {
	ctx := t.Context()
	pool := migrated(t)
	dead := seedBrowser(t, pool)
	delivered := runRelay(t, pool)
	base := serveBrowser(t, pool, &Config{})
	s := browser(t)
	const topic = "billing.InvoiceOverdue"
	deadCell := `tr[data-topic="` + topic + `"] td.dead-count`
	deliveredCell := `tr[data-topic="` + topic + `"] td:nth-child(8)`

	must(t, s.SetWindowSize(ctx, 1400, 1000))
	must(t, s.Navigate(ctx, base+"/"))
	if got, err := s.WaitText(ctx, deliveredCell, "3", 30*time.Second); err != nil {
		t.Fatalf("the relay did not deliver the pending events: %v (%s)", err, got)
	}
	_, err := s.WaitText(ctx, "tr.alive td", "relay-1", 10*time.Second)
	must(t, err)
	_, err = s.WaitText(ctx, "#count-blocked", "1", 10*time.Second)
	must(t, err)
	if got, _ := s.WaitText(ctx, deadCell, "5", time.Second); got != "5" {
		t.Fatalf("dead %s events: %q, want 5", topic, got)
	}
	screenshot(t, s, "console-overview")

	// Filter: dead events of one topic.
	must(t, s.Navigate(ctx, base+"/events"))
	opt, err := s.Find(ctx, `#f-state option[value="dead"]`)
	must(t, err)
	must(t, opt.Click(ctx))
	in, err := s.Find(ctx, "#f-topic")
	must(t, err)
	must(t, in.SendKeys(ctx, topic))
	apply, err := s.Find(ctx, "#apply")
	must(t, err)
	must(t, apply.Click(ctx))
	// The click starts a navigation; the URL changes once it is done.
	var u string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		u, err = s.URL(ctx)
		must(t, err)
		if strings.Contains(u, "state=dead") && strings.Contains(u, "topic=billing.InvoiceOverdue") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after filtering the URL is %s", u)
		}
	}
	rows, err := s.FindAll(ctx, "table.events tbody tr")
	must(t, err)
	if len(rows) != len(dead) {
		t.Fatalf("%d rows, want the %d dead %s events", len(rows), len(dead), topic)
	}
	for _, r := range rows {
		if text, err := r.Text(ctx); err != nil || !strings.Contains(text, topic) || !strings.Contains(text, "dead") {
			t.Errorf("row %q, %v", text, err)
		}
	}

	// An event's page.
	link, err := s.Find(ctx, "a.event-link")
	must(t, err)
	must(t, link.Click(ctx))
	_, err = s.WaitText(ctx, "#event-state", "dead", 5*time.Second)
	must(t, err)
	_, err = s.WaitText(ctx, "table.events tbody tr td:nth-child(3)", "blocked", 5*time.Second)
	must(t, err)
	errText, err := s.Find(ctx, "#last-error")
	must(t, err)
	if text, _ := errText.Text(ctx); !strings.Contains(text, "must be positive") {
		t.Errorf("last error %q", text)
	}
	screenshot(t, s, "console-event")

	// Replay them all: the count first, then the confirmation.
	must(t, s.Navigate(ctx, u))
	all, err := s.Find(ctx, "#replay-all")
	must(t, err)
	must(t, all.Click(ctx))
	_, err = s.WaitText(ctx, "#confirm-count", "5", 5*time.Second)
	must(t, err)
	confirm, err := s.Find(ctx, "#confirm")
	must(t, err)
	must(t, confirm.Click(ctx))
	_, err = s.WaitText(ctx, "#result-count", "5", 5*time.Second)
	must(t, err)

	// The overview follows: the relay delivers the five and the event they
	// blocked, the dead count reaches 0, the other topic's dead stay.
	must(t, s.Navigate(ctx, base+"/"))
	if got, err := s.WaitText(ctx, deadCell, "0", 30*time.Second); err != nil {
		t.Fatalf("dead count: %v (%s)", err, got)
	}
	if got, err := s.WaitText(ctx, deliveredCell, "9", 30*time.Second); err != nil { // and the one they blocked
		t.Fatalf("delivered count: %v (%s)", err, got)
	}
	if got, _ := s.WaitText(ctx, `tr[data-topic="billing.InvoiceCreated"] td.dead-count`, "3", time.Second); got != "3" {
		t.Errorf("the other topic's dead: %q, want 3", got)
	}
	got := delivered()
	for _, id := range dead {
		if !slices.Contains(got, id) {
			t.Errorf("the relay did not deliver replayed event %s", id)
		}
	}
}

// TestBrowserAccess: a console with a token asks the browser to sign in,
// and a read-only one refuses an action even when the page is tampered
// with to send it.
func TestBrowserAccess(t *testing.T) {
	ctx := t.Context()
	pool := migrated(t)
	seedBrowser(t, pool)
	const token = "browser-test-token"
	base := serveBrowser(t, pool, &Config{Token: token, ReadOnly: true})
	s := browser(t)

	must(t, s.Navigate(ctx, base+"/events?state=dead"))
	u, err := s.URL(ctx)
	must(t, err)
	if !strings.HasSuffix(u, "/login") {
		t.Fatalf("without the token the console shows %s, want the sign-in page", u)
	}
	in, err := s.Find(ctx, "#token")
	must(t, err)
	must(t, in.SendKeys(ctx, "wrong"))
	btn, err := s.Find(ctx, "#sign-in")
	must(t, err)
	must(t, btn.Click(ctx))
	_, err = s.WaitText(ctx, "#login-failed", "Those credentials are not valid.", 5*time.Second)
	must(t, err)
	in, err = s.Find(ctx, "#token")
	must(t, err)
	must(t, in.SendKeys(ctx, token))
	btn, err = s.Find(ctx, "#sign-in")
	must(t, err)
	must(t, btn.Click(ctx))
	_, err = s.WaitText(ctx, "#read-only", "read-only", 5*time.Second)
	must(t, err)
	if u, _ := s.URL(ctx); strings.Contains(u, token) {
		t.Errorf("the token is in the URL %s", u)
	}

	must(t, s.Navigate(ctx, base+"/events?state=dead"))
	all, err := s.Find(ctx, "#replay-all")
	must(t, err)
	if on, err := all.Enabled(ctx); err != nil || on {
		t.Errorf("replay-all enabled %v (%v) on a read-only console", on, err)
	}
	must(t, s.Execute(ctx, `const b = document.getElementById("replay-all"); b.disabled = false; b.click();`, nil))
	if got, err := s.WaitText(ctx, "#error", "This console is read-only: it shows the outbox and changes nothing.", 5*time.Second); err != nil {
		t.Fatalf("the tampered action: %v (%s)", err, got)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM txoutbox_events WHERE status = 'dead'").Scan(&n); err != nil || n != 8 {
		t.Errorf("%d dead after the refused action, %v; want 8", n, err)
	}
}
