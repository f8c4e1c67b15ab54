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

	r, err := ReadReplication(ctx, pool, "")
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

// TestReadReplicationMissing: a slot of message storage that the outbox's
// record names and the server does not have (dropped) is listed as
// missing and lost; one the server has is listed as it is, once; an
// outbox migrated before the record existed lists none missing.
func TestReadReplicationMissing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.NewPool(t)
	if r, err := ReadReplication(ctx, pool, ""); err != nil || len(r.Slots) != 0 {
		t.Fatalf("before the migrations: %+v, %v; want no slots and no error", r, err)
	}
	if _, err := MigrateDB(ctx, pool, ""); err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	unique := hex.EncodeToString(b[:])
	dropped, kept := walmsg.SlotPrefix+"dropped_"+unique, walmsg.SlotPrefix+"kept_"+unique
	if _, err := pool.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, kept); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), `SELECT pg_drop_replication_slot($1)`, kept); err != nil {
			t.Errorf("drop slot %s: %v", kept, err)
		}
	})
	for _, name := range []string{dropped, kept} {
		if _, err := WriteMessageSlotRecord(ctx, pool, "", name, "0/1"); err != nil {
			t.Fatal(err)
		}
	}

	r, err := ReadReplication(ctx, pool, "")
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]ReplicationSlot{}
	for _, s := range r.Slots {
		byName[s.Name] = s
	}
	if len(r.Slots) != 2 {
		t.Fatalf("slots %+v, want %s and %s", r.Slots, kept, dropped)
	}
	if s := byName[dropped]; !s.Missing || !s.Lost || !s.Messages || s.Recovery() != walmsg.LostRecovery {
		t.Errorf("dropped slot %+v, want missing, lost, of message storage", s)
	}
	if s := byName[kept]; s.Missing || s.Lost {
		t.Errorf("kept slot %+v, want neither missing nor lost", s)
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
