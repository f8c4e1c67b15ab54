package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
)

func TestDeliverInOrder(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	insertEvents(t, pool, cycleKeys(2500, 10)...)
	sink := &recordingSink{}
	startRelay(t, pool, sink, &Config{BatchSize: 100})

	waitFor(t, 10*time.Second, "2500 events", func() bool { return sink.distinct() == 2500 })
	got := sink.delivered()
	if len(got) != 2500 {
		t.Errorf("delivered %d messages for 2500 events: duplicates without a crash", len(got))
	}
	checkOrder(t, got)
	waitFor(t, 5*time.Second, "delivered rows deleted", func() bool { return count(t, pool, "true") == 0 })
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	sink := &recordingSink{}
	if _, err := New(nil, sink, nil); err == nil {
		t.Error("New(nil pool): no error")
	}
	if _, err := New(pool, nil, nil); err == nil {
		t.Error("New(nil sink): no error")
	}
	for _, tc := range []struct {
		cfg   Config
		field string
	}{
		{Config{BatchSize: -1}, "Config.BatchSize"},
		{Config{PollInterval: -time.Second}, "Config.PollInterval"},
		{Config{LeaseTTL: time.Millisecond}, "Config.LeaseTTL"},
		{Config{MaxAttempts: -1}, "Config.MaxAttempts"},
		{Config{PoisonPolicy: "drop"}, "Config.PoisonPolicy"},
		{Config{RetryBase: -1}, "Config.RetryBase"},
		{Config{RetryBase: time.Minute, RetryMax: time.Second}, "Config.RetryMax"},
		{Config{Retention: -time.Hour}, "Config.Retention"},
		{Config{CleanupInterval: -1}, "Config.CleanupInterval"},
		{Config{CleanupBatchSize: -1}, "Config.CleanupBatchSize"},
		{Config{ShutdownTimeout: -1}, "Config.ShutdownTimeout"},
	} {
		_, err := New(pool, sink, &tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("New(%+v) = %v, want an error naming %s", tc.cfg, err, tc.field)
		}
	}
}

func TestRunTwice(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	r, _ := startRelay(t, pool, &recordingSink{}, nil)
	waitFor(t, 5*time.Second, "first poll", func() bool { return !r.LastPoll().IsZero() })
	if err := r.Run(t.Context()); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
}

func TestRunWithoutTables(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	r, err := New(pool, &recordingSink{}, &Config{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "migrations") {
		t.Errorf("Run without tables = %v, want an error saying to run the migrations", err)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	cfg := (&Config{RetryBase: 10 * time.Millisecond, RetryMax: 80 * time.Millisecond}).withDefaults()
	for attempt, wantCap := range map[int]time.Duration{1: 10, 2: 20, 3: 40, 4: 80, 5: 80, 40: 80} {
		wantCap *= time.Millisecond
		if c := backoffCap(cfg.RetryBase, cfg.RetryMax, attempt); c != wantCap {
			t.Errorf("backoffCap(attempt %d) = %s, want %s", attempt, c, wantCap)
		}
		for range 100 {
			if d := cfg.retryDelay(attempt, errors.New("503")); d < 0 || d > wantCap {
				t.Fatalf("retryDelay(attempt %d) = %s, outside [0, %s]", attempt, d, wantCap)
			}
			if d := equalJitter(cfg.RetryBase, cfg.RetryMax, attempt); d < wantCap/2 || d > wantCap {
				t.Fatalf("equalJitter(attempt %d) = %s, outside [%s, %s]", attempt, d, wantCap/2, wantCap)
			}
		}
	}
	if d := cfg.retryDelay(3, Permanent(errors.New("400"))); d != 0 {
		t.Errorf("retryDelay(permanent) = %s, want 0", d)
	}
	if d := cfg.retryDelay(1, RetryAfter(errors.New("429"), time.Hour)); d != time.Hour {
		t.Errorf("retryDelay(RetryAfter 1h) = %s, want 1h", d)
	}
}

// TestEventShape checks that a sink gets an event as it was stored: every
// envelope field read back from its row.
func TestEventShape(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	_, err := pool.Exec(t.Context(), `INSERT INTO txoutbox_events
		(id, topic, category, entity, action, data, actor_id, actor_type, job_id, source, key,
		 traceparent, tenant, causation_id, dedupe_key, published_at)
		VALUES ('0190f0f0-0000-7000-8000-000000000001', 'billing.InvoicePaid', 'billing', 'Invoice', 'Paid',
		 '{"id": "inv-1"}', 'svc', 'service', 'job-9', 'billing-api', 'inv-1',
		 '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'acme',
		 '0190f0f0-0000-7000-8000-000000000000', 'd-1', '2026-01-02T03:04:05.123456Z')`)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got outbox.Event
	sink := &recordingSink{FailFunc: func(_ context.Context, _ int, events []*outbox.Event) error {
		mu.Lock()
		defer mu.Unlock()
		got = *events[0]
		got.Data = bytes.Clone(got.Data)
		return nil
	}}
	startRelay(t, pool, sink, nil)
	waitFor(t, 5*time.Second, "the event", func() bool { return sink.distinct() == 1 })

	mu.Lock()
	defer mu.Unlock()
	want := outbox.Event{
		ID:    uuid.MustParse("0190f0f0-0000-7000-8000-000000000001"),
		Topic: "billing.InvoicePaid", Category: "billing", Entity: "Invoice", Action: "Paid",
		Data:    []byte(`{"id": "inv-1"}`),
		ActorID: "svc", ActorType: "service", JobID: "job-9", Source: "billing-api", Key: "inv-1",
		Traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", Tenant: "acme",
		CausationID: "0190f0f0-0000-7000-8000-000000000000", DedupeKey: "d-1",
		Time: time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC),
	}
	if !got.Time.Equal(want.Time) {
		t.Errorf("time %s, want %s", got.Time, want.Time)
	}
	got.Time = want.Time
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("event\n%+v\nwant\n%+v", got, want)
	}
}

// TestWake lets an idle relay back off to a PollInterval of an hour, then
// commits an event: Wake alone gets it delivered. A wake that comes before
// the commit finds nothing, and the wake after the commit, as outbox's
// OnCommit hooks give it, still gets the event delivered.
func TestWake(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	sink := &recordingSink{}
	r, _ := startRelay(t, pool, sink, &Config{PollInterval: time.Hour})
	waitIdle := func() {
		t.Helper()
		// Polls come at 1, 2, 4, ... ms; a second without one means the
		// relay waits at least that long now.
		waitFor(t, 20*time.Second, "the relay to go idle", func() bool {
			return !r.LastPoll().IsZero() && time.Since(r.LastPoll()) > time.Second
		})
	}

	waitIdle()
	insertEvents(t, pool, "k1")
	r.Wake()
	waitFor(t, 10*time.Second, "the event committed before Wake", func() bool { return sink.distinct() == 1 })

	waitIdle()
	tx, err := pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	insertEvents(t, tx, "k2")
	r.Wake() // too early: the round it starts finds nothing
	time.Sleep(20 * time.Millisecond)
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	r.Wake()
	waitFor(t, 10*time.Second, "the event committed after the first Wake", func() bool { return sink.distinct() == 2 })
}

// TestRunCancelledBeforeStart: a relay whose context is cancelled before it
// started (a deploy stopping it at once) returns nil in every mode, as it
// does after a clean shutdown: the WAL modes' checks of the server must not
// turn the cancellation into an error.
func TestRunCancelledBeforeStart(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	if err := outbox.Migrate(t.Context(), pool, &outbox.MigrateConfig{Messages: true}); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []Mode{ModePoll, ModeWAL, ModeMessages} {
		t.Run(string(mode), func(t *testing.T) {
			r, err := New(pool, &recordingSink{}, &Config{Mode: mode, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := r.Run(ctx); err != nil {
				t.Errorf("Run with a cancelled context = %v, want nil", err)
			}
		})
	}
}
