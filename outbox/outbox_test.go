package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/topics"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Wrap(m))
}

// queryCounter counts the statements a connection sends.
type queryCounter struct{ n atomic.Int64 }

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	q.n.Add(1)
	return ctx
}

func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// bundle is what most tests need: a migrated database, a pool that counts
// statements, and a client over the repository's topic_definitions.yaml.
type bundle struct {
	pool    *pgxpool.Pool
	client  *outbox.Client
	queries *queryCounter
}

func setup(t testing.TB, cfg *outbox.Config) *bundle {
	t.Helper()
	ctx := context.Background()
	url := pgtest.NewDB(t)
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	qc := &queryCounter{}
	pcfg.ConnConfig.Tracer = qc
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	schema := ""
	if cfg != nil {
		schema = cfg.Schema
	}
	if err := outbox.Migrate(ctx, pool, &outbox.MigrateConfig{Schema: schema}); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE invoices (id text PRIMARY KEY, amount_cents bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if cfg == nil {
		cfg = &outbox.Config{}
	}
	if cfg.Source == "" {
		cfg.Source = "billing-api"
	}
	client, err := outbox.New(pool, registry(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{pool: pool, client: client, queries: qc}
}

var (
	registryOnce sync.Once
	registryVal  *topics.Registry
	registryErr  error
)

func registry(t testing.TB) *topics.Registry {
	t.Helper()
	registryOnce.Do(func() { registryVal, registryErr = topics.Load("../topic_definitions.yaml") })
	if registryErr != nil {
		t.Fatal(registryErr)
	}
	return registryVal
}

func invoice(id string) map[string]any {
	return map[string]any{
		"id":           id,
		"customer":     map[string]any{"id": "cus-1", "name": "Ada Lovelace"},
		"amount_cents": 1250,
		"currency":     "EUR",
		"status":       "open",
		"due_date":     "2026-12-31",
	}
}

func countEvents(t testing.TB, db *pgxpool.Pool, where string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), "SELECT count(*) FROM txoutbox_events WHERE "+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestFlushCommitsWithBusinessRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)

	sess := b.client.UserSession("user-42", "job-commit")
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "INSERT INTO invoices VALUES ('inv-1', 1250)"); err != nil {
		t.Fatal(err)
	}
	if err := sess.Publish(ctx, "Created", "Invoice", invoice("inv-1")); err != nil {
		t.Fatal(err)
	}
	if err := sess.Publish(ctx, "paid", "invoice", map[string]any{"id": "inv-1", "amount_cents": 1250, "paid_at": "2026-11-23T10:00:00Z"}); err != nil {
		t.Fatal(err)
	}
	if err := sess.Flush(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if n := countEvents(t, b.pool, "true"); n != 0 {
		t.Fatalf("before commit another connection sees %d events, want 0", n)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	rows, err := b.pool.Query(ctx, `SELECT topic, category, entity, action, data::text, actor_id, actor_type, job_id, source, key, status
		FROM txoutbox_events ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Topic, Category, Entity, Action, Data, ActorID, ActorType, JobID, Source, Key, Status string
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d events, want 2", len(got))
	}
	want := row{"billing.InvoiceCreated", "billing", "Invoice", "Created", "", "user-42", "user", "job-commit", "billing-api", "inv-1", "pending"}
	got0 := got[0]
	got0.Data = ""
	if got0 != want {
		t.Errorf("first event:\n got  %+v\n want %+v", got0, want)
	}
	var data map[string]any
	if err := json.Unmarshal([]byte(got[0].Data), &data); err != nil || data["currency"] != "EUR" {
		t.Errorf("stored data = %s (%v), want the published invoice", got[0].Data, err)
	}
	if got[1].Topic != "billing.InvoicePaid" || got[1].Key != "inv-1" {
		t.Errorf("second event = %+v, want billing.InvoicePaid keyed inv-1", got[1])
	}
	if sess.Len() != 0 {
		t.Errorf("after Flush the session still buffers %d events", sess.Len())
	}
}

func TestFlushRolledBackLeavesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)

	sess := b.client.UserSession("user-42", "")
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO invoices VALUES ('inv-2', 1)"); err != nil {
		t.Fatal(err)
	}
	if err := sess.Publish(ctx, "Created", "Invoice", invoice("inv-2")); err != nil {
		t.Fatal(err)
	}
	if err := sess.Flush(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := countEvents(t, b.pool, "true"); n != 0 {
		t.Fatalf("after rollback %d events remain, want 0", n)
	}
}

func TestFlushIsOneRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)
	for _, n := range []int{1, 10, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			sess := b.client.ServiceSession("")
			for i := range n {
				if err := sess.Publish(ctx, "Created", "Invoice", invoice(fmt.Sprintf("inv-%d-%d", n, i))); err != nil {
					t.Fatal(err)
				}
			}
			tx, err := b.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			before := b.queries.n.Load()
			if err := sess.Flush(ctx, tx); err != nil {
				t.Fatal(err)
			}
			if got := b.queries.n.Load() - before; got != 1 {
				t.Errorf("Flush of %d events sent %d statements, want 1", n, got)
			}
			before = b.queries.n.Load()
			if err := sess.Flush(ctx, tx); err != nil {
				t.Fatal(err)
			}
			if got := b.queries.n.Load() - before; got != 0 {
				t.Errorf("Flush with nothing buffered sent %d statements, want 0", got)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if got := countEvents(t, b.pool, "job_id = $1", sess.JobID()); got != n {
				t.Errorf("committed %d events, want %d", got, n)
			}
		})
	}
}

func TestPublishRefusesBadEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, &outbox.Config{MaxEventBytes: 1024})
	sess := b.client.UserSession("user-42", "")

	var unknown *topics.UnknownTopicError
	if err := sess.Publish(ctx, "Exploded", "Invoice", invoice("inv-1")); !errors.As(err, &unknown) || !errors.Is(err, topics.ErrUnknownTopic) {
		t.Errorf("unknown action: err = %v, want *topics.UnknownTopicError", err)
	} else if unknown.Action != "Exploded" || unknown.Entity != "Invoice" {
		t.Errorf("unknown action error names %q %q", unknown.Entity, unknown.Action)
	}
	if err := sess.Publish(ctx, "Created", "Spaceship", map[string]any{"id": "x"}); !errors.As(err, &unknown) {
		t.Errorf("unknown entity: err = %v, want *topics.UnknownTopicError", err)
	}

	bad := invoice("inv-1")
	bad["customer"] = map[string]any{"id": "cus-1", "name": 7}
	var verr *topics.ValidationError
	err := sess.Publish(ctx, "Created", "Invoice", bad)
	if !errors.As(err, &verr) {
		t.Fatalf("invalid data: err = %v, want *topics.ValidationError", err)
	}
	if verr.Topic != "billing.InvoiceCreated" || verr.Action != "Created" || verr.Path != "/customer/name" {
		t.Errorf("validation error names topic %q action %q path %q, want billing.InvoiceCreated Created /customer/name", verr.Topic, verr.Action, verr.Path)
	}

	var encErr *outbox.EncodeError
	if err := sess.Publish(ctx, "Created", "Invoice", json.RawMessage(`{"id":`)); !errors.As(err, &encErr) {
		t.Errorf("malformed raw JSON: err = %v, want *outbox.EncodeError", err)
	}
	cyclic := map[string]any{"id": "inv-1"}
	cyclic["self"] = cyclic
	if err := sess.Publish(ctx, "Created", "Invoice", cyclic); !errors.As(err, &encErr) {
		t.Errorf("cyclic data: err = %v, want *outbox.EncodeError", err)
	}
	nan := invoice("inv-1")
	nan["amount_cents"] = math.NaN()
	if err := sess.Publish(ctx, "Created", "Invoice", nan); !errors.As(err, &encErr) {
		t.Errorf("NaN: err = %v, want *outbox.EncodeError", err)
	}
	huge := invoice("inv-1")
	huge["customer"] = map[string]any{"id": "cus-1", "name": string(make([]byte, 2048))}
	if err := sess.Publish(ctx, "Created", "Invoice", huge); !errors.Is(err, outbox.ErrEventTooLarge) {
		t.Errorf("oversize data: err = %v, want ErrEventTooLarge", err)
	}
	if err := sess.Publish(ctx, "Cancelled", "Invoice", map[string]any{}); !errors.As(err, &verr) {
		t.Errorf("empty object: err = %v, want *topics.ValidationError (bc-events needs at least one property)", err)
	}
	err = b.client.UserSession("abc", "").Publish(ctx, "Created", "Invoice", invoice("inv-1"))
	if want := `outbox: publish billing.InvoiceCreated: user actor: invalid actor id: "abc" has 3 characters, want at least 5`; !errors.Is(err, outbox.ErrInvalidActor) || err.Error() != want {
		t.Errorf("short actor id: err = %v, want ErrInvalidActor: %s", err, want)
	}
	if err := b.client.UserSession("user-42", "", outbox.WithTraceparent("00-bad")).Publish(ctx, "Created", "Invoice", invoice("inv-1")); !errors.Is(err, outbox.ErrInvalidTraceparent) {
		t.Errorf("bad traceparent: err = %v, want ErrInvalidTraceparent", err)
	}

	if sess.Len() != 0 {
		t.Fatalf("refused events were buffered: %d", sess.Len())
	}
	flushAndCommit(t, b.pool, sess)
	if n := countEvents(t, b.pool, "true"); n != 0 {
		t.Fatalf("%d refused events were written", n)
	}
}

func TestDedupeKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)

	publishAndCommit := func(sess *outbox.Session, ids ...string) {
		t.Helper()
		for _, id := range ids {
			if err := sess.Publish(ctx, "Created", "Invoice", invoice(id), outbox.WithDedupeKey("create:"+id)); err != nil {
				t.Fatal(err)
			}
		}
		tx, err := b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if err := sess.Flush(ctx, tx); err != nil {
			t.Fatalf("a repeated dedupe key must be a no-op, got %v", err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	publishAndCommit(b.client.ServiceSession(""), "inv-1", "inv-1", "inv-2")
	publishAndCommit(b.client.ServiceSession(""), "inv-1", "inv-3")
	if n := countEvents(t, b.pool, "true"); n != 3 {
		t.Fatalf("got %d events, want 3 (inv-1 once, inv-2, inv-3)", n)
	}
}

func TestConcurrentPublish(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)
	sess := b.client.UserSession("user-42", "")

	const goroutines, each = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*each)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				errs <- sess.Publish(ctx, "Created", "Invoice", invoice(fmt.Sprintf("inv-%d-%d", g, i)))
			}
		}()
	}
	// Flush concurrently with the publishers: every event is written exactly once.
	for range 3 {
		flushAndCommit(t, b.pool, sess)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	flushAndCommit(t, b.pool, sess)
	if n := countEvents(t, b.pool, "true"); n != goroutines*each {
		t.Fatalf("got %d events, want %d", n, goroutines*each)
	}
	if n := countEvents(t, b.pool, "id IN (SELECT id FROM txoutbox_events GROUP BY id HAVING count(*) > 1)"); n != 0 {
		t.Fatalf("%d events were written twice", n)
	}
}

func TestRollbackDropsBuffer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)
	sess := b.client.UserSession("user-42", "")
	if err := sess.Publish(ctx, "Created", "Invoice", invoice("inv-1")); err != nil {
		t.Fatal(err)
	}
	if got := sess.Unflushed(); len(got) != 1 || got[0].Topic != "billing.InvoiceCreated" {
		t.Fatalf("Unflushed = %+v", got)
	}
	sess.Rollback()
	if sess.Len() != 0 {
		t.Fatalf("after Rollback %d events are buffered", sess.Len())
	}
}

func TestPublishImmediately(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)
	var woken atomic.Int32
	remove := b.client.OnCommit(func() { woken.Add(1) })
	defer remove()

	sess := b.client.ServiceSession("nightly-sweep", outbox.PublishImmediately())
	if err := sess.Publish(ctx, "Overdue", "Invoice", map[string]any{"id": "inv-9", "days_overdue": 3}); err != nil {
		t.Fatal(err)
	}
	if n := countEvents(t, b.pool, "job_id = 'nightly-sweep' AND actor_type = 'service' AND actor_id = 'billing-api'"); n != 1 {
		t.Fatalf("publish-immediately wrote %d rows, want 1", n)
	}
	if sess.Len() != 0 {
		t.Fatal("publish-immediately buffered the event")
	}
	if woken.Load() != 1 {
		t.Fatalf("OnCommit hook ran %d times, want 1: the write committed on its own", woken.Load())
	}
}

// TestOnCommit checks that OnCommit hooks, and those of its deprecated
// name OnFlush, run once per committed transaction, when its events are
// visible to other connections, and never at Flush or for a rollback.
func TestOnCommit(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t, nil)
	var visible, viaOnFlush []int // events another connection saw as each hook ran
	removeCommit := b.client.OnCommit(func() { visible = append(visible, countEvents(t, b.pool, "true")) })
	removeFlush := b.client.OnFlush(func() { viaOnFlush = append(viaOnFlush, countEvents(t, b.pool, "true")) }) // deprecated, still works
	sess := b.client.UserSession("user-42", "")
	flush := func(ids ...string) pgx.Tx {
		t.Helper()
		tx, err := b.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
		for _, id := range ids {
			if err := sess.Publish(ctx, "Created", "Invoice", invoice(id)); err != nil {
				t.Fatal(err)
			}
			if err := sess.Flush(ctx, tx); err != nil {
				t.Fatal(err)
			}
		}
		return tx
	}
	check := func(step string, want ...int) {
		t.Helper()
		if fmt.Sprint(visible) != fmt.Sprint(want) || fmt.Sprint(viaOnFlush) != fmt.Sprint(want) {
			t.Fatalf("%s: OnCommit hook saw %v, OnFlush hook %v; want %v", step, visible, viaOnFlush, want)
		}
	}

	tx := flush("inv-1")
	check("flushed, not committed")
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	check("committed, Committed not called yet")
	sess.Committed()
	check("Committed", 1)

	tx = flush("inv-2", "inv-3")
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	sess.Committed()
	sess.Committed()
	check("two flushes, one commit, Committed twice", 1, 3)

	tx = flush("inv-4")
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	sess.Rollback()
	sess.Committed()
	check("rolled back", 1, 3)

	sess.Committed() // nothing flushed at all
	check("nothing flushed", 1, 3)

	removeCommit()
	removeFlush()
	tx = flush("inv-5")
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	sess.Committed()
	check("hooks removed", 1, 3)
}

func TestMigrateConcurrentlyAndAgain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = outbox.Migrate(ctx, pool, nil)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migration %d: %v", i, err)
		}
	}
	if err := outbox.Migrate(ctx, pool, nil); err != nil {
		t.Fatalf("migrating again: %v", err)
	}
	ms, err := fs.Glob(outbox.Migrations(), "*.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	var applied int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM txoutbox_migrations").Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if applied != len(ms) {
		t.Fatalf("%d migrations recorded, want %d", applied, len(ms))
	}
}

func TestSchemaNameIsQuoted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	schema := `Out"box; DROP TABLE invoices; --`
	b := setup(t, &outbox.Config{Schema: schema})
	sess := b.client.ServiceSession("")
	if err := sess.Publish(ctx, "Created", "Invoice", invoice("inv-1")); err != nil {
		t.Fatal(err)
	}
	tx, err := b.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := sess.Flush(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.pool.QueryRow(ctx, "SELECT count(*) FROM "+outboxsql.Table(schema, outboxsql.TableEvents)).Scan(&n); err != nil || n != 1 {
		t.Fatalf("events in the quoted schema: %d, %v; want 1", n, err)
	}
	if countInvoicesTable(t, b.pool) != 1 {
		t.Fatal("the invoices table is gone")
	}

	for _, bad := range []string{" padded", string(make([]byte, 64)), "a\x00b"} {
		if _, err := outbox.New(b.pool, registry(t), &outbox.Config{Source: "billing-api", Schema: bad}); !errors.Is(err, outbox.ErrInvalidConfig) {
			t.Errorf("schema %q: err = %v, want ErrInvalidConfig", bad, err)
		}
	}
}

func countInvoicesTable(t *testing.T, db *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := db.QueryRow(context.Background(), "SELECT count(*) FROM pg_tables WHERE tablename = 'invoices'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestNewValidatesConfig(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	if _, err := outbox.New(nil, reg, &outbox.Config{Source: "api"}); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("short Source: err = %v, want ErrInvalidConfig", err)
	}
	if _, err := outbox.New(nil, nil, nil); !errors.Is(err, outbox.ErrInvalidConfig) {
		t.Errorf("nil registry: err = %v, want ErrInvalidConfig", err)
	}
}

func TestFromContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	if got, ok := outbox.FromContext(ctx); got != nil || ok {
		t.Fatalf("got %p, %v; want no session", got, ok)
	}
	if got, ok := outbox.FromContext(outbox.NewContext(ctx, nil)); got != nil || ok {
		t.Fatalf("nil session stored: got %p, %v; want no session", got, ok)
	}
	client, err := outbox.New(nil, registry(t), &outbox.Config{Source: "billing-api"})
	if err != nil {
		t.Fatal(err)
	}
	sess := client.UserSession("user-42", "job-1")
	got, ok := outbox.FromContext(outbox.NewContext(ctx, sess))
	if !ok || got != sess {
		t.Fatalf("got %p, %v; want the stored session", got, ok)
	}
}

// flushAndCommit flushes sess in a transaction of its own and commits it.
func flushAndCommit(t testing.TB, pool *pgxpool.Pool, sess *outbox.Session) {
	t.Helper()
	noop := func(context.Context, pgx.Tx) error { return nil }
	if err := outbox.InTx(context.Background(), pool, sess, noop); err != nil {
		t.Fatal(err)
	}
}
