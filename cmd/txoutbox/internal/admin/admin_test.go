package admin_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/cmd/txoutbox/internal/admin"
	"github.com/txoutbox/txoutbox/internal/eventstest"
	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Wrap(m)) }

// setup returns a migrated database holding events of keys inv-0 ...
// inv-(n-1), one billing.InvoiceOverdue each, and their ids in insert order.
func setup(t *testing.T, n int) (*pgxpool.Pool, []uuid.UUID) {
	t.Helper()
	ctx := t.Context()
	pool := pgtest.NewPool(t)
	if err := outbox.Migrate(ctx, pool, nil); err != nil {
		t.Fatal(err)
	}
	return pool, eventstest.PublishOverdue(t, pool, n)
}

func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, _ := setup(t, 0)
	eventstest.SeedStates(t, pool)

	st, err := admin.New(pool, "").Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := admin.Counts{Pending: 4, InFlight: 1, Retrying: 1, Blocked: 1, Unclaimed: 1, Delivered: 1, Dead: 2}
	got := st.Counts
	got.OldestPendingAge = 0
	if got != want {
		t.Errorf("counts = %+v\nwant     %+v", got, want)
	}
	if st.OldestPendingAge <= 0 {
		t.Errorf("OldestPendingAge = %v, want > 0", st.OldestPendingAge)
	}
	if len(st.Topics) != 1 || st.Topics[0].Topic != "billing.InvoiceOverdue" || st.Topics[0].Pending != 4 {
		t.Errorf("topics = %+v", st.Topics)
	}
	if len(st.Relays) != 1 || st.Relays[0].ID != "relay-a" || st.Relays[0].Partitions != 1 || st.Relays[0].PID != 42 {
		t.Errorf("relays = %+v", st.Relays)
	}
	if st.LeasedPartitions != 1 {
		t.Errorf("LeasedPartitions = %d, want 1", st.LeasedPartitions)
	}
}

// TestEventsByState lists the events in each state Status counts.
func TestEventsByState(t *testing.T) {
	t.Parallel()
	pool, _ := setup(t, 0)
	want := eventstest.SeedStates(t, pool)
	a := admin.New(pool, "")
	for _, state := range admin.States() {
		evs, err := a.Events(t.Context(), admin.Filter{State: state})
		if err != nil {
			t.Fatalf("%s: %v", state, err)
		}
		var got []uuid.UUID
		for _, e := range evs {
			got = append(got, e.ID)
		}
		if !slices.Equal(got, want[state]) {
			t.Errorf("events in state %s: %v, want %v", state, got, want[state])
		}
	}
}

func TestStatusEmpty(t *testing.T) {
	t.Parallel()
	pool, _ := setup(t, 0)
	st, err := admin.New(pool, "").Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Counts != (admin.Counts{}) || len(st.Topics) != 0 || len(st.Relays) != 0 {
		t.Errorf("status of an empty outbox = %+v", st)
	}
}

func TestNotMigrated(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ctx := t.Context()
	for _, schema := range []string{"", "nowhere"} {
		a := admin.New(pool, schema)
		if _, err := a.Status(ctx); !errors.Is(err, admin.ErrNotMigrated) {
			t.Errorf("schema %q: Status: err = %v, want ErrNotMigrated", schema, err)
		}
		if _, err := a.Events(ctx, admin.Filter{}); !errors.Is(err, admin.ErrNotMigrated) {
			t.Errorf("schema %q: Events: err = %v, want ErrNotMigrated", schema, err)
		}
		if _, err := a.Replay(ctx, admin.Filter{State: admin.StateDead}); !errors.Is(err, admin.ErrNotMigrated) {
			t.Errorf("schema %q: Replay: err = %v, want ErrNotMigrated", schema, err)
		}
	}
}

func TestEvents(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, ids := setup(t, 4)
	exec(t, pool, "UPDATE txoutbox_events SET status = 'dead', attempts = 10, last_error = 'HTTP 422' WHERE id = ANY($1)", ids[1:3])
	a := admin.New(pool, "")

	evs, err := a.Events(ctx, admin.Filter{State: admin.StateDead})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].ID != ids[1] || evs[1].ID != ids[2] {
		t.Fatalf("dead events = %+v", evs)
	}
	if e := evs[0]; e.Attempts != 10 || e.LastError != "HTTP 422" || e.Data != nil || e.Key != "inv-1" || e.Topic != "billing.InvoiceOverdue" {
		t.Errorf("event = %+v", e)
	}

	evs, err = a.Events(ctx, admin.Filter{Key: "inv-3", Data: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || string(evs[0].Data) != `{"days_overdue":4,"id":"inv-3"}` {
		t.Fatalf("events of inv-3 with data = %+v", evs)
	}

	evs, err = a.Events(ctx, admin.Filter{Limit: 3, Topic: "billing.InvoiceOverdue"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || evs[2].ID != ids[2] {
		t.Fatalf("limit 3: %d events", len(evs))
	}
	if evs, err := a.Events(ctx, admin.Filter{Topic: "billing.Nothing"}); err != nil || len(evs) != 0 {
		t.Fatalf("unknown topic: %v, %v", evs, err)
	}
	for _, f := range []admin.Filter{{State: "stuck"}, {Limit: -1}} {
		if _, err := a.Events(ctx, f); !errors.Is(err, admin.ErrInvalidFilter) {
			t.Errorf("%+v: err = %v, want ErrInvalidFilter", f, err)
		}
	}
}

func TestReplay(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, ids := setup(t, 5)
	exec(t, pool, "UPDATE txoutbox_events SET status = 'dead', attempts = 10, last_error = 'HTTP 422' WHERE id = ANY($1)", ids[:2])
	exec(t, pool, "UPDATE txoutbox_events SET status = 'delivered', attempts = 1, delivered_at = now() WHERE id = ANY($1)", ids[2:4])
	a := admin.New(pool, "")

	for _, f := range []admin.Filter{{}, {State: admin.StatePending}, {State: admin.StateBlocked}, {Topic: "billing.InvoiceOverdue"}} {
		if _, err := a.Replay(ctx, f); !errors.Is(err, admin.ErrInvalidFilter) {
			t.Errorf("Replay(%+v): err = %v, want ErrInvalidFilter", f, err)
		}
	}

	dead, delivered, err := a.Replayable(ctx, admin.Filter{State: admin.StateDead})
	if err != nil || dead != 2 || delivered != 0 {
		t.Fatalf("Replayable(dead) = %d, %d, %v", dead, delivered, err)
	}
	dead, delivered, err = a.Replayable(ctx, admin.Filter{IDs: []uuid.UUID{ids[0], ids[2], ids[4]}})
	if err != nil || dead != 1 || delivered != 1 {
		t.Fatalf("Replayable(ids) = %d, %d, %v", dead, delivered, err)
	}

	// By id: one dead, one delivered, one already pending.
	n, err := a.Replay(ctx, admin.Filter{IDs: []uuid.UUID{ids[0], ids[2], ids[4]}})
	if err != nil || n != 2 {
		t.Fatalf("Replay(ids) = %d, %v; want 2", n, err)
	}
	n, err = a.Replay(ctx, admin.Filter{State: admin.StateDelivered})
	if err != nil || n != 1 {
		t.Fatalf("Replay(delivered) = %d, %v; want 1", n, err)
	}
	n, err = a.Replay(ctx, admin.Filter{State: admin.StateDead, Key: "inv-1"})
	if err != nil || n != 1 {
		t.Fatalf("Replay(dead, inv-1) = %d, %v; want 1", n, err)
	}
	var pending, reset int
	if err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'pending'),
		count(*) FILTER (WHERE attempts = 0 AND delivered_at IS NULL AND next_attempt_at = '-infinity')
		FROM txoutbox_events`).Scan(&pending, &reset); err != nil {
		t.Fatal(err)
	}
	if pending != 5 || reset != 5 {
		t.Errorf("after replay: %d pending, %d reset; want 5 and 5", pending, reset)
	}
}

func TestSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	if err := outbox.Migrate(ctx, pool, &outbox.MigrateConfig{Schema: "ops box"}); err != nil {
		t.Fatal(err)
	}
	st, err := admin.New(pool, "ops box").Status(ctx)
	if err != nil || st.Pending != 0 {
		t.Fatalf("Status in a quoted schema: %+v, %v", st, err)
	}
}
