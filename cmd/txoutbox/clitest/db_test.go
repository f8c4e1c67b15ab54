package clitest

import (
	"bytes"
	"encoding/json"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/eventstest"
	"github.com/txoutbox/txoutbox/internal/pgtest"
)

// withPassword returns rawURL with a password set, to check it never shows.
func withPassword(t *testing.T, rawURL, password string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	name := "postgres"
	if u.User != nil {
		name = u.User.Username()
	}
	u.User = url.UserPassword(name, password)
	return u.String()
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	env := []string{"TXOUTBOX_DATABASE_URL=" + db}
	r := mustRun(t, env, "migrate")
	if !strings.HasPrefix(r.stdout, "applied 001_create_events.up.sql\n") || !strings.Contains(r.stdout, "\noutbox tables are up to date in the search_path's schema") {
		t.Errorf("migrate says:\n%s", r)
	}
	r = mustRun(t, env, "migrate") // idempotent
	if !strings.HasPrefix(r.stdout, "outbox tables were already up to date in the search_path's schema") {
		t.Errorf("migrate again says:\n%s", r)
	}
	r = mustRun(t, nil, "migrate", "--database-url", db, "--schema", "ops")
	if !strings.Contains(r.stdout, `schema "ops"`) {
		t.Errorf("migrate --schema says:\n%s", r)
	}
	mustRun(t, env, "status", "--schema", "ops")

	r = mustRun(t, nil, "migrate", "--print")
	for _, want := range []string{"-- 001_create_events.up.sql\n", "CREATE TABLE txoutbox_events", "-- 002_create_relay.up.sql\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("migrate --print lacks %q", want)
		}
	}
	r = mustRun(t, nil, "migrate", "--print", "--schema", "my ops")
	if !strings.Contains(r.stdout, "CREATE SCHEMA IF NOT EXISTS \"my ops\";\nSET search_path TO \"my ops\";\n") {
		t.Errorf("migrate --print --schema:\n%.400s", r.stdout)
	}
}

// Every database command fails on one line, naming the fix, and never shows
// the password.
func TestDatabaseErrors(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-Pw-917"
	db := pgtest.NewDB(t) // empty: not migrated
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	noDB := *u
	noDB.Path = "/no_such_database_here"
	closed := "postgres://app:" + secret + "@127.0.0.1:1/app"

	for _, cmd := range [][]string{{"status"}, {"inspect"}, {"replay", "--state", "dead"}, {"migrate"}} {
		name := cmd[0]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			check := func(what string, r result, want string) {
				t.Helper()
				if r.code != 1 || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, want) ||
					strings.Contains(r.stderr+r.stdout, secret) || strings.Contains(r.stderr, "goroutine") {
					t.Errorf("%s: want one line with %q and no password:\n%s", what, want, r)
				}
			}
			args := func(url string) []string { return append(append([]string{}, cmd...), "--database-url", url) }

			check("no URL", run(t, "", nil, cmd...), "--database-url (TXOUTBOX_DATABASE_URL) is required")
			check("bad URL", run(t, "", nil, args("postgres://app:"+secret+"@[::1/x")...), "--database-url: cannot parse")
			check("not a URL", run(t, "", nil, args("mysql://app:"+secret+"@db/app")...), "--database-url: cannot parse")
			check("refused", run(t, "", nil, args(closed)...), "connect to postgres://app@127.0.0.1:1/app")
			check("no database", run(t, "", nil, args(withPassword(t, noDB.String(), secret))...), `database "no_such_database_here" does not exist`)
			if name != "migrate" {
				check("not migrated", run(t, "", nil, args(withPassword(t, db, secret))...),
					"txoutbox: "+name+": the outbox table is missing: run `txoutbox migrate`\n")
			}
		})
	}
}

func TestStatusInspectReplay(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.NewDB(t)
	env := []string{"TXOUTBOX_DATABASE_URL=" + db}
	mustRun(t, env, "migrate")
	pool, err := pgxpool.New(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	r := mustRun(t, env, "status")
	if !strings.Contains(r.stdout, "the outbox is empty") {
		t.Errorf("status of an empty outbox:\n%s", r)
	}

	ids := eventstest.PublishOverdue(t, pool, 5)
	if _, err := pool.Exec(ctx, `UPDATE txoutbox_events SET status = 'dead', attempts = 10, last_error = 'HTTP 422: unknown
field "days_overdue"' WHERE id = ANY($1)`, ids[:2]); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE txoutbox_events SET status = 'delivered', attempts = 1, delivered_at = now() WHERE id = $1`, ids[2]); err != nil {
		t.Fatal(err)
	}

	// status
	r = mustRun(t, env, "status")
	for _, want := range []string{`(?m)^pending +2  oldest \S+$`, `(?m)^  in flight +0$`, `(?m)^  unclaimed +2$`, `(?m)^dead +2$`,
		`(?m)^delivered +1$`, "unclaimed events wait for a relay", `(?m)^billing.InvoiceOverdue +2 +0 +0 +2 +2 +1 +\S+$`} {
		if !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("status lacks %s:\n%s", want, r.stdout)
		}
	}
	if regexp.MustCompile(`(?m) $`).MatchString(r.stdout) {
		t.Errorf("status has trailing spaces:\n%q", r.stdout)
	}
	var st struct {
		Pending, Dead, Delivered, Unclaimed int
		Topics                              []struct{ Topic string }
		Partitions                          int
	}
	r = mustRun(t, env, "status", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, r.stdout)
	}
	if st.Pending != 2 || st.Dead != 2 || st.Delivered != 1 || st.Unclaimed != 2 || len(st.Topics) != 1 || st.Partitions != 64 {
		t.Errorf("status --json = %+v", st)
	}

	// inspect
	r = mustRun(t, env, "inspect", "--state", "dead")
	if !strings.Contains(r.stdout, ids[0].String()) || !strings.Contains(r.stdout, ids[1].String()) ||
		strings.Contains(r.stdout, ids[3].String()) || !strings.Contains(r.stdout, `HTTP 422: unknown field "days_overdue"`) {
		t.Errorf("inspect --state dead:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout, "days_overdue\":") {
		t.Errorf("inspect shows data without --show-data:\n%s", r.stdout)
	}
	r = mustRun(t, env, "inspect", "--key", "inv-3", "--show-data")
	if !strings.Contains(r.stdout, `data: {"days_overdue":4,"id":"inv-3"}`) {
		t.Errorf("inspect --show-data:\n%s", r.stdout)
	}
	var evs []struct {
		ID     uuid.UUID
		Status string
		Data   json.RawMessage
	}
	r = mustRun(t, env, "inspect", "--id", ids[4].String()+","+ids[0].String(), "--json", "--show-data")
	if err := json.Unmarshal([]byte(r.stdout), &evs); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, r.stdout)
	}
	var data bytes.Buffer
	if len(evs) == 2 {
		_ = json.Compact(&data, evs[1].Data)
	}
	if len(evs) != 2 || evs[0].ID != ids[0] || evs[0].Status != "dead" || data.String() != `{"days_overdue":5,"id":"inv-4"}` {
		t.Errorf("inspect --id --json = %+v", evs)
	}
	r = mustRun(t, env, "inspect", "--limit", "2")
	if !strings.Contains(r.stdout, "(the first 2; --limit shows more)") {
		t.Errorf("inspect --limit 2:\n%s", r.stdout)
	}
	if r := run(t, "", env, "inspect", "--topic", "billing.Nothing"); r.code != 0 || r.stdout != "no events match\n" {
		t.Errorf("inspect of nothing:\n%s", r)
	}
	for _, bad := range [][]string{{"--state", "stuck"}, {"--id", "not-a-uuid"}, {"--limit", "0"}} {
		if r := run(t, "", env, append([]string{"inspect"}, bad...)...); r.code != 1 || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("inspect %v:\n%s", bad, r)
		}
	}

	// replay
	r = mustRun(t, env, "replay", "--state", "dead", "--dry-run")
	if r.stdout != "would replay 2 events (2 dead, 0 delivered); nothing changed\n" {
		t.Errorf("replay --dry-run:\n%s", r)
	}
	for _, bad := range [][]string{{}, {"--state", "pending"}} {
		if r := run(t, "", env, append([]string{"replay"}, bad...)...); r.code != 1 || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("replay %v:\n%s", bad, r)
		}
	}
	r = mustRun(t, env, "replay", "--state", "dead", "--key", "inv-0")
	if !strings.HasPrefix(r.stdout, "replayed 1 event: pending again") {
		t.Errorf("replay --state dead --key inv-0:\n%s", r)
	}
	r = mustRun(t, env, "replay", "--id", ids[1].String(), "--id", ids[2].String())
	if !strings.HasPrefix(r.stdout, "replayed 2 events") {
		t.Errorf("replay --id --id:\n%s", r)
	}
	if r := mustRun(t, env, "replay", "--state", "dead"); r.stdout != "no dead or delivered events match: nothing replayed\n" {
		t.Errorf("replay with nothing dead:\n%s", r)
	}
	r = mustRun(t, env, "status", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.Pending != 5 || st.Dead != 0 || st.Delivered != 0 {
		t.Errorf("after replay: %+v", st)
	}
}
