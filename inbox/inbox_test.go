package inbox_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/inbox"
	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Wrap(m))
}

// env is a fresh database with the inbox table and an effects table: the
// consumer's business row per event, whose counter each processing adds 1
// to in the inbox's transaction.
type env struct {
	pool  *pgxpool.Pool
	inbox *inbox.Inbox
}

func newEnv(t *testing.T, events int) *env {
	t.Helper()
	ctx := t.Context()
	cfg, err := pgxpool.ParseConfig(pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 10
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := inbox.Migrate(ctx, pool, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE effects (event_id text PRIMARY KEY, applied int NOT NULL DEFAULT 0)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO effects (event_id) SELECT 'evt-' || i FROM generate_series(0, $1 - 1) i`, events); err != nil {
		t.Fatal(err)
	}
	ib, err := inbox.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &env{pool: pool, inbox: ib}
}

func eventID(i int) string { return fmt.Sprintf("evt-%d", i) }

// deliver processes one delivery of eventID as a consumer does: Once, the
// effect, and the commit, all in one transaction; fail rolls the
// transaction back after the effect, as a handler error would.
func (e *env) deliver(ctx context.Context, consumer, eventID string, fail bool) (first bool, err error) {
	err = pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		if first, err = e.inbox.Once(ctx, tx, consumer, eventID); err != nil || !first {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE effects SET applied = applied + 1 WHERE event_id = $1`, eventID); err != nil {
			return err
		}
		if fail {
			return errHandler
		}
		return nil
	})
	return first, err
}

var errHandler = errors.New("handler failed")

// applied returns each event's applied counter.
func (e *env) applied(t *testing.T) map[string]int {
	t.Helper()
	rows, _ := e.pool.Query(t.Context(), `SELECT event_id, applied FROM effects`)
	out := map[string]int{}
	var id string
	var n int
	if _, err := pgx.ForEachRow(rows, []any{&id, &n}, func() error { out[id] = n; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestConcurrentDuplicates delivers each of 500 events 3 times from 8
// goroutines, the copies of an event handed out back to back so that they
// race each other, and checks each event's effect was applied exactly once
// and exactly one delivery of each was told it was the first.
func TestConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	const events, copies, workers = 500, 3, 8
	e := newEnv(t, events)
	ctx := t.Context()

	deliveries := make(chan string)
	firsts := make([]atomic.Int32, events)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for id := range deliveries {
				first, err := e.deliver(ctx, "billing-projector", id, false)
				if err != nil {
					errs <- err
					return
				}
				if first {
					var i int
					fmt.Sscanf(id, "evt-%d", &i)
					firsts[i].Add(1)
				}
			}
		})
	}
feed:
	for i := range events {
		for range copies {
			select {
			case deliveries <- eventID(i):
			case err := <-errs:
				t.Error(err)
				break feed
			}
		}
	}
	close(deliveries)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	applied := e.applied(t)
	for i := range events {
		if n := applied[eventID(i)]; n != 1 {
			t.Errorf("%s applied %d times, want once", eventID(i), n)
		}
		if n := firsts[i].Load(); n != 1 {
			t.Errorf("%s: %d deliveries were told they were first, want 1", eventID(i), n)
		}
	}
	var recorded int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM `+inbox.Table).Scan(&recorded); err != nil {
		t.Fatal(err)
	}
	if recorded != events {
		t.Errorf("%d ids recorded, want %d", recorded, events)
	}
}

// TestRollbackForgets checks that a delivery whose transaction rolls back
// leaves no id behind, so the redelivery runs the handler again, and that
// consumers are independent.
func TestRollbackForgets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	ctx := t.Context()
	id := eventID(0)

	if first, err := e.deliver(ctx, "projector", id, true); !first || !errors.Is(err, errHandler) {
		t.Fatalf("failing delivery: first %v, err %v; want true, the handler's error", first, err)
	}
	if got := e.applied(t)[id]; got != 0 {
		t.Fatalf("the rolled-back effect shows: applied %d", got)
	}
	for i, want := range []bool{true, false, false} {
		first, err := e.deliver(ctx, "projector", id, false)
		if err != nil || first != want {
			t.Errorf("redelivery %d: first %v, err %v; want %v", i, first, err, want)
		}
	}
	if first, err := e.deliver(ctx, "mailer", id, false); err != nil || !first {
		t.Errorf("another consumer: first %v, err %v; want true", first, err)
	}
	if got := e.applied(t)[id]; got != 2 {
		t.Errorf("applied %d times, want once per consumer (2)", got)
	}
}

// TestWaitsForTheFirst checks the race's two outcomes directly: a second
// delivery of an event whose first transaction is still open waits at
// Once, then is a duplicate when the first commits and the first when it
// rolls back.
func TestWaitsForTheFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	ctx := t.Context()
	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprintf("commit=%v", commit), func(t *testing.T) {
			id := fmt.Sprintf("evt-commit-%v", commit)
			tx, err := e.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if first, err := e.inbox.Once(ctx, tx, "projector", id); err != nil || !first {
				t.Fatalf("first delivery: %v, %v", first, err)
			}
			type result struct {
				first bool
				err   error
			}
			second := make(chan result, 1)
			go func() {
				first, err := e.deliver(ctx, "projector", id, false)
				second <- result{first, err}
			}()
			waitForLockWait(t, e.pool)
			if commit {
				err = tx.Commit(ctx)
			} else {
				err = tx.Rollback(ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
			r := <-second
			if r.err != nil || r.first == commit {
				t.Errorf("second delivery after the first's %s: first %v, err %v; want %v",
					map[bool]string{true: "commit", false: "rollback"}[commit], r.first, r.err, !commit)
			}
		})
	}
}

// waitForLockWait waits until a session of the database waits on a lock:
// the second delivery has reached Once and blocks there. Bounded at 30s.
func waitForLockWait(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var waiting bool
		err := pool.QueryRow(t.Context(), `SELECT EXISTS (SELECT FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock')`).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting {
			return
		}
	}
	t.Fatal("the second delivery never waited on the first's lock")
}

// TestPrune checks that Prune deletes the ids older than its age, of every
// consumer and across several batches, keeps the others, and that a pruned
// id is processed again.
func TestPrune(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	ctx := t.Context()
	const old = inbox.PruneBatch + 50 // more than one statement's worth
	if _, err := e.pool.Exec(ctx, `INSERT INTO `+inbox.Table+` (consumer, event_id, processed_at)
		SELECT CASE WHEN i % 2 = 0 THEN 'projector' ELSE 'mailer' END, 'old-' || i, now() - interval '2 hours'
		FROM generate_series(1, $1) i`, old); err != nil {
		t.Fatal(err)
	}
	if _, err := e.pool.Exec(ctx, `INSERT INTO `+inbox.Table+` (consumer, event_id, processed_at) VALUES
		('projector', 'recent-1', now() - interval '59 minutes'), ('mailer', 'recent-2', now())`); err != nil {
		t.Fatal(err)
	}

	n, err := e.inbox.Prune(ctx, e.pool, time.Hour)
	if err != nil || n != old {
		t.Fatalf("Prune = %d, %v; want %d, nil", n, err, old)
	}
	rows, _ := e.pool.Query(ctx, `SELECT event_id FROM `+inbox.Table+` ORDER BY event_id`)
	left, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(left, " ") != "recent-1 recent-2" {
		t.Errorf("left after Prune: %v; want recent-1 recent-2", left)
	}
	if n, err := e.inbox.Prune(ctx, e.pool, time.Hour); err != nil || n != 0 {
		t.Errorf("second Prune = %d, %v; want 0, nil", n, err)
	}

	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if first, err := e.inbox.Once(ctx, tx, "projector", "old-2"); err != nil || !first {
		t.Errorf("Once on a pruned id = %v, %v; want true: it was forgotten", first, err)
	}
	if first, err := e.inbox.Once(ctx, tx, "projector", "recent-1"); err != nil || first {
		t.Errorf("Once on a kept id = %v, %v; want false", first, err)
	}

	for _, age := range []time.Duration{0, -time.Hour} {
		if _, err := e.inbox.Prune(ctx, e.pool, age); err == nil || !strings.Contains(err.Error(), "must be positive") {
			t.Errorf("Prune(%v) = %v; want an error", age, err)
		}
	}
}

// TestInvalid checks the typed errors for bad ids and config, and that a
// refused id runs no statement: the transaction stays usable.
func TestInvalid(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	ctx := t.Context()
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	for _, tc := range []struct{ consumer, id, want string }{
		{"", "evt-1", "the consumer is empty"},
		{"projector", "", "the event id is empty"},
		{"projector", strings.Repeat("x", inbox.MaxIDBytes+1), "the event id is 257 bytes; at most 256"},
		{"projector", "evt-\xff", "the event id is not UTF-8 text"},
		{"pro\x00jector", "evt-1", "the consumer is not UTF-8 text"},
	} {
		first, err := e.inbox.Once(ctx, tx, tc.consumer, tc.id)
		if first || !errors.Is(err, inbox.ErrInvalidID) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Once(%q, %q) = %v, %v; want ErrInvalidID saying %q", tc.consumer, tc.id, first, err, tc.want)
		}
	}
	if first, err := e.inbox.Once(ctx, tx, "projector", strings.Repeat("x", inbox.MaxIDBytes)); err != nil || !first {
		t.Errorf("Once with a %d-byte id after refused ones = %v, %v; want true", inbox.MaxIDBytes, first, err)
	}

	bad := &inbox.Config{Schema: strings.Repeat("s", 64)}
	if _, err := inbox.New(bad); !errors.Is(err, inbox.ErrInvalidConfig) || !strings.Contains(err.Error(), "Config.Schema") {
		t.Errorf("New with a 64-byte schema: %v; want ErrInvalidConfig naming Config.Schema", err)
	}
	if err := inbox.Migrate(ctx, e.pool, bad); !errors.Is(err, inbox.ErrInvalidConfig) {
		t.Errorf("Migrate with a 64-byte schema: %v; want ErrInvalidConfig", err)
	}
}

// TestSchemaBesideOutbox migrates the inbox into a schema that holds the
// outbox's tables too, twice, and uses it there: the two keep separate
// migration records.
func TestSchemaBesideOutbox(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	ctx := t.Context()
	cfg := &inbox.Config{Schema: "billing"}
	for range 2 {
		if err := outbox.Migrate(ctx, pool, &outbox.MigrateConfig{Schema: cfg.Schema}); err != nil {
			t.Fatal(err)
		}
		if err := inbox.Migrate(ctx, pool, cfg); err != nil {
			t.Fatal(err)
		}
	}
	ib, err := inbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		first, err := ib.Once(ctx, tx, "projector", "evt-1")
		if err == nil && !first {
			err = errors.New("not first")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM billing.txoutbox_inbox`).Scan(&n); err != nil || n != 1 {
		t.Errorf("billing.txoutbox_inbox holds %d rows (%v), want 1", n, err)
	}
}
