package outboxprom_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outboxprom"
	"github.com/txoutbox/txoutbox/relay"
)

// newMetrics registers the metrics on a fresh registry.
func newMetrics(t *testing.T, cfg *outboxprom.Config) (*outboxprom.Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := outboxprom.New(reg, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

// family gathers reg and returns the family called name.
func family(t *testing.T, reg *prometheus.Registry, name string) *dto.MetricFamily {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

func TestNew(t *testing.T) {
	t.Parallel()
	if _, err := outboxprom.New(nil, nil); err == nil {
		t.Fatal("New(nil registerer): want an error")
	}
	reg := prometheus.NewRegistry()
	if _, err := outboxprom.New(reg, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := outboxprom.New(reg, nil); err == nil {
		t.Fatal("second New on one registry: want an error")
	}
	// Another namespace does not clash.
	if _, err := outboxprom.New(reg, &outboxprom.Config{Namespace: "other"}); err != nil {
		t.Fatal(err)
	}
}

func TestFlushFunc(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t, &outboxprom.Config{
		ConstLabels:  prometheus.Labels{"service": "billing"},
		FlushBuckets: []float64{0.01, 1},
	})
	ev := func(topic string) *outbox.Event { return &outbox.Event{Topic: topic} }
	m.FlushFunc(outbox.FlushStats{
		Events:  []*outbox.Event{ev("billing.InvoiceCreated"), ev("billing.InvoiceCreated"), ev("billing.InvoicePaid"), ev("billing.InvoiceCreated")},
		Elapsed: 5 * time.Millisecond,
	})
	// A failed flush counts an error and a duration, not its events.
	m.FlushFunc(outbox.FlushStats{
		Events:  []*outbox.Event{ev("billing.InvoicePaid")},
		Elapsed: 500 * time.Millisecond,
		Err:     errors.New("insert events: boom"),
	})

	want := `
# HELP txoutbox_events_published_total Events written to the outbox table, by topic.
# TYPE txoutbox_events_published_total counter
txoutbox_events_published_total{service="billing",topic="billing.InvoiceCreated"} 3
txoutbox_events_published_total{service="billing",topic="billing.InvoicePaid"} 1
# HELP txoutbox_flush_errors_total Writes into the outbox table that failed.
# TYPE txoutbox_flush_errors_total counter
txoutbox_flush_errors_total{service="billing"} 1
# HELP txoutbox_flush_duration_seconds Time to write one flush of events into the outbox table.
# TYPE txoutbox_flush_duration_seconds histogram
txoutbox_flush_duration_seconds_bucket{service="billing",le="0.01"} 1
txoutbox_flush_duration_seconds_bucket{service="billing",le="1"} 2
txoutbox_flush_duration_seconds_bucket{service="billing",le="+Inf"} 2
txoutbox_flush_duration_seconds_sum{service="billing"} 0.505
txoutbox_flush_duration_seconds_count{service="billing"} 2
`
	err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"txoutbox_events_published_total", "txoutbox_flush_errors_total", "txoutbox_flush_duration_seconds")
	if err != nil {
		t.Fatal(err)
	}
}

func TestUnflushedFunc(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t, nil)
	m.UnflushedFunc(context.Background(), "billing.InvoiceCreated", 2)
	m.UnflushedFunc(context.Background(), "billing.InvoiceCreated", 1)
	m.UnflushedFunc(context.Background(), "billing.InvoicePaid", 4)
	want := `
# HELP txoutbox_events_unflushed_total Events a request published and never flushed, by topic.
# TYPE txoutbox_events_unflushed_total counter
txoutbox_events_unflushed_total{topic="billing.InvoiceCreated"} 3
txoutbox_events_unflushed_total{topic="billing.InvoicePaid"} 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "txoutbox_events_unflushed_total"); err != nil {
		t.Fatal(err)
	}
}

func TestRelayHooks(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t, &outboxprom.Config{
		BatchBuckets:   []float64{1, 10},
		LatencyBuckets: []float64{1, 3600},
	})
	hooks := m.RelayHooks("nats")
	if hooks.BatchFunc == nil {
		t.Fatal("RelayHooks: BatchFunc is nil")
	}
	// Dead events are counted from the batch; DeadFunc stays free for the
	// application's own alerting.
	if hooks.DeadFunc != nil {
		t.Fatal("RelayHooks: DeadFunc is set, dead events would be counted twice")
	}
	minuteAgo := time.Now().Add(-time.Minute)
	hooks.BatchFunc(relay.BatchStats{
		Read: 5, Delivered: 2, Failed: 2, Dead: 1,
		Events: []relay.EventStats{
			{Topic: "billing.InvoiceCreated", PublishedAt: minuteAgo, Delivered: true},
			{Topic: "billing.InvoiceCreated", Delivered: true}, // no publish time: no latency
			{Topic: "billing.InvoicePaid"},
			{Topic: "billing.InvoiceCreated"},
			{Topic: "billing.InvoiceCreated", Dead: true},
		},
	})
	hooks.BatchFunc(relay.BatchStats{Read: 20})

	want := `
# HELP txoutbox_relay_batch_size Rows read per relay batch.
# TYPE txoutbox_relay_batch_size histogram
txoutbox_relay_batch_size_bucket{le="1"} 0
txoutbox_relay_batch_size_bucket{le="10"} 1
txoutbox_relay_batch_size_bucket{le="+Inf"} 2
txoutbox_relay_batch_size_sum 25
txoutbox_relay_batch_size_count 2
`
	err := testutil.GatherAndCompare(reg, strings.NewReader(want), "txoutbox_relay_batch_size")
	if err != nil {
		t.Fatal(err)
	}
	// A topic's three counters are created when the topic is first seen,
	// so the outcomes it did not have are zero-valued series.
	for _, c := range []struct {
		name, topic string
		want        float64
	}{
		{"txoutbox_relay_events_delivered_total", "billing.InvoiceCreated", 2},
		{"txoutbox_relay_events_failed_total", "billing.InvoiceCreated", 1},
		{"txoutbox_relay_events_failed_total", "billing.InvoicePaid", 1},
		{"txoutbox_relay_events_dead_total", "billing.InvoiceCreated", 1},
		{"txoutbox_relay_events_delivered_total", "billing.InvoicePaid", 0},
		{"txoutbox_relay_events_dead_total", "billing.InvoicePaid", 0},
	} {
		if got := counterValue(t, reg, c.name, c.topic); got != c.want {
			t.Errorf("%s{topic=%q} = %v, want %v", c.name, c.topic, got, c.want)
		}
	}

	// One latency observation, from the event with a publish time: about
	// a minute, so in the 3600 bucket and not the 1s one.
	lat := family(t, reg, "txoutbox_relay_delivery_latency_seconds").GetMetric()
	if len(lat) != 1 {
		t.Fatalf("latency series = %d, want 1 (sink=nats)", len(lat))
	}
	h := lat[0].GetHistogram()
	if h.GetSampleCount() != 1 || h.GetSampleSum() < 60 {
		t.Fatalf("latency count %d sum %v, want 1 observation of at least 60s", h.GetSampleCount(), h.GetSampleSum())
	}
	if b := h.GetBucket(); b[0].GetCumulativeCount() != 0 || b[1].GetCumulativeCount() != 1 {
		t.Fatalf("latency buckets %v, want the observation in le=3600 only", b)
	}
}

// counterValue returns the value of the counter name{topic}, sink nats, or
// -1 when the series does not exist.
func counterValue(t *testing.T, reg *prometheus.Registry, name, topic string) float64 {
	t.Helper()
	for _, s := range family(t, reg, name).GetMetric() {
		labels := map[string]string{}
		for _, l := range s.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["topic"] == topic && labels["sink"] == "nats" {
			return s.GetCounter().GetValue()
		}
	}
	return -1
}

func TestRegisterBacklog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	if err := outbox.Migrate(ctx, pool, nil); err != nil {
		t.Fatal(err)
	}
	m, reg := newMetrics(t, nil)
	if err := m.RegisterBacklog(pool, &outboxprom.BacklogConfig{Timeout: -time.Second}); err == nil ||
		!strings.Contains(err.Error(), "BacklogConfig.Timeout") {
		t.Fatalf("negative timeout: err = %v, want one naming BacklogConfig.Timeout", err)
	}
	if err := m.RegisterBacklog(pool, nil); err != nil {
		t.Fatal(err)
	}

	gauges := func() (backlog, oldest, dead float64) {
		t.Helper()
		return gaugeValue(t, reg, "txoutbox_outbox_backlog_events"),
			gaugeValue(t, reg, "txoutbox_outbox_oldest_pending_age_seconds"),
			gaugeValue(t, reg, "txoutbox_outbox_dead_events")
	}
	if b, o, d := gauges(); b != 0 || o != 0 || d != 0 {
		t.Fatalf("empty outbox: backlog %v oldest %v dead %v, want all 0", b, o, d)
	}

	// Three pending events, the oldest published an hour ago; two dead;
	// one delivered, older still, which counts nowhere.
	_, err := pool.Exec(ctx, `INSERT INTO txoutbox_events
	(id, topic, category, entity, action, data, actor_id, actor_type, job_id, source, key, published_at, status)
	SELECT gen_random_uuid(), 'billing.InvoiceCreated', 'billing', 'Invoice', 'Created', '{}',
		'user-1', 'user', 'job-1', 'test', 'k' || i, now() - make_interval(mins => m), s
	FROM unnest(ARRAY[120, 60, 5, 1, 90, 30], ARRAY['delivered', 'pending', 'pending', 'pending', 'dead', 'dead'])
		WITH ORDINALITY AS u(m, s, i)`)
	if err != nil {
		t.Fatal(err)
	}
	backlog, oldest, dead := gauges()
	if backlog != 3 || dead != 2 {
		t.Fatalf("backlog %v dead %v, want 3 and 2", backlog, dead)
	}
	// now() is the scrape's transaction start, so the age is an hour plus
	// the time since the insert.
	if oldest < 3600 || oldest > 3600+300 {
		t.Fatalf("oldest pending age %vs, want about 3600s", oldest)
	}

	// A scrape on a closed pool reports an error instead of stale values.
	m2, reg2 := newMetrics(t, nil)
	closed := pgtest.NewPool(t)
	closed.Close()
	if err := m2.RegisterBacklog(closed, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := reg2.Gather(); err == nil || !strings.Contains(err.Error(), "read outbox backlog") {
		t.Fatalf("scrape on a closed pool: err = %v, want read outbox backlog", err)
	}
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	ms := family(t, reg, name).GetMetric()
	if len(ms) != 1 {
		t.Fatalf("%s: %d series, want 1", name, len(ms))
	}
	return ms[0].GetGauge().GetValue()
}
