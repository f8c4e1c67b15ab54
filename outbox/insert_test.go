package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
)

// TestFlushStoresEveryColumn flushes events in every shape the insert
// statement takes — one event or many, one topic or several, with and
// without dedupe keys and optional fields, more events than fit a VALUES
// list — under every pgx query execution mode, and reads each row back.
func TestFlushStoresEveryColumn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)
	cause := uuid.Must(uuid.NewV7()).String()
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

	type publish struct {
		paid bool // billing.InvoicePaid instead of billing.InvoiceCreated
		opts []outbox.PublishOption
	}
	many := func(n int, mixed bool) []publish {
		ps := make([]publish, n)
		for i := range ps {
			ps[i].paid = mixed && i%3 == 1
			if i%4 == 2 {
				ps[i].opts = []outbox.PublishOption{outbox.WithDedupeKey(fmt.Sprint("d-", i)), outbox.WithCausation(cause)}
			}
			if i%5 == 3 {
				ps[i].opts = append(ps[i].opts, outbox.WithTarget(outbox.Target{Collection: "c1", Project: fmt.Sprint("p-", i)}))
			}
		}
		return ps
	}
	cases := []struct {
		name     string
		sessOpts []outbox.SessionOption
		events   []publish
	}{
		{"one plain", nil, many(1, false)},
		{"one with every option", []outbox.SessionOption{outbox.WithTraceparent(tp), outbox.WithTenant("acme")},
			[]publish{{opts: []outbox.PublishOption{outbox.WithDedupeKey("d"), outbox.WithCausation(cause), outbox.WithKey("k"),
				outbox.WithTarget(outbox.Target{Collection: "c1", Project: "p1", Layout: "l1"})}}}},
		{"one topic", nil, []publish{{}, {}, {}}},
		{"two topics", []outbox.SessionOption{outbox.WithTenant("acme")}, many(5, true)},
		{"more than a VALUES list", []outbox.SessionOption{outbox.WithTraceparent(tp)}, many(70, true)},
	}
	modes := []pgx.QueryExecMode{
		pgx.QueryExecModeCacheStatement, pgx.QueryExecModeCacheDescribe, pgx.QueryExecModeDescribeExec,
		pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol,
	}
	for _, mode := range modes {
		pool := poolWithMode(t, b.pool, mode)
		for ci, c := range cases {
			t.Run(fmt.Sprintf("%s/%s", mode, c.name), func(t *testing.T) {
				sess := b.client.UserSession("user-42", "", c.sessOpts...)
				for i, p := range c.events {
					id := fmt.Sprintf("inv-%s-%d-%d", mode, ci, i)
					var err error
					if p.paid {
						err = sess.Publish(ctx, "Paid", "Invoice", map[string]any{"id": id, "amount_cents": i, "paid_at": "2026-11-23T10:00:00Z"}, p.opts...)
					} else {
						err = sess.Publish(ctx, "Created", "Invoice", invoice(id), p.opts...)
					}
					if err != nil {
						t.Fatal(err)
					}
				}
				want := sess.Unflushed()
				tx, err := pool.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback(ctx)
				if err := sess.Flush(ctx, tx); err != nil {
					t.Fatal(err)
				}
				for _, w := range want {
					checkRow(ctx, t, tx, w)
				}
			})
		}
	}
}

func poolWithMode(t *testing.T, base *pgxpool.Pool, mode pgx.QueryExecMode) *pgxpool.Pool {
	t.Helper()
	cfg := base.Config()
	cfg.ConnConfig.DefaultQueryExecMode = mode
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// checkRow reads the row of event w and compares every column with it.
func checkRow(ctx context.Context, t *testing.T, tx pgx.Tx, w outbox.Event) {
	t.Helper()
	var (
		got                                    outbox.Event
		data                                   string
		traceparent, tenant, causation, dedupe *string
		collection, project, layout            *string
		published                              time.Time
	)
	err := tx.QueryRow(ctx, `SELECT topic, category, entity, action, data::text, actor_id, actor_type, job_id, source, key,
		traceparent, tenant, causation_id::text, dedupe_key, published_at, target_collection, target_project, target_layout
		FROM txoutbox_events WHERE id = $1`, w.ID).Scan(
		&got.Topic, &got.Category, &got.Entity, &got.Action, &data, &got.ActorID, &got.ActorType, &got.JobID, &got.Source, &got.Key,
		&traceparent, &tenant, &causation, &dedupe, &published, &collection, &project, &layout)
	if err != nil {
		t.Fatalf("event %s: %v", w.ID, err)
	}
	deref := func(name string, p *string, want string) {
		switch {
		case want == "" && p != nil:
			t.Errorf("event %s: %s = %q, want NULL", w.ID, name, *p)
		case want != "" && (p == nil || *p != want):
			t.Errorf("event %s: %s = %v, want %q", w.ID, name, p, want)
		}
	}
	deref("traceparent", traceparent, w.Traceparent)
	deref("tenant", tenant, w.Tenant)
	deref("causation_id", causation, w.CausationID)
	deref("dedupe_key", dedupe, w.DedupeKey)
	deref("target_collection", collection, w.Target.Collection)
	deref("target_project", project, w.Target.Project)
	deref("target_layout", layout, w.Target.Layout)
	if data != string(w.Data) {
		t.Errorf("event %s: data = %s, want %s", w.ID, data, w.Data)
	}
	if !published.Equal(w.Time.Truncate(time.Microsecond)) {
		t.Errorf("event %s: published_at = %s, want %s", w.ID, published, w.Time)
	}
	if got.Topic != w.Topic || got.Category != w.Category || got.Entity != w.Entity || got.Action != w.Action ||
		got.ActorID != w.ActorID || got.ActorType != w.ActorType || got.JobID != w.JobID || got.Source != w.Source || got.Key != w.Key {
		t.Errorf("event %s: stored %+v, want %+v", w.ID, got, w)
	}
}
