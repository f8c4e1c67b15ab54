package relay

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/txoutbox/txoutbox/internal/pgtest"
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

func TestGroupRows(t *testing.T) {
	t.Parallel()
	mk := func(spec string) []*row {
		var rows []*row
		for i, f := range strings.Fields(spec) {
			topic, key, _ := strings.Cut(f, "/")
			rows = append(rows, &row{seq: int64(i), topic: topic, key: key})
		}
		return rows
	}
	show := func(gs []group) string {
		var parts []string
		for _, g := range gs {
			var rs []string
			for _, r := range g.rows {
				rs = append(rs, r.topic+"/"+r.key)
			}
			parts = append(parts, "["+strings.Join(rs, " ")+"]")
		}
		return strings.Join(parts, " ")
	}
	for _, tc := range []struct{ in, want string }{
		{"a/1 a/2 a/1", "[a/1 a/2 a/1]"},
		{"a/1 b/2 a/3 b/4", "[a/1 a/3] [b/2 b/4]"},
		// a/1 must follow b/1, so it cannot join the first a group.
		{"a/1 b/1 a/1", "[a/1] [b/1] [a/1]"},
		{"a/1 b/1 a/2 a/1 b/3", "[a/1 a/2] [b/1 b/3] [a/1]"},
		{"a/1 b/2 c/1 a/3 c/2", "[a/1 a/3] [b/2] [c/1 c/2]"},
		{"", ""},
	} {
		if got := show(groupRows(mk(tc.in))); got != tc.want {
			t.Errorf("groupRows(%s) = %s, want %s", tc.in, got, tc.want)
		}
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

// TestMessageShape checks that a sink gets an event as the outbox defines
// it: UUID = event id, payload = data, metadata = the envelope.
func TestMessageShape(t *testing.T) {
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
	var got *message.Message
	sink := &recordingSink{FailFunc: func(_ int, msgs []*message.Message) error { got = msgs[0]; return nil }}
	startRelay(t, pool, sink, nil)
	waitFor(t, 5*time.Second, "the event", func() bool { return sink.distinct() == 1 })

	if got.UUID != "0190f0f0-0000-7000-8000-000000000001" || string(got.Payload) != `{"id": "inv-1"}` {
		t.Errorf("message %s %s", got.UUID, got.Payload)
	}
	want := map[string]string{
		"topic": "billing.InvoicePaid", "category": "billing", "entity": "Invoice", "action": "Paid",
		"actor_id": "svc", "actor_type": "service", "job_id": "job-9", "source": "billing-api", "key": "inv-1",
		"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tenant": "acme",
		"causation_id": "0190f0f0-0000-7000-8000-000000000000", "dedupe_key": "d-1",
		"time": "2026-01-02T03:04:05.123456Z",
	}
	for k, v := range want {
		if got.Metadata.Get(k) != v {
			t.Errorf("metadata %s = %q, want %q", k, got.Metadata.Get(k), v)
		}
	}
	if len(got.Metadata) != len(want) {
		t.Errorf("metadata has %d keys, want %d: %v", len(got.Metadata), len(want), got.Metadata)
	}
}

// TestWake lets an idle relay back off to a PollInterval of an hour, then
// commits an event: Wake alone gets it delivered. Wake also works when
// called before the commit, as outbox's OnFlush does: the relay polls again
// shortly after a wake that found nothing.
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
	r.Wake()
	time.Sleep(20 * time.Millisecond) // the commit comes after the wake
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the event committed after Wake", func() bool { return sink.distinct() == 2 })
}
