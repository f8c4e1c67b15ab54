package outboxconsole

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/internal/eventstest"
	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Wrap(m)) }

// migrated returns a pool on a fresh, migrated database.
func migrated(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool := pgtest.NewPool(t)
	if err := outbox.Migrate(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	return pool
}

func exec(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func newStore(pool *pgxpool.Pool) *store {
	return &store{db: pool, q: outboxsql.New("")}
}

func ids(evs []Event) []uuid.UUID {
	out := make([]uuid.UUID, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

// TestListByState lists the events in each state the overview counts, the
// same ones `txoutbox inspect --state` lists. The list picks a pending
// state's events by the rule on its index and shows each event's state by
// the rule on its row; the overview counts by the rule on the whole table:
// all three agree.
func TestListByState(t *testing.T) {
	t.Parallel()
	pool := migrated(t)
	want := eventstest.SeedStates(t, pool)
	s := newStore(pool)
	o, err := s.overview(t.Context(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int64{outboxsql.StatusPending: o.Total.Pending, outboxsql.StateInFlight: o.Total.InFlight,
		outboxsql.StateRetrying: o.Total.Retrying, outboxsql.StateBlocked: o.Total.Blocked,
		outboxsql.StateUnclaimed: o.Total.Unclaimed, outboxsql.StatusDead: o.Total.Dead, outboxsql.StatusDelivered: o.Total.Delivered}
	for _, state := range States() {
		if len(want[state]) == 0 {
			t.Errorf("state %s: the seed has no event in it", state)
		}
		if counts[state] != int64(len(want[state])) {
			t.Errorf("state %s: the overview counts %d, want %d", state, counts[state], len(want[state]))
		}
		evs, more, err := s.list(t.Context(), &Filter{State: state}, 50)
		if err != nil {
			t.Fatalf("%s: %v", state, err)
		}
		if more || !slices.Equal(ids(evs), want[state]) {
			t.Errorf("state %s: %v (more %v), want %v", state, ids(evs), more, want[state])
		}
		for _, e := range evs {
			if e.State != state && !(state == outboxsql.StatusPending && slices.Contains(want[e.State], e.ID)) {
				t.Errorf("state %s: event %s says state %s", state, e.ID, e.State)
			}
		}
	}
}

// TestListFilters checks each filter on its own and together.
func TestListFilters(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := migrated(t)
	all := eventstest.PublishOverdue(t, pool, 6)
	exec(t, pool, "UPDATE txoutbox_events SET tenant = 'acme' WHERE id = ANY($1)", all[:2])
	exec(t, pool, "UPDATE txoutbox_events SET job_id = 'job-7' WHERE id = ANY($1)", all[2:4])
	exec(t, pool, "UPDATE txoutbox_events SET status = 'dead', last_error = 'HTTP 422: 100% Invalid_amount' WHERE id = ANY($1)", all[3:5])
	exec(t, pool, "UPDATE txoutbox_events SET published_at = '2026-01-01T10:00:00Z' WHERE id = $1", all[5])
	s := newStore(pool)
	for _, c := range []struct {
		name string
		f    Filter
		want []uuid.UUID
	}{
		{"all", Filter{}, all},
		{"ids", Filter{IDs: []uuid.UUID{all[4], all[1]}}, []uuid.UUID{all[1], all[4]}},
		{"topic", Filter{Topic: "billing.InvoiceOverdue"}, all},
		{"other topic", Filter{Topic: "billing.InvoiceCreated"}, nil},
		{"key", Filter{Key: "inv-2"}, all[2:3]},
		{"tenant", Filter{Tenant: "acme"}, all[:2]},
		{"job", Filter{JobID: "job-7"}, all[2:4]},
		{"error ignores case", Filter{Error: "invalid"}, all[3:5]},
		{"error % and _ are literal", Filter{Error: "100% invalid_"}, all[3:5]},
		{"error wildcard", Filter{Error: "1%0"}, nil},
		{"from", Filter{From: time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC), To: time.Date(2026, 1, 1, 10, 0, 1, 0, time.UTC)}, all[5:]},
		{"to", Filter{To: time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)}, nil},
		{"dead job", Filter{State: outboxsql.StatusDead, JobID: "job-7"}, all[3:4]},
		{"cursor", Filter{After: 0, Before: 0, MaxSeq: 0, Key: "inv-0"}, all[:1]},
	} {
		evs, _, err := s.list(ctx, &c.f, 50)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if !slices.Equal(ids(evs), c.want) {
			t.Errorf("%s: %v, want %v", c.name, ids(evs), c.want)
		}
	}
}

// TestListPages walks a list forward and back by cursor.
func TestListPages(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := migrated(t)
	all := eventstest.PublishOverdue(t, pool, 12)
	s := newStore(pool)
	var got []uuid.UUID
	var seqs []int64
	f := Filter{}
	for {
		evs, more, err := s.list(ctx, &f, 5)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids(evs)...)
		for _, e := range evs {
			seqs = append(seqs, e.Seq)
		}
		if !more {
			break
		}
		f.After = evs[len(evs)-1].Seq
	}
	if !slices.Equal(got, all) {
		t.Fatalf("pages forward: %v, want %v", got, all)
	}
	// The page before the last one's first event is the five before it, in
	// order, with more before them.
	evs, more, err := s.list(ctx, &Filter{Before: seqs[10]}, 5)
	if err != nil {
		t.Fatal(err)
	}
	if !more || !slices.Equal(ids(evs), all[5:10]) {
		t.Errorf("page before %d: %v (more %v), want %v", seqs[10], ids(evs), more, all[5:10])
	}
}

// TestEventAndKey reads an event's page data: its envelope, its data only
// when asked for, and the undelivered events of its key.
func TestEventAndKey(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := migrated(t)
	want := eventstest.SeedStates(t, pool)
	s := newStore(pool)
	blocked := want[outboxsql.StateBlocked][0]
	e, err := s.event(ctx, blocked, false)
	if err != nil {
		t.Fatal(err)
	}
	if e == nil || e.State != outboxsql.StateBlocked || e.Key != "inv-3" || e.Data != nil || e.Source != "billing-api" ||
		e.ActorType != "service" || e.JobID != "job-1" || e.Category != "billing" || e.Action != "Overdue" {
		t.Fatalf("event = %+v", e)
	}
	if e, err = s.event(ctx, blocked, true); err != nil || !strings.Contains(string(e.Data), `"inv-3"`) {
		t.Fatalf("event with data = %s, %v", e.Data, err)
	}
	if e, err := s.event(ctx, uuid.New(), false); e != nil || err != nil {
		t.Fatalf("missing event = %+v, %v", e, err)
	}
	kev, err := s.keyEvents(ctx, "inv-3", 10)
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, k := range kev {
		states = append(states, k.State)
	}
	if !slices.Equal(states, []string{outboxsql.StateBlocked, outboxsql.StatusDead}) {
		t.Errorf("key inv-3's events are in states %v, want blocked, then the dead copy", states)
	}
}

func TestOverview(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := migrated(t)
	eventstest.SeedStates(t, pool)
	s := newStore(pool)
	if err := s.sample(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.sample(ctx); err != nil { // the same bucket, or the next: never an error
		t.Fatal(err)
	}
	o, err := s.overview(ctx, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	want := Counts{Topic: "", Pending: 4, InFlight: 1, Retrying: 1, Blocked: 1, Unclaimed: 1, Delivered: 1, Dead: 2}
	got := o.Total
	got.OldestPending = 0
	if got != want || o.Total.OldestPending <= 0 {
		t.Errorf("total = %+v, want %+v", o.Total, want)
	}
	if len(o.Topics) != 1 || o.Topics[0].Topic != "billing.InvoiceOverdue" || o.Topics[0].Dead != 2 {
		t.Errorf("topics = %+v", o.Topics)
	}
	if len(o.Relays) != 1 || o.Relays[0].ID != "relay-a" || len(o.Relays[0].Partitions) != 1 || o.Leased != 1 {
		t.Errorf("relays = %+v, leased %d", o.Relays, o.Leased)
	}
	if len(o.Samples) == 0 || o.Samples[len(o.Samples)-1].Pending != 4 || o.Samples[len(o.Samples)-1].Dead != 2 ||
		o.Samples[len(o.Samples)-1].LastSeq != 7 {
		t.Errorf("samples = %+v, want the last with 4 pending, 2 dead, last seq 7", o.Samples)
	}
}

// TestOverviewChart derives the throughput from the samples.
func TestOverviewChart(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	o := &Overview{At: now, Samples: []Sample{
		{At: now.Add(-30 * time.Minute), LastSeq: 100, Pending: 10},
		{At: now.Add(-29 * time.Minute), LastSeq: 160, Pending: 20, Dead: 5}, // 60 published, 10 queued, 5 died: 45 delivered
		{At: now.Add(-10 * time.Minute), LastSeq: 200, Pending: 0},           // after a gap: no rate
		{At: now.Add(-9 * time.Minute), LastSeq: 200, Pending: 0},
	}}
	v := overviewView(o)
	if v.Backlog.Max != 20 || len(v.Backlog.Lines) != 1 || strings.Count(v.Backlog.Lines[0].Points, ",") != 4 {
		t.Errorf("backlog = %+v", v.Backlog)
	}
	pub, del := v.Throughput.Lines[0], v.Throughput.Lines[1]
	if v.Throughput.Max != 60 || strings.Count(pub.Points, ",") != 2 || del.Last != 0 || pub.Last != 0 {
		t.Errorf("throughput = %+v", v.Throughput)
	}
	if pub.Points != "310.0,0.0 510.0,120.0" || del.Points != "310.0,30.0 510.0,120.0" {
		t.Errorf("published %q, delivered %q: want 60 and 45 a minute 29m ago, then 0 and 0", pub.Points, del.Points)
	}
}

// TestActions replays, discards and unblocks, each once however often it
// is confirmed, each audited, each on the events confirmed only.
func TestActions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := migrated(t)
	want := eventstest.SeedStates(t, pool)
	s := newStore(pool)
	dead := want[outboxsql.StatusDead]

	f := &Filter{State: outboxsql.StatusDead, Key: "inv-1"}
	n, maxSeq, err := s.count(ctx, f)
	if err != nil || n != 1 || maxSeq == 0 {
		t.Fatalf("count = %d, %d, %v", n, maxSeq, err)
	}
	f.MaxSeq = maxSeq
	id := uuid.New()
	rec, done, err := s.act(ctx, id, "alice", outboxsql.ActionReplay, f, "")
	if err != nil || !done || rec.Events != 1 {
		t.Fatalf("replay = %+v, %v, %v", rec, done, err)
	}
	// The same confirmation again changes nothing, even once the event has
	// died again, and says what the first one did.
	exec(t, pool, "UPDATE txoutbox_events SET status = 'dead' WHERE id = $1", dead[0])
	rec, done, err = s.act(ctx, id, "bob", outboxsql.ActionReplay, f, "")
	if err != nil || done || rec.Events != 1 || rec.Actor != "alice" {
		t.Fatalf("replay again = %+v, %v, %v", rec, done, err)
	}
	var status string
	var attempts int
	if err := pool.QueryRow(ctx, "SELECT status, attempts FROM txoutbox_events WHERE id = $1", dead[0]).Scan(&status, &attempts); err != nil || status != "dead" {
		t.Fatalf("after the repeat: %s, %v", status, err)
	}

	// A confirmation bounds the events: one dead since is not replayed.
	exec(t, pool, "UPDATE txoutbox_events SET status = 'pending', attempts = 0 WHERE id = $1", dead[0])
	all := &Filter{State: outboxsql.StatusDead}
	n, maxSeq, err = s.count(ctx, all)
	if err != nil || n != 1 {
		t.Fatalf("count = %d, %v", n, err)
	}
	all.MaxSeq = maxSeq
	var newDead uuid.UUID
	if err := pool.QueryRow(ctx, `INSERT INTO txoutbox_events (id, topic, category, entity, action, data, actor_id, actor_type, job_id, source, key, published_at, status)
		SELECT gen_random_uuid(), topic, category, entity, action, data, actor_id, actor_type, job_id, source, 'inv-9', published_at, 'dead'
		FROM txoutbox_events WHERE id = $1 RETURNING id`, dead[0]).Scan(&newDead); err != nil {
		t.Fatal(err)
	}
	rec, done, err = s.act(ctx, uuid.New(), "alice", outboxsql.ActionDiscard, all, "bad data")
	if err != nil || !done || rec.Events != 1 {
		t.Fatalf("discard = %+v, %v, %v", rec, done, err)
	}
	var lastErr string
	if err := pool.QueryRow(ctx, "SELECT status, last_error FROM txoutbox_events WHERE id = $1", dead[1]).Scan(&status, &lastErr); err != nil ||
		status != "delivered" || !strings.HasPrefix(lastErr, "discarded by alice: bad data") {
		t.Fatalf("discarded event: %s %q %v", status, lastErr, err)
	}
	// Discarding the dead copy unblocked inv-3.
	e, err := s.event(ctx, want[outboxsql.StateBlocked][0], false)
	if err != nil || e.State == outboxsql.StateBlocked {
		t.Fatalf("inv-3 after the discard: %+v, %v", e, err)
	}
	if err := pool.QueryRow(ctx, "SELECT status FROM txoutbox_events WHERE id = $1", newDead).Scan(&status); err != nil || status != "dead" {
		t.Fatalf("event dead after the confirmation: %s, %v", status, err)
	}

	recs, err := s.actions(ctx, 10)
	if err != nil || len(recs) != 2 {
		t.Fatalf("audit = %+v, %v", recs, err)
	}
	if r := recs[0]; r.Action != "discard" || r.Actor != "alice" || r.Events != 1 || r.Reason != "bad data" || !strings.Contains(r.Filter, `"state": "dead"`) {
		t.Errorf("audit row = %+v", r)
	}

	if _, _, err := s.act(ctx, uuid.New(), "alice", "delete", all, ""); err == nil {
		t.Error("an unknown action was accepted")
	}
}

func TestNotMigrated(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	s := newStore(pool)
	if _, err := s.overview(t.Context(), time.Hour); !errors.Is(err, ErrNotMigrated) {
		t.Errorf("overview: %v, want ErrNotMigrated", err)
	}
	if _, _, err := s.list(t.Context(), &Filter{}, 5); !errors.Is(err, ErrNotMigrated) {
		t.Errorf("list: %v, want ErrNotMigrated", err)
	}
}
