package relay

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestEndToEnd runs writers and three relays at once. Each writer
// transaction updates an entity row first, as a real handler does, and
// publishes the entity's new sequence number; a tenth of them roll back.
// Every committed event must arrive exactly once, none from a rolled-back
// transaction, and each key's sequence numbers in order with no gap.
func TestEndToEnd(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	ctx := t.Context()
	if _, err := pool.Exec(ctx, `CREATE TABLE entity (key text PRIMARY KEY, seq int NOT NULL DEFAULT 0);
		INSERT INTO entity (key) SELECT 'e' || i FROM generate_series(0, 49) i`); err != nil {
		t.Fatal(err)
	}

	sink := &recordingSink{}
	for range 3 {
		startRelay(t, pool, sink, &Config{BatchSize: 50, LeaseTTL: 3 * time.Second})
	}

	const writers, txsPerWriter = 8, 150
	var mu sync.Mutex
	committed := make(map[string]bool)
	var rolledBack []string
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range txsPerWriter {
				id, commit, err := writeEvent(ctx, pool, fmt.Sprintf("e%d", rand.IntN(50)), rand.IntN(10) > 0)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if commit {
					committed[id] = true
				} else {
					rolledBack = append(rolledBack, id)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	waitFor(t, 30*time.Second, fmt.Sprintf("%d committed events", len(committed)), func() bool {
		return sink.distinct() >= len(committed)
	})
	got := sink.delivered()
	for _, d := range got {
		if !committed[d.ID] {
			t.Fatalf("event %s delivered but never committed", d.ID)
		}
	}
	if len(got) != len(committed) {
		t.Errorf("%d deliveries of %d events: duplicates without a crash", len(got), len(committed))
	}
	checkOrder(t, got)
	next := make(map[string]int)
	for _, d := range got {
		if d.N != next[d.Key]+1 {
			t.Fatalf("key %s: got %d after %d", d.Key, d.N, next[d.Key])
		}
		next[d.Key] = d.N
	}
	t.Logf("%d events committed, %d rolled back, %d sink calls", len(committed), len(rolledBack), sink.callCount())
}

// writeEvent runs one writer transaction on entity key: bump the entity's
// sequence number, publish it, then commit or roll back. It returns the
// event's id.
func writeEvent(ctx context.Context, pool *pgxpool.Pool, key string, commit bool) (string, bool, error) {
	id := uuid.Must(uuid.NewV7())
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var seq int
		if err := tx.QueryRow(ctx, `UPDATE entity SET seq = seq + 1 WHERE key = $1 RETURNING seq`, key).Scan(&seq); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO txoutbox_events
			(id, topic, category, entity, action, data, actor_id, actor_type, job_id, source, key, published_at)
			VALUES ($1, 'billing.InvoicePaid', 'billing', 'Invoice', 'Paid', json_build_object('key', $2::text, 'n', $3::int),
				'u', 'user', 'j', 'test', $2, now())`, id, key, seq); err != nil {
			return err
		}
		if !commit {
			return errRollback
		}
		return nil
	})
	if err == errRollback {
		err = nil
	}
	if err != nil {
		return "", false, fmt.Errorf("write event: %w", err)
	}
	return id.String(), commit, nil
}

var errRollback = fmt.Errorf("roll back")
