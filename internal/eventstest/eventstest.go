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

	"github.com/txoutbox/txoutbox/internal/outboxsql"
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

// SeedStates publishes six events with PublishOverdue and puts each in one
// of the states txoutbox status shows: inv-0 delivered, inv-1 dead, inv-2
// retrying, inv-3 blocked (behind a dead copy of itself, a seventh event),
// inv-4 in flight (its partition leased to relay "relay-a", pid 42) and
// inv-5 unclaimed. It returns the ids in each status and state, in insert
// order: "pending" holds inv-2 to inv-5, "dead" inv-1 and the copy.
func SeedStates(t testing.TB, pool *pgxpool.Pool) map[string][]uuid.UUID {
	t.Helper()
	ctx := t.Context()
	ids := PublishOverdue(t, pool, 6)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec("UPDATE txoutbox_events SET status = 'delivered', delivered_at = now() WHERE id = $1", ids[0])
	exec("UPDATE txoutbox_events SET status = 'dead', attempts = 10, last_error = 'HTTP 422' WHERE id = $1", ids[1])
	exec("UPDATE txoutbox_events SET attempts = 1, next_attempt_at = now() + interval '1 hour' WHERE id = $1", ids[2])
	var deadCopy uuid.UUID
	if err := pool.QueryRow(ctx, `INSERT INTO txoutbox_events (id, topic, category, entity, action, data, actor_id, actor_type, job_id, source, key, published_at, status)
		SELECT gen_random_uuid(), topic, category, entity, action, data, actor_id, actor_type, job_id, source, key, published_at, 'dead'
		FROM txoutbox_events WHERE id = $1 RETURNING id`, ids[3]).Scan(&deadCopy); err != nil {
		t.Fatal(err)
	}
	exec(`UPDATE txoutbox_partitions SET owner = 'relay-a', lease_until = now() + interval '1 minute'
		WHERE part = (SELECT part FROM txoutbox_events WHERE id = $1)`, ids[4])
	exec(`INSERT INTO txoutbox_relays (id, hostname, pid) VALUES ('relay-a', 'host', 42)`)
	// inv-5 must not share inv-4's partition for the states to differ.
	var samePart bool
	if err := pool.QueryRow(ctx, `SELECT (SELECT part FROM txoutbox_events WHERE id = $1) = (SELECT part FROM txoutbox_events WHERE id = $2)`,
		ids[4], ids[5]).Scan(&samePart); err != nil {
		t.Fatal(err)
	}
	if samePart {
		t.Fatal("SeedStates: inv-4 and inv-5 share a partition; pick other keys")
	}
	return map[string][]uuid.UUID{
		outboxsql.StatusDelivered: {ids[0]},
		outboxsql.StatusDead:      {ids[1], deadCopy},
		outboxsql.StatusPending:   ids[2:6],
		outboxsql.StateRetrying:   {ids[2]},
		outboxsql.StateBlocked:    {ids[3]},
		outboxsql.StateInFlight:   {ids[4]},
		outboxsql.StateUnclaimed:  {ids[5]},
	}
}
