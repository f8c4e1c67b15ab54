package bench

import (
	"testing"

	"github.com/txoutbox/txoutbox/internal/pgtest"
)

// TestSchemaDropLeavesNothing: a scenario's schema takes with it what it
// made outside the schema, the publication of migration 008 and the
// replication slot of message storage, which would otherwise outlive it on a
// --database-url server (the slot holding back WAL for good).
func TestSchemaDropLeavesNothing(t *testing.T) {
	ctx := t.Context()
	e, err := openEnv(ctx, (&Config{DatabaseURL: pgtest.NewDB(t), Logger: testLogger(t)}).withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	count := func() (pubs, slots int) {
		t.Helper()
		if err := e.admin.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_publication),
			(SELECT count(*) FROM pg_replication_slots WHERE database = current_database())`).Scan(&pubs, &slots); err != nil {
			t.Fatal(err)
		}
		return pubs, slots
	}
	s, err := e.newSchema(ctx, "drop")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.createMessageSlot(ctx); err != nil {
		s.drop()
		t.Fatal(err)
	}
	if pubs, slots := count(); pubs != 1 || slots != 1 {
		t.Errorf("before drop: %d publications, %d slots, want 1 and 1", pubs, slots)
	}
	s.drop()
	if pubs, slots := count(); pubs != 0 || slots != 0 {
		t.Errorf("after drop: %d publications, %d slots left, want none", pubs, slots)
	}
}
