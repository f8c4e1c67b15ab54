// Package eventstest fills an outbox with known events for the tests of
// packages that read it (status, inspect, replay).
package eventstest

import (
	"context"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/topics"
)

// PublishOverdue commits n billing.InvoiceOverdue events, keys inv-0 ...
// inv-(n-1), into the migrated outbox of pool, in one transaction, and
// returns their ids in insert order. The outbox must hold no other events.
func PublishOverdue(t testing.TB, pool *pgxpool.Pool, n int) []uuid.UUID {
	t.Helper()
	ctx := t.Context()
	_, file, _, _ := runtime.Caller(0)
	reg, err := topics.Load(filepath.Join(filepath.Dir(file), "..", "..", "topic_definitions.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	client, err := outbox.New(pool, reg, &outbox.Config{Source: "billing-api"})
	if err != nil {
		t.Fatal(err)
	}
	sess := client.ServiceSession("job-1")
	err = outbox.InTx(ctx, pool, sess, func(ctx context.Context, _ pgx.Tx) error {
		for i := range n {
			if err := sess.Publish(ctx, "Overdue", "Invoice", map[string]any{"id": "inv-" + strconv.Itoa(i), "days_overdue": i + 1}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, "SELECT id FROM txoutbox_events ORDER BY seq")
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil || len(ids) != n {
		t.Fatalf("PublishOverdue: %d rows, err %v; want %d", len(ids), err, n)
	}
	return ids
}
