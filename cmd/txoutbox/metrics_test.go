package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRelayMetrics runs txoutbox relay in process, delivers a known number
// of events and checks /metrics counts exactly those.
func TestRelayMetrics(t *testing.T) {
	t.Parallel()
	url, pool := newOutboxDB(t)
	const n = 250
	insertEvents(t, pool, n)
	if _, err := pool.Exec(t.Context(), `INSERT INTO txoutbox_events
		(id, topic, category, entity, action, data, actor_id, actor_type, job_id, source, key, published_at, status)
		VALUES (gen_random_uuid(), 'billing.InvoicePaid', 'billing', 'Invoice', 'Paid', '{}', 'u', 'user', 'j', 'test', 'dead-key', now(), 'dead')`); err != nil {
		t.Fatal(err)
	}
	addr, stdout := startRelayCommand(t, "--database-url", url, "--sink", "stdout", "--batch-size", "100")
	var body string
	// The relay counts a batch after recording its outcome, so the backlog
	// can read 0 a moment before the last batch is counted.
	waitFor(t, 20*time.Second, "the backlog to drain and every batch to be counted", func() bool {
		body = scrape(t, "http://"+addr+"/metrics")
		backlog, ok := metricValue(body, `txoutbox_outbox_backlog_events`)
		batched, _ := metricValue(body, `txoutbox_relay_batch_size_sum`)
		return ok && backlog == 0 && batched >= n
	})
	if got := strings.Count(stdout.String(), "\n"); got != n {
		t.Fatalf("%d events printed, want %d", got, n)
	}
	for _, tc := range []struct {
		series string
		want   float64
	}{
		{`txoutbox_relay_events_delivered_total{sink="stdout",topic="billing.InvoiceCreated"}`, n},
		{`txoutbox_relay_events_failed_total{sink="stdout",topic="billing.InvoiceCreated"}`, 0},
		{`txoutbox_relay_events_dead_total{sink="stdout",topic="billing.InvoiceCreated"}`, 0},
		{`txoutbox_relay_delivery_latency_seconds_count{sink="stdout"}`, n},
		{`txoutbox_relay_batch_size_sum`, n},
		{`txoutbox_outbox_backlog_events`, 0},
		{`txoutbox_outbox_oldest_pending_age_seconds`, 0},
		{`txoutbox_outbox_dead_events`, 1},
	} {
		got, ok := metricValue(body, tc.series)
		if !ok || got != tc.want {
			t.Errorf("%s = %v (found %v), want %v", tc.series, got, ok, tc.want)
		}
	}
	if !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics lacks the Go runtime's metrics")
	}
}

// startRelayCommand runs txoutbox relay in process with args, its admin
// endpoints on a free port, until the test ends; it returns their address
// and the relay's stdout.
func startRelayCommand(t *testing.T, args ...string) (string, *lockedBuffer) {
	t.Helper()
	var stdout, stderr lockedBuffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- dispatch(ctx, append([]string{"relay", "--admin-addr", "127.0.0.1:0"}, args...), &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay = %v\n%s", err, stderr.String())
		}
	})
	addrRE := regexp.MustCompile(`"admin endpoints listening" addr=(\S+)`)
	var addr string
	waitFor(t, 10*time.Second, "the admin address", func() bool {
		m := addrRE.FindStringSubmatch(stderr.String())
		if m != nil {
			addr = m[1]
		}
		return m != nil
	})
	return addr, &stdout
}

// TestRelayWALMetrics: a relay in wal mode exports its stream's state and
// its temporary slot, read on each scrape.
func TestRelayWALMetrics(t *testing.T) {
	t.Parallel()
	url, pool := newOutboxDB(t)
	addr, stdout := startRelayCommand(t, "--database-url", url, "--sink", "stdout", "--mode", "wal")
	var body string
	waitFor(t, 10*time.Second, "the stream to open", func() bool {
		body = scrape(t, "http://"+addr+"/metrics")
		v, _ := metricValue(body, "txoutbox_relay_wal_streaming")
		return v == 1
	})
	const n = 20
	insertEvents(t, pool, n)
	waitFor(t, 10*time.Second, "the events delivered", func() bool { return strings.Count(stdout.String(), "\n") == n })
	// A poll may deliver the events before the stream's commit reaches the
	// relay; the commit counts as a wake when it does.
	waitFor(t, 10*time.Second, "txoutbox_relay_wal_wakes_total ≥ 1", func() bool {
		body = scrape(t, "http://"+addr+"/metrics")
		wakes, ok := metricValue(body, "txoutbox_relay_wal_wakes_total")
		return ok && wakes >= 1
	})
	if _, ok := metricValue(body, "txoutbox_relay_wal_restarts_total"); !ok {
		t.Error("/metrics lacks txoutbox_relay_wal_restarts_total")
	}
	slot := regexp.MustCompile(`(?m)^txoutbox_replication_slot_active\{slot="(txoutbox_relay_[0-9a-f]+)"\} 1$`).FindStringSubmatch(body)
	if slot == nil {
		t.Fatalf("/metrics lacks the relay's active slot:\n%s", body)
	}
	for _, series := range []string{"txoutbox_replication_slot_lost", "txoutbox_replication_slot_retained_bytes"} {
		if _, ok := metricValue(body, series+`{slot="`+slot[1]+`"}`); !ok {
			t.Errorf("/metrics lacks %s of %s", series, slot[1])
		}
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", url, resp.StatusCode, err, b)
	}
	return string(b)
}

// metricValue finds the sample of series (name and labels exactly as the
// text format writes them) in a scrape.
func metricValue(body, series string) (float64, bool) {
	for line := range strings.Lines(body) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}
