package outbox_test

import (
	"errors"
	"testing"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
)

// TestCreateMessageSlotLost: a slot of message storage that was dropped
// (all relays down) is not created again silently by the next migrate, as
// a deploy runs it: that would start the new slot after the events the
// lost one had not confirmed. Migrate and CreateMessageSlot say the slot
// was lost and since when; RecreateLost acknowledges it.
func TestCreateMessageSlotLost(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.NewPool(t)
	cfg := &outbox.MigrateConfig{Schema: "billing", Messages: true}
	if err := outbox.Migrate(ctx, pool, cfg); err != nil {
		t.Fatal(err)
	}
	first, err := outbox.CreateMessageSlot(ctx, pool, &outbox.MessageSlotConfig{Schema: "billing"})
	if err != nil || first.Created || first.CreatedLSN == "" || first.CreatedAt.IsZero() {
		t.Fatalf("CreateMessageSlot on the slot Migrate created = %+v, %v", first, err)
	}
	if err := outbox.Migrate(ctx, pool, cfg); err != nil {
		t.Fatalf("Migrate with the slot there: %v", err)
	}
	if _, err := pool.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, first.Name); err != nil {
		t.Fatal(err)
	}

	err = outbox.Migrate(ctx, pool, cfg)
	lost, ok := errors.AsType[*outbox.SlotLostError](err)
	if !ok || !errors.Is(err, outbox.ErrSlotLost) {
		t.Fatalf("Migrate after the slot was dropped = %v, want a *SlotLostError", err)
	}
	if lost.Slot != first.Name || lost.CreatedLSN != first.CreatedLSN || !lost.CreatedAt.Equal(first.CreatedAt) {
		t.Errorf("SlotLostError = %+v, want the lost slot's record %+v", lost, first)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, first.Name).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d slots named %s after the refusal (%v), want none", n, first.Name, err)
	}

	again, err := outbox.CreateMessageSlot(ctx, pool, &outbox.MessageSlotConfig{Schema: "billing", RecreateLost: true})
	if err != nil || !again.Created || again.Lost == nil || again.Lost.CreatedLSN != first.CreatedLSN {
		t.Fatalf("CreateMessageSlot with RecreateLost = %+v, %v", again, err)
	}
	if again.CreatedLSN == first.CreatedLSN {
		t.Errorf("the new slot's record keeps the lost one's position %s", first.CreatedLSN)
	}
	if err := outbox.Migrate(ctx, pool, cfg); err != nil {
		t.Fatalf("Migrate once the slot was created again: %v", err)
	}
}

// TestCreateMessageSlotRecordsExisting: a slot created before its record
// existed is recorded as it is, not reported lost.
func TestCreateMessageSlotRecordsExisting(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.NewPool(t)
	if err := outbox.Migrate(ctx, pool, &outbox.MigrateConfig{Messages: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `DELETE FROM txoutbox_message_slots`); err != nil {
		t.Fatal(err)
	}
	s, err := outbox.CreateMessageSlot(ctx, pool, nil)
	if err != nil || s.Created || s.Lost != nil || s.CreatedLSN == "" {
		t.Fatalf("CreateMessageSlot on an unrecorded slot = %+v, %v", s, err)
	}
}
