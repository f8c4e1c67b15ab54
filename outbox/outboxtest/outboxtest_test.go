package outboxtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outbox/outboxtest"
	"github.com/txoutbox/txoutbox/topics"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Wrap(m))
}

var (
	_ outboxtest.TB = (*testing.T)(nil)
	_ outboxtest.TB = (*testing.B)(nil)
	_ outboxtest.TB = (*testing.F)(nil)
)

// fakeT records the failures an assertion reports instead of ending the
// test, so that the failure paths can be checked.
type fakeT struct {
	failures []string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.failures = append(f.failures, fmt.Sprintf(format, args...))
}

// requireFails runs check with a fakeT and fails t unless check reported
// exactly one failure, whose message contains every one of parts. It
// returns the message.
func requireFails(t *testing.T, check func(outboxtest.TB), parts ...string) string {
	t.Helper()
	f := &fakeT{}
	check(f)
	if len(f.failures) != 1 {
		t.Fatalf("want one failure, got %d: %q", len(f.failures), f.failures)
	}
	for _, p := range parts {
		if !strings.Contains(f.failures[0], p) {
			t.Errorf("failure message lacks %q:\n%s", p, f.failures[0])
		}
	}
	return f.failures[0]
}

// bundle is a migrated database and a client over the repository's topic
// definitions.
type bundle struct {
	pool   *pgxpool.Pool
	client *outbox.Client
}

func setup(t *testing.T, schema string) *bundle {
	t.Helper()
	ctx := t.Context()
	pool := pgtest.NewPool(t)
	if err := outbox.Migrate(ctx, pool, &outbox.MigrateConfig{Schema: schema}); err != nil {
		t.Fatal(err)
	}
	return &bundle{pool: pool, client: newClient(t, pool, schema)}
}

func newClient(t *testing.T, pool *pgxpool.Pool, schema string) *outbox.Client {
	t.Helper()
	client, err := buildClient(pool, schema)
	if err != nil {
		t.Fatal(err)
	}
	return client
}

// buildClient returns a client over the repository's topic definitions,
// publishing as billing-api into the outbox table in schema.
func buildClient(pool *pgxpool.Pool, schema string) (*outbox.Client, error) {
	reg, err := topics.Load("../../topic_definitions.yaml")
	if err != nil {
		return nil, err
	}
	return outbox.New(pool, reg, &outbox.Config{Source: "billing-api", Schema: schema})
}

func invoice(id string) map[string]any {
	return map[string]any{
		"id":           id,
		"customer":     map[string]any{"id": "cus-7", "name": "Ada Lovelace"},
		"amount_cents": 1250,
		"currency":     "EUR",
		"status":       "open",
		"due_date":     "2026-12-31",
	}
}

func paid(id string) map[string]any {
	return map[string]any{"id": id, "amount_cents": 1250, "paid_at": "2026-11-23T10:00:00Z"}
}

// publish is one event for publishAll.
type publish struct {
	action string
	data   map[string]any
	opts   []outbox.PublishOption
}

// publishAll publishes events of the Invoice entity on sess and flushes
// them into tx.
func publishAll(t *testing.T, sess *outbox.Session, tx pgx.Tx, events ...publish) {
	t.Helper()
	for _, e := range events {
		if err := sess.Publish(t.Context(), e.action, "Invoice", e.data, e.opts...); err != nil {
			t.Fatal(err)
		}
	}
	if err := sess.Flush(t.Context(), tx); err != nil {
		t.Fatal(err)
	}
}

// begin starts a transaction rolled back when the test ends.
func begin(t *testing.T, pool *pgxpool.Pool) pgx.Tx {
	t.Helper()
	tx, err := pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}

func TestRequirePublishedBeforeAndAfterCommit(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t, "")
	tx := begin(t, b.pool)
	publishAll(t, b.client.UserSession("user-42", "job-1"), tx, publish{action: "Created", data: invoice("inv-1")})

	want := outboxtest.Want{Topic: "billing.InvoiceCreated", Key: "inv-1"}
	ev := outboxtest.RequirePublished(ctx, t, tx, want, nil)
	if ev.Key != "inv-1" || ev.ActorID != "user-42" || ev.ActorType != outbox.ActorUser || ev.JobID != "job-1" ||
		ev.Source != "billing-api" || ev.Entity != "Invoice" || ev.Action != "Created" || ev.Time.IsZero() {
		t.Errorf("RequirePublished returned %+v", ev)
	}
	var data map[string]any
	if err := json.Unmarshal(ev.Data, &data); err != nil || data["currency"] != "EUR" {
		t.Errorf("data %s: %v", ev.Data, err)
	}

	// Through the pool the uncommitted event is not there yet.
	requireFails(t, func(ft outboxtest.TB) { outboxtest.RequirePublished(ctx, ft, b.pool, want, nil) },
		`no event matches billing.InvoiceCreated key="inv-1"`, "txoutbox_events is empty",
		"visible only through it until it commits")

	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := outboxtest.RequirePublished(ctx, t, b.pool, want, nil); got.ID != ev.ID {
		t.Errorf("after commit: event %s, want %s", got.ID, ev.ID)
	}
}

// TestWantFields checks each field of Want against one event, both ways.
func TestWantFields(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t, "")
	cause := "0190a0a0-0000-7000-8000-000000000001"
	tx := begin(t, b.pool)
	publishAll(t, b.client.ThirdPartySession("stripe-webhooks", "job-9", outbox.WithTenant("acme")), tx, publish{
		action: "Paid", data: paid("inv-1"),
		opts: []outbox.PublishOption{outbox.WithCausation(cause), outbox.WithDedupeKey("pay-1"),
			outbox.WithTarget(outbox.Target{Collection: "acme", Project: "q4"})},
	})

	errOops := errors.New("oops")
	tests := []struct {
		name string
		want outboxtest.Want
		diff string // "" when the event matches
	}{
		{"topic only", outboxtest.Want{Topic: "billing.InvoicePaid"}, ""},
		{"any topic", outboxtest.Want{Key: "inv-1"}, ""},
		{"all fields", outboxtest.Want{
			Topic: "billing.InvoicePaid", Key: "inv-1", ActorType: outbox.ActorThirdParty, ActorID: "stripe-webhooks",
			JobID: "job-9", Tenant: "acme", Source: "billing-api", CausationID: cause, DedupeKey: "pay-1",
			Target: outbox.Target{Collection: "acme", Project: "q4"},
			Data:   map[string]any{"amount_cents": 1250.0}, DataFunc: func(json.RawMessage) error { return nil },
		}, ""},
		{"key", outboxtest.Want{Key: "inv-2"}, `key is "inv-1", want "inv-2"`},
		{"actor type", outboxtest.Want{ActorType: outbox.ActorUser}, `actor_type is "third-party", want "user"`},
		{"actor id", outboxtest.Want{ActorID: "user-42"}, `actor_id is "stripe-webhooks", want "user-42"`},
		{"job id", outboxtest.Want{JobID: "job-1"}, `job_id is "job-9", want "job-1"`},
		{"tenant", outboxtest.Want{Tenant: "globex"}, `tenant is "acme", want "globex"`},
		{"source", outboxtest.Want{Source: "payments"}, `source is "billing-api", want "payments"`},
		{"causation", outboxtest.Want{CausationID: "0190a0a0-0000-7000-8000-000000000002"}, `causation_id is "` + cause},
		{"dedupe key", outboxtest.Want{DedupeKey: "pay-2"}, `dedupe_key is "pay-1", want "pay-2"`},
		{"target", outboxtest.Want{Target: outbox.Target{Collection: "acme"}}, `target is "acme/q4", want "acme"`},
		{"data", outboxtest.Want{Data: json.RawMessage(`{"amount_cents": 999}`)}, "data/amount_cents is 1250, want 999"},
		{"data func", outboxtest.Want{DataFunc: func(json.RawMessage) error { return errOops }}, "DataFunc: oops"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { // not parallel: they share tx
			if tt.diff == "" {
				outboxtest.RequirePublished(ctx, t, tx, tt.want, nil)
				return
			}
			requireFails(t, func(ft outboxtest.TB) { outboxtest.RequirePublished(ctx, ft, tx, tt.want, nil) },
				"no event matches", "holds 1:", "billing.InvoicePaid key=\"inv-1\"", tt.diff)
		})
	}
}

func TestRequirePublishedMoreThanOne(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t, "")
	tx := begin(t, b.pool)
	publishAll(t, b.client.UserSession("user-42", "job-1"), tx,
		publish{action: "Created", data: invoice("inv-1")}, publish{action: "Created", data: invoice("inv-2")})

	requireFails(t, func(ft outboxtest.TB) {
		if ev := outboxtest.RequirePublished(ctx, ft, tx, outboxtest.Want{Topic: "billing.InvoiceCreated"}, nil); ev != nil {
			t.Errorf("returned %+v after failing", ev)
		}
	}, "2 events match billing.InvoiceCreated, want exactly one", `key="inv-1"`, `key="inv-2"`)
	outboxtest.RequirePublished(ctx, t, tx, outboxtest.Want{Topic: "billing.InvoiceCreated", Key: "inv-2"}, nil)
}

func TestRequireNotPublished(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t, "")
	tx := begin(t, b.pool)
	outboxtest.RequireNotPublished(ctx, t, tx, outboxtest.Want{}, nil) // an empty table
	publishAll(t, b.client.UserSession("user-42", "job-1"), tx, publish{action: "Created", data: invoice("inv-1")})

	outboxtest.RequireNotPublished(ctx, t, tx, outboxtest.Want{Topic: "billing.InvoicePaid"}, nil)
	outboxtest.RequireNotPublished(ctx, t, tx, outboxtest.Want{Topic: "billing.InvoiceCreated", Key: "inv-2"}, nil)
	outboxtest.RequireNotPublished(ctx, t, tx, outboxtest.Want{JobID: "job-2"}, nil)

	requireFails(t, func(ft outboxtest.TB) {
		outboxtest.RequireNotPublished(ctx, ft, tx, outboxtest.Want{JobID: "job-1"}, nil)
	}, `want no event matching (any topic) job_id="job-1", found 1:`,
		`1. billing.InvoiceCreated key="inv-1" actor=user:"user-42" job_id="job-1" data={"amount_cents":1250,`)
}

func TestRequirePublishedMany(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t, "")
	tx := begin(t, b.pool)
	sess := b.client.UserSession("user-42", "job-1")
	publishAll(t, sess, tx, publish{action: "Created", data: invoice("inv-1")}, publish{action: "Created", data: invoice("inv-2")})
	publishAll(t, sess, tx, publish{action: "Paid", data: paid("inv-1")})
	if err := b.client.UserSession("user-42", "job-2").Publish(ctx, "Created", "Customer",
		map[string]any{"id": "cus-7", "name": "Ada Lovelace", "email": "ada@example.com"}); err != nil {
		t.Fatal(err)
	}

	created := func(key string) outboxtest.Want { return outboxtest.Want{Topic: "billing.InvoiceCreated", Key: key} }
	paidWant := outboxtest.Want{Topic: "billing.InvoicePaid", Key: "inv-1", Data: map[string]any{"amount_cents": 1250}}

	got := outboxtest.RequirePublishedMany(ctx, t, tx, []outboxtest.Want{created("inv-1"), created("inv-2"), paidWant}, nil)
	if len(got) != 3 || got[2].Topic != "billing.InvoicePaid" {
		t.Fatalf("returned %+v", got)
	}
	// The topics named decide which events count: here only InvoicePaid.
	outboxtest.RequirePublishedMany(ctx, t, tx, []outboxtest.Want{paidWant}, nil)

	t.Run("order", func(t *testing.T) {
		requireFails(t, func(ft outboxtest.TB) {
			outboxtest.RequirePublishedMany(ctx, ft, tx, []outboxtest.Want{created("inv-2"), created("inv-1"), paidWant}, nil)
		}, "want 3 events of billing.InvoiceCreated, billing.InvoicePaid in insert order, found 3:",
			"1. billing.InvoiceCreated key=\"inv-1\"", `want billing.InvoiceCreated key="inv-2":`, `key is "inv-1", want "inv-2"`)
	})
	t.Run("not listed", func(t *testing.T) {
		requireFails(t, func(ft outboxtest.TB) {
			outboxtest.RequirePublishedMany(ctx, ft, tx, []outboxtest.Want{created("inv-1")}, nil)
		}, "want 1 event of billing.InvoiceCreated in insert order, found 2:",
			"2. billing.InvoiceCreated key=\"inv-2\"", "not in want")
	})
	t.Run("missing", func(t *testing.T) {
		requireFails(t, func(ft outboxtest.TB) {
			outboxtest.RequirePublishedMany(ctx, ft, tx, []outboxtest.Want{paidWant, {Topic: "billing.InvoicePaid", Key: "inv-2"}}, nil)
		}, "found 1:", "2. (none)", `want billing.InvoicePaid key="inv-2"`)
	})
	t.Run("any topic", func(t *testing.T) {
		requireFails(t, func(ft outboxtest.TB) {
			outboxtest.RequirePublishedMany(ctx, ft, tx, []outboxtest.Want{{JobID: "job-1"}}, nil)
		}, "want 1 event of any topic in insert order, found 3:")
	})
	t.Run("empty", func(t *testing.T) {
		requireFails(t, func(ft outboxtest.TB) { outboxtest.RequirePublishedMany(ctx, ft, tx, nil, nil) },
			"want is empty")
	})
}

func TestRequireOptsSchema(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t, "billing")
	tx := begin(t, b.pool)
	publishAll(t, b.client.ServiceSession("job-1"), tx, publish{action: "Created", data: invoice("inv-1")})

	opts := &outboxtest.RequireOpts{Schema: "billing"}
	outboxtest.RequirePublished(ctx, t, tx, outboxtest.Want{Topic: "billing.InvoiceCreated", ActorID: "billing-api"}, opts)

	requireFails(t, func(ft outboxtest.TB) {
		outboxtest.RequirePublished(ctx, ft, b.pool, outboxtest.Want{Topic: "billing.InvoiceCreated"}, nil)
	}, "RequirePublished: read txoutbox_events:", "does not exist", "run outbox.Migrate", "RequireOpts.Schema")

	requireFails(t, func(ft outboxtest.TB) {
		outboxtest.RequirePublished(ctx, ft, b.pool, outboxtest.Want{Topic: "billing.InvoicePaid"}, opts)
	}, "billing.txoutbox_events is empty")
}

// TestFailureListing checks that a missing event's message lists what the
// table holds, trimmed, with the reasons for events of the wanted topic.
func TestFailureListing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t, "")
	tx := begin(t, b.pool)
	sess := b.client.UserSession("user-42", "job-1")
	var events []publish
	for i := range 25 {
		inv := invoice(fmt.Sprintf("inv-%d", i))
		inv["customer"] = map[string]any{"id": "cus-7", "name": strings.Repeat("é", 100)}
		events = append(events, publish{action: "Created", data: inv})
	}
	publishAll(t, sess, tx, events...)
	publishAll(t, sess, tx, publish{action: "Paid", data: paid("inv-0")})

	msg := requireFails(t, func(ft outboxtest.TB) {
		outboxtest.RequirePublished(ctx, ft, tx, outboxtest.Want{Topic: "billing.InvoicePaid", Key: "inv-1"}, nil)
	}, `no event matches billing.InvoicePaid key="inv-1"; txoutbox_events holds 26:`,
		`  1. billing.InvoiceCreated key="inv-0"`, `20. billing.InvoiceCreated key="inv-19"`, "... and 6 more", "é…")
	if strings.Contains(msg, `key is "inv-0"`) {
		t.Errorf("reasons listed for events of another topic:\n%s", msg)
	}
	for l := range strings.Lines(msg) {
		if len(l) > 300 {
			t.Errorf("line of %d bytes: %s", len(l), l)
		}
	}
	requireFails(t, func(ft outboxtest.TB) {
		outboxtest.RequireNotPublished(ctx, ft, tx, outboxtest.Want{Topic: "billing.InvoiceCreated"}, nil)
	}, "want no event matching billing.InvoiceCreated, found 25:", `20. billing.InvoiceCreated key="inv-19"`, "... and 5 more")
}

func TestRequireUnflushed(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	client := newClient(t, nil, "") // no database needed
	sess := client.ServiceSession("job-1")
	outboxtest.RequireUnflushed(t, sess, nil)
	for _, id := range []string{"inv-1", "inv-2"} {
		if err := sess.Publish(ctx, "Created", "Invoice", invoice(id)); err != nil {
			t.Fatal(err)
		}
	}

	got := outboxtest.RequireUnflushed(t, sess, []outboxtest.Want{
		{Topic: "billing.InvoiceCreated", Key: "inv-1", ActorType: outbox.ActorService},
		{Topic: "billing.InvoiceCreated", Key: "inv-2", Data: map[string]any{"customer": map[string]any{"name": "Ada Lovelace"}}},
	})
	if len(got) != 2 || got[1].Key != "inv-2" {
		t.Errorf("returned %+v", got)
	}
	requireFails(t, func(ft outboxtest.TB) {
		outboxtest.RequireUnflushed(ft, sess, []outboxtest.Want{
			{Topic: "billing.InvoiceCreated", Data: map[string]any{"customer": map[string]any{"name": "Grace Hopper"}}},
		})
	}, "want 1 event unflushed, the session holds 2:",
		`data/customer/name is "Ada Lovelace", want "Grace Hopper"`, "2. billing.InvoiceCreated key=\"inv-2\"", "not in want")
	requireFails(t, func(ft outboxtest.TB) { outboxtest.RequireUnflushed(ft, sess, nil) },
		"want 0 events unflushed, the session holds 2:")
}

// TestBadInput checks that a mistake in the assertion itself fails the
// test with a message naming it, rather than passing or failing by chance.
func TestBadInput(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t, "")
	sess := b.client.ServiceSession("job-1")
	tests := []struct {
		name  string
		check func(outboxtest.TB)
		msg   string
	}{
		{"actor type", func(ft outboxtest.TB) {
			outboxtest.RequirePublished(ctx, ft, b.pool, outboxtest.Want{ActorType: "users"}, nil)
		}, `RequirePublished: Want.ActorType "users" is none of "user", "service" and "third-party"`},
		{"data not encodable", func(ft outboxtest.TB) {
			outboxtest.RequireNotPublished(ctx, ft, b.pool, outboxtest.Want{Data: make(chan int)}, nil)
		}, "RequireNotPublished: Want.Data: json: unsupported type: chan int"},
		{"data not JSON", func(ft outboxtest.TB) {
			outboxtest.RequireUnflushed(ft, sess, []outboxtest.Want{{}, {Data: []byte(`{"id": }`)}})
		}, "RequireUnflushed: want[1]: Want.Data: not valid JSON"},
		{"data with trailing text", func(ft outboxtest.TB) {
			outboxtest.RequirePublishedMany(ctx, ft, b.pool, []outboxtest.Want{{Data: json.RawMessage(`{} {}`)}}, nil)
		}, "RequirePublishedMany: want[0]: Want.Data: not valid JSON: data after the first value"},
		{"nil db", func(ft outboxtest.TB) {
			outboxtest.RequirePublished(ctx, ft, nil, outboxtest.Want{}, nil)
		}, "RequirePublished: db is nil"},
		{"nil session", func(ft outboxtest.TB) { outboxtest.RequireUnflushed(ft, nil, nil) }, "RequireUnflushed: session is nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			requireFails(t, tt.check, tt.msg)
		})
	}
}

// TestAbortedTransaction checks that a query error is reported as one,
// not as a missing event.
func TestAbortedTransaction(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t, "")
	tx := begin(t, b.pool)
	if _, err := tx.Exec(ctx, "SELECT 1/0"); err == nil {
		t.Fatal("SELECT 1/0 succeeded")
	}
	requireFails(t, func(ft outboxtest.TB) {
		outboxtest.RequirePublished(ctx, ft, tx, outboxtest.Want{Topic: "billing.InvoiceCreated"}, nil)
	}, "RequirePublished: read txoutbox_events:", "current transaction is aborted")
}

// TestSimpleProtocol checks the assertions' query where statements cannot
// be prepared, as behind PgBouncer in transaction mode.
func TestSimpleProtocol(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cfg, err := pgxpool.ParseConfig(pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := outbox.Migrate(ctx, pool, nil); err != nil {
		t.Fatal(err)
	}
	tx := begin(t, pool)
	publishAll(t, newClient(t, pool, "").UserSession("user-42", "job-1"), tx, publish{action: "Created", data: invoice("inv-1")})

	outboxtest.RequirePublished(ctx, t, tx, outboxtest.Want{Topic: "billing.InvoiceCreated", Key: "inv-1"}, nil)
	requireFails(t, func(ft outboxtest.TB) {
		outboxtest.RequirePublished(ctx, ft, tx, outboxtest.Want{Topic: "billing.InvoiceCreated", Key: "inv-2"}, nil)
	}, "holds 1:", `key is "inv-1", want "inv-2"`)
}
