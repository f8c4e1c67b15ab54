package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/internal/walmsg"
)

// TestStatusReplication: the slots with their retained WAL, the warning of
// an unbounded max_slot_wal_keep_size while a durable slot exists, and a
// lost slot as an error saying how to recover.
func TestStatusReplication(t *testing.T) {
	t.Parallel()
	r := &outboxsql.Replication{
		WALLevel: "logical", MaxReplicationSlots: 10, MaxWALSenders: 10, MaxSlotWALKeepSize: -1,
		Slots: []outboxsql.ReplicationSlot{
			{Name: "txoutbox_messages_app_public", Messages: true, RetainedBytes: 12 << 20, WALStatus: "lost", Lost: true},
			{Name: "txoutbox_relay_0a1b", Temporary: true, Active: true, RetainedBytes: 300, WALStatus: "reserved"},
		},
	}
	var out bytes.Buffer
	writeReplication(&out, r)
	for _, want := range []string{
		`(?m)^replication: wal_level logical, max_replication_slots 10, max_wal_senders 10, max_slot_wal_keep_size unbounded$`,
		`(?m)^  txoutbox_messages_app_public +messages +no +12 MB +LOST$`,
		`(?m)^  txoutbox_relay_0a1b +relay \(temporary\) +yes +300 B +reserved$`,
		`(?m)^warning: max_slot_wal_keep_size is unbounded \(-1\).*ALTER SYSTEM SET max_slot_wal_keep_size`,
	} {
		if !regexp.MustCompile(want).MatchString(out.String()) {
			t.Errorf("replication section lacks %s:\n%s", want, out.String())
		}
	}
	err := lostSlots(r)
	if err == nil || !strings.Contains(err.Error(), "replication slot txoutbox_messages_app_public is lost: "+walmsg.LostRecovery) ||
		strings.Contains(err.Error(), "txoutbox_relay_0a1b") {
		t.Errorf("lostSlots = %v, want the messages slot's recovery", err)
	}

	// Bounded, or with temporary slots only: no warning; nothing lost: no error.
	r.MaxSlotWALKeepSize = 10 << 30
	r.Slots[0].Lost, r.Slots[0].WALStatus = false, "reserved"
	out.Reset()
	writeReplication(&out, r)
	if strings.Contains(out.String(), "warning") || !strings.Contains(out.String(), "max_slot_wal_keep_size 10 GB") {
		t.Errorf("bounded:\n%s", out.String())
	}
	if err := lostSlots(r); err != nil {
		t.Errorf("lostSlots = %v, want nil", err)
	}
	r.MaxSlotWALKeepSize, r.Slots = -1, r.Slots[1:]
	out.Reset()
	writeReplication(&out, r)
	if strings.Contains(out.String(), "warning") {
		t.Errorf("temporary slots only:\n%s", out.String())
	}
	r.Slots = nil
	out.Reset()
	writeReplication(&out, r)
	if !strings.Contains(out.String(), "\n  no txoutbox replication slots\n") {
		t.Errorf("no slots:\n%s", out.String())
	}
}

// TestStatusMessagesSlot: with the slot of message storage, status lists it
// in text and JSON, with the WAL it holds back.
func TestStatusMessagesSlot(t *testing.T) {
	t.Parallel()
	url, pool := newOutboxDB(t)
	var out, errOut bytes.Buffer
	if err := dispatch(t.Context(), []string{"migrate", "--messages", "--database-url", url}, &out, &errOut); err != nil {
		t.Fatalf("migrate --messages: %v\n%s", err, errOut.String())
	}
	var db string
	if err := pool.QueryRow(t.Context(), `SELECT current_database()`).Scan(&db); err != nil {
		t.Fatal(err)
	}
	slot := walmsg.Slot(db, "public")
	insertEvents(t, pool, 10) // WAL the slot holds back
	out.Reset()
	if err := dispatch(t.Context(), []string{"status", "--database-url", url}, &out, &errOut); err != nil {
		t.Fatalf("status: %v\n%s", err, errOut.String())
	}
	if !regexp.MustCompile(`(?m)^  ` + slot + ` +messages +no +\d+(\.\d)? [kMG]?B +(reserved|extended)$`).MatchString(out.String()) {
		t.Errorf("status lacks the slot %s:\n%s", slot, out.String())
	}
	out.Reset()
	if err := dispatch(t.Context(), []string{"status", "--json", "--database-url", url}, &out, &errOut); err != nil {
		t.Fatalf("status --json: %v\n%s", err, errOut.String())
	}
	var st struct{ Replication outboxsql.Replication }
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Replication.WALLevel != "logical" || len(st.Replication.Slots) != 1 || st.Replication.Slots[0].Name != slot ||
		!st.Replication.Slots[0].Messages || st.Replication.Slots[0].RetainedBytes <= 0 {
		t.Errorf("status --json replication = %+v", st.Replication)
	}

	// Dropped: the record of the slot tells status it was there.
	if _, err := pool.Exec(t.Context(), `SELECT pg_drop_replication_slot($1)`, slot); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err := dispatch(t.Context(), []string{"status", "--database-url", url}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), slot+" was dropped") || !strings.Contains(err.Error(), "--recreate-lost-slot") {
		t.Errorf("status after the slot was dropped: err %v, want it dropped, with how to recover", err)
	}
	if !regexp.MustCompile(`(?m)^  ` + slot + ` +messages +no +0 B +LOST \(dropped\)$`).MatchString(out.String()) {
		t.Errorf("status lacks the dropped slot %s:\n%s", slot, out.String())
	}
}
