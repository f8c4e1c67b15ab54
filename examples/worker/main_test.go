package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/examples/internal/exampleenv"
	"github.com/txoutbox/txoutbox/examples/internal/exampletest"
	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Wrap(m))
}

var today = time.Date(2026, 11, 23, 3, 0, 0, 0, time.UTC)

// seed inserts n open invoices due days before today, named prefix-0001...
func seed(t *testing.T, pool *pgxpool.Pool, prefix string, n, days int) {
	t.Helper()
	_, err := pool.Exec(t.Context(), `INSERT INTO invoices (id, customer_id, customer_name, amount_cents, currency, status, due_date)
		SELECT $1 || lpad(i::text, 4, '0'), 'cus-7', 'Ada Lovelace', 1250, 'EUR', 'open', $2::date - $3::int
		FROM generate_series(1, $4) AS i`, prefix+"-", today.Format(time.DateOnly), days, n)
	if err != nil {
		t.Fatal(err)
	}
}

func open(t *testing.T) *exampleenv.Env {
	t.Helper()
	getenv, _ := exampletest.Env(t)
	env, err := exampleenv.Open(t.Context(), getenv, "billing-worker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	return env
}

func TestSweep(t *testing.T) {
	for name, sweep := range map[string]func(context.Context, *pgxpool.Pool, *outbox.Client, string, time.Time) (int, error){
		"flush":     sweepFlush,
		"immediate": sweepImmediate,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := open(t)
			seed(t, env.Pool, "late", 2*batchSize+50, 3) // three batches
			seed(t, env.Pool, "due-today", 5, 0)         // not overdue yet
			_, err := env.Pool.Exec(t.Context(), `UPDATE invoices SET status = 'paid' WHERE id = 'late-0001'`)
			if err != nil {
				t.Fatal(err)
			}

			n, err := sweep(t.Context(), env.Pool, env.Client, "job-nightly", today)
			if err != nil {
				t.Fatal(err)
			}
			const want = 2*batchSize + 49
			if n != want {
				t.Errorf("marked %d invoices, want %d", n, want)
			}
			rows := exampletest.Rows(t, env.Pool)
			keys := map[string]bool{}
			for _, r := range rows {
				if r.Topic != "billing.InvoiceOverdue" || r.ActorID != "billing-worker" || r.ActorType != outbox.ActorService || r.JobID != "job-nightly" {
					t.Fatalf("row %+v: want InvoiceOverdue by the service in job-nightly", r)
				}
				keys[r.Key] = true
			}
			if len(rows) != want || len(keys) != want || keys["late-0001"] || keys["due-today-0001"] {
				t.Errorf("%d events for %d invoices; want one for each overdue open invoice", len(rows), len(keys))
			}
			var days int
			err = env.Pool.QueryRow(t.Context(), `SELECT (data->>'days_overdue')::int FROM txoutbox_events WHERE key = 'late-0002'`).Scan(&days)
			if err != nil || days != 3 {
				t.Errorf("days_overdue = %d (%v), want 3", days, err)
			}

			// A second run finds nothing left to do.
			if n, err := sweep(t.Context(), env.Pool, env.Client, "job-again", today); n != 0 || err != nil {
				t.Errorf("second sweep: %d, %v; want 0, nil", n, err)
			}
		})
	}
}

func TestRun(t *testing.T) {
	getenv, _ := exampletest.Env(t)
	var out bytes.Buffer
	if err := run(t.Context(), []string{"-style", "immediate"}, getenv, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), ": 0 invoices marked overdue") {
		t.Errorf("output %q", out.String())
	}
	if err := run(t.Context(), []string{"-style", "eventually"}, getenv, &out); err == nil || !strings.Contains(err.Error(), "-style") {
		t.Errorf("an unknown style: %v", err)
	}
}
