package outboxprom_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outboxprom"
	"github.com/txoutbox/txoutbox/relay"
)

func TestRegisterReplication(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.NewPool(t)
	m, reg := newMetrics(t, nil)
	if err := m.RegisterReplication(pool, &outboxprom.ReplicationConfig{Timeout: -time.Second}); err == nil ||
		!strings.Contains(err.Error(), "ReplicationConfig.Timeout") {
		t.Fatalf("negative timeout: err = %v, want one naming ReplicationConfig.Timeout", err)
	}
	if err := m.RegisterReplication(pool, nil); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "txoutbox_replication_slot_retained_bytes"); err != nil || n != 0 {
		t.Fatalf("no slot: %d series, err %v; want none", n, err)
	}

	// Slot names are the server's: a random suffix keeps runs apart.
	var b [6]byte
	_, _ = rand.Read(b[:])
	slot := "txoutbox_messages_test_" + hex.EncodeToString(b[:])
	if _, err := pool.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), `SELECT pg_drop_replication_slot($1)`, slot); err != nil {
			t.Errorf("drop slot: %v", err)
		}
	})
	if _, err := pool.Exec(ctx, `CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 1000) g`); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP txoutbox_replication_slot_active 1 while a relay streams the replication slot.
# TYPE txoutbox_replication_slot_active gauge
txoutbox_replication_slot_active{slot="` + slot + `"} 0
# HELP txoutbox_replication_slot_lost 1 when the replication slot is lost (invalidated by the server, or, for message storage's, dropped while the outbox's record names it): what it held can no longer be read.
# TYPE txoutbox_replication_slot_lost gauge
txoutbox_replication_slot_lost{slot="` + slot + `"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "txoutbox_replication_slot_active", "txoutbox_replication_slot_lost"); err != nil {
		t.Fatal(err)
	}
	if got := gaugeValue(t, reg, "txoutbox_replication_slot_retained_bytes"); got < 200_000 {
		t.Errorf("retained %v bytes, want at least the 200kB written since the slot was made", got)
	}

	// A scrape on a closed pool reports an error instead of stale values.
	m2, reg2 := newMetrics(t, nil)
	closed := pgtest.NewPool(t)
	closed.Close()
	if err := m2.RegisterReplication(closed, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := reg2.Gather(); err == nil || !strings.Contains(err.Error(), "read replication settings") {
		t.Fatalf("scrape on a closed pool: err = %v, want read replication settings", err)
	}
}

func TestRegisterWAL(t *testing.T) {
	t.Parallel()
	m, reg := newMetrics(t, nil)
	if err := m.RegisterWAL(nil); err == nil {
		t.Fatal("RegisterWAL(nil): want an error")
	}
	st := relay.WALStatus{Streaming: true, Slot: "txoutbox_relay_0a", Wakes: 42, Restarts: 2, Recreated: 1}
	if err := m.RegisterWAL(func() relay.WALStatus { return st }); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP txoutbox_relay_wal_restarts_total WAL streams that broke and were opened again.
# TYPE txoutbox_relay_wal_restarts_total counter
txoutbox_relay_wal_restarts_total 2
# HELP txoutbox_relay_wal_slot_lost 1 while the relay finds the slot of message storage lost or missing (messages mode).
# TYPE txoutbox_relay_wal_slot_lost gauge
txoutbox_relay_wal_slot_lost 0
# HELP txoutbox_relay_wal_slot_recreated_total Times the relay found the slot of message storage created again since it last read it: events were lost (messages mode).
# TYPE txoutbox_relay_wal_slot_recreated_total counter
txoutbox_relay_wal_slot_recreated_total 1
# HELP txoutbox_relay_wal_streaming 1 while the relay's WAL stream is open (in messages mode: while it holds the slot).
# TYPE txoutbox_relay_wal_streaming gauge
txoutbox_relay_wal_streaming 1
# HELP txoutbox_relay_wal_wakes_total Commits received from the WAL stream that woke the relay (in messages mode: that carried events).
# TYPE txoutbox_relay_wal_wakes_total counter
txoutbox_relay_wal_wakes_total 42
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "txoutbox_relay_wal_restarts_total",
		"txoutbox_relay_wal_slot_lost", "txoutbox_relay_wal_slot_recreated_total", "txoutbox_relay_wal_streaming", "txoutbox_relay_wal_wakes_total"); err != nil {
		t.Fatal(err)
	}
	// Read at each scrape.
	st = relay.WALStatus{Lost: true}
	if lost := gaugeValue(t, reg, "txoutbox_relay_wal_slot_lost"); lost != 1 {
		t.Errorf("txoutbox_relay_wal_slot_lost = %v after the loss, want 1", lost)
	}
}
