// Package mwtest is the behaviour suite the outbox middleware packages run:
// each builds its service from a Builder, and the same tests check it
// against a real PostgreSQL.
package mwtest

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/topics"
)

// Source is the service name of the suite's client, and so the actor id of
// its service sessions.
const Source = "billing-api"

// TenantHeader is the header Options.TenantHeader names in the suite.
const TenantHeader = "X-Tenant-ID"

// Options is the middleware configuration a test asks a Builder for, in
// terms both middleware packages can express.
type Options struct {
	Strict        bool
	MaxIDBytes    int
	JobIDHeader   string // "" for the default
	TenantHeader  string // "" for no tenant; else TenantFunc reads this header
	UnflushedFunc func(ctx context.Context, topic string, n int)
	Logger        *slog.Logger
}

// Builder returns the service under test: the middleware configured by
// opts, inside a layer that answers a panic with 500, in front of one
// route, POST /invoices/{id}, whose handler takes the request's session and
// calls env.Work with the id, the mode query parameter and a function
// writing a JSON answer; an error from Work is answered with 422 through
// the package's helper when Publish refused the data, else with 500.
type Builder func(env *Env, opts Options) http.Handler

// Env is one test's database and client.
type Env struct {
	Pool   *pgxpool.Pool
	Client *outbox.Client

	sessions sync.Map // invoice id -> *outbox.Session, to look at after the request
}

var (
	registryOnce sync.Once
	registry     *topics.Registry
	registryErr  error
)

// Registry returns the repository's example topic definitions; the tests
// run two directories below the repository root.
func Registry(t testing.TB) *topics.Registry {
	t.Helper()
	registryOnce.Do(func() { registry, registryErr = topics.Load("../../topic_definitions.yaml") })
	if registryErr != nil {
		t.Fatal(registryErr)
	}
	return registry
}

// NewEnv returns a migrated fresh database with an invoices table, and a
// client on it.
func NewEnv(t testing.TB) *Env {
	t.Helper()
	ctx := t.Context()
	pool := pgtest.NewPool(t)
	if err := outbox.Migrate(ctx, pool, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE invoices (id text PRIMARY KEY, amount_cents bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	client, err := outbox.New(pool, Registry(t), &outbox.Config{Source: Source})
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Pool: pool, Client: client}
}

// Client returns a client without a pool, for tests that never flush.
func Client(t testing.TB) *outbox.Client {
	t.Helper()
	c, err := outbox.New(nil, Registry(t), &outbox.Config{Source: Source})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ConfigErrors checks that a middleware refuses bad configurations with an
// error naming the field: newMW returns the constructor's error, mustMW
// calls the constructor that panics with it instead.
func ConfigErrors(t *testing.T, newMW func(*outbox.Client, Options) error, mustMW func(*outbox.Client, Options)) {
	for _, tc := range []struct {
		name   string
		client *outbox.Client
		opts   Options
		want   string
	}{
		{"nil client", nil, Options{}, "client is nil"},
		{"negative MaxIDBytes", Client(t), Options{MaxIDBytes: -1}, "Config.MaxIDBytes"},
		{"bad JobIDHeader", Client(t), Options{JobIDHeader: "job id"}, "Config.JobIDHeader"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := newMW(tc.client, tc.opts)
			if !errors.Is(err, outbox.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v; want ErrInvalidConfig naming %s", err, tc.want)
			}
			defer func() {
				if p := recover(); p == nil || !strings.Contains(p.(error).Error(), tc.want) {
					t.Errorf("panicked with %v, want the same error", p)
				}
			}()
			mustMW(tc.client, tc.opts)
		})
	}
}

// ExampleEnv is NewEnv for Example functions, which cannot fail: it panics
// instead. The database is dropped when the test binary's Main finishes.
func ExampleEnv() *Env {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.ExampleDB())
	if err != nil {
		panic(err)
	}
	if err := outbox.Migrate(ctx, pool, nil); err != nil {
		panic(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE invoices (id text PRIMARY KEY, amount_cents bigint NOT NULL)`); err != nil {
		panic(err)
	}
	reg, err := topics.Load("../../topic_definitions.yaml")
	if err != nil {
		panic(err)
	}
	client, err := outbox.New(pool, reg, &outbox.Config{Source: Source})
	if err != nil {
		panic(err)
	}
	return &Env{Pool: pool, Client: client}
}

// Modes of Work, chosen by the request's mode query parameter.
const (
	ModeOK               = ""                  // insert, publish two events, flush, commit, 201
	ModeError            = "error"             // flush, then fail: rolled back, 500
	ModePanic            = "panic"             // flush, publish one more, panic before commit
	ModeUnflushed        = "unflushed"         // publish two, commit without flushing, 201
	ModeUnflushedNoWrite = "unflushed-nowrite" // the same, answering nothing (200)
	ModeUnflushed422     = "unflushed-422"     // publish two, answer 422 without committing
	ModeLate             = "late"              // the normal path, then publish once more after answering
	ModeInvalid          = "invalid"           // publish an invoice whose due date is an object: Publish fails, 422
)

// Secret is in the due date of ModeInvalid's invoice: something the
// handler put in the event's data that the answer must not show.
const Secret = "4111 1111 1111 1111"

// ErrHandler is what Work returns in ModeError.
var ErrHandler = errors.New("handler failed after flush")

// Work is the handler body of the suite's route: a business row and its
// events in one transaction, or one of the ways of getting it wrong.
func (env *Env) Work(ctx context.Context, sess *outbox.Session, id, mode string, write func(status int)) error {
	env.sessions.Store(id, sess)
	tx, err := env.Pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO invoices (id, amount_cents) VALUES ($1, 1250)`, id); err != nil {
		return err
	}
	inv := Invoice(id)
	if mode == ModeInvalid {
		inv["due_date"] = map[string]any{"card": Secret}
	}
	if err := sess.Publish(ctx, "Created", "Invoice", inv); err != nil {
		return err
	}
	if err := sess.Publish(ctx, "Received", "Payment", Payment(id)); err != nil {
		return err
	}
	switch mode {
	case ModeUnflushed, ModeUnflushedNoWrite:
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		if mode == ModeUnflushed {
			write(http.StatusCreated)
		}
		return nil
	case ModeUnflushed422:
		write(http.StatusUnprocessableEntity)
		return nil
	}
	if err := sess.Flush(ctx, tx); err != nil {
		return err
	}
	switch mode {
	case ModeError:
		return ErrHandler
	case ModePanic:
		if err := sess.Publish(ctx, "Paid", "Invoice", Paid(id)); err != nil {
			return err
		}
		panic("handler panicked after flush")
	}
	if err := tx.Commit(ctx); err != nil {
		return err
	}
	write(http.StatusCreated)
	if mode == ModeLate {
		return sess.Publish(ctx, "Paid", "Invoice", Paid(id))
	}
	return nil
}

// Session returns the session the request for invoice id worked with.
func (env *Env) Session(t testing.TB, id string) *outbox.Session {
	t.Helper()
	s, ok := env.sessions.Load(id)
	if !ok {
		t.Fatalf("no request for invoice %s reached the handler", id)
	}
	return s.(*outbox.Session)
}

// Invoice is billing.InvoiceCreated data for id.
func Invoice(id string) map[string]any {
	return map[string]any{
		"id":           id,
		"customer":     map[string]any{"id": "cus-7", "name": "Ada Lovelace"},
		"amount_cents": 1250,
		"currency":     "EUR",
		"status":       "open",
		"due_date":     "2026-12-31",
	}
}

// Payment is billing.PaymentReceived data for invoice id.
func Payment(id string) map[string]any {
	return map[string]any{"id": "pay-" + id, "invoice_id": id, "amount_cents": 1250}
}

// Paid is billing.InvoicePaid data for id.
func Paid(id string) map[string]any {
	return map[string]any{"id": id, "amount_cents": 1250, "paid_at": "2026-11-23T10:00:00Z"}
}
