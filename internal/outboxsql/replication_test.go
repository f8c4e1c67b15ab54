package outboxsql

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/internal/walmsg"
)

// TestReadReplication: the settings, and txoutbox's slots of the current
// database with their retained WAL; another database's slots and slots
// named otherwise are not listed.
func TestReadReplication(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.NewPool(t)
	other := pgtest.NewPool(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	unique := hex.EncodeToString(b[:])
	// Slot names are the server's: the suffix keeps parallel runs apart.
	mine := walmsg.SlotPrefix + "test_" + unique
	foreign := "test_not_txoutbox_" + unique
	elsewhere := RelaySlotPrefix + "elsewhere_" + unique
	for _, s := range []struct {
		db   DB
		name string
	}{{pool, mine}, {pool, foreign}, {other, elsewhere}} {
		if _, err := s.db.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, s.name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if _, err := s.db.Exec(context.Background(), `SELECT pg_drop_replication_slot($1)`, s.name); err != nil {
				t.Errorf("drop slot %s: %v", s.name, err)
			}
		})
	}
	// WAL written after the slot's restart_lsn is retained.
	if _, err := pool.Exec(ctx, `CREATE TABLE filler AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 2000) g`); err != nil {
		t.Fatal(err)
	}

	r, err := ReadReplication(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if r.WALLevel != "logical" || r.MaxReplicationSlots < 1 || r.MaxWALSenders < 1 {
		t.Errorf("settings %+v, want wal_level logical and room for slots", r)
	}
	if r.MaxSlotWALKeepSize < -1 || r.MaxSlotWALKeepSize > -1 && r.MaxSlotWALKeepSize%(1<<20) != 0 {
		t.Errorf("max_slot_wal_keep_size = %d bytes, want -1 or whole MB", r.MaxSlotWALKeepSize)
	}
	if len(r.Slots) != 1 {
		t.Fatalf("slots %+v, want only %s", r.Slots, mine)
	}
	s := r.Slots[0]
	if s.Name != mine || !s.Messages || s.Temporary || s.Active || s.Lost || s.RestartLSN == "" || s.ConfirmedFlushLSN == "" {
		t.Errorf("slot %+v, want %s, of message storage, inactive, not lost", s, mine)
	}
	if s.RetainedBytes < 400_000 {
		t.Errorf("retained %d bytes, want at least the 400kB written since the slot was made", s.RetainedBytes)
	}
	if s.WALStatus == "" || s.WALStatus == "lost" {
		t.Errorf("wal_status %q, want reserved or extended", s.WALStatus)
	}
	if r.Unbounded() != (s.SafeWALSize == nil) {
		t.Errorf("unbounded %v, safe_wal_size %v: want a size exactly when bounded", r.Unbounded(), s.SafeWALSize)
	}
	if s.Recovery() != walmsg.LostRecovery {
		t.Errorf("recovery of the messages slot: %q", s.Recovery())
	}
}

func TestByteSize(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{
		0: "0 B", 812: "812 B", 1024: "1 kB", 1536: "1.5 kB", 56 << 10: "56 kB",
		10 << 30: "10 GB", 3<<40 + 1<<39: "3.5 TB",
	} {
		if got := ByteSize(n); got != want {
			t.Errorf("ByteSize(%d) = %q, want %q", n, got, want)
		}
	}
}
