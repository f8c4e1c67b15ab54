package bench

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/topics"
)

//go:embed topics.yaml
var topicsYAML []byte

// clusterSettings are the settings of the throwaway cluster besides
// PostgreSQL's defaults (durability on): enough WAL between checkpoints that
// the backlog's bulk load does not checkpoint mid-measurement.
var clusterSettings = map[string]string{
	"max_wal_size":   "4GB",
	"shared_buffers": "256MB",
}

// env is the database the scenarios run against.
type env struct {
	cfg     *Config
	log     *slog.Logger
	cluster *pgtest.Cluster
	url     string
	admin   *pgxpool.Pool
	reg     *topics.Registry
}

func openEnv(ctx context.Context, cfg *Config) (*env, error) {
	reg, err := topics.Parse("topics.yaml", topicsYAML)
	if err != nil {
		return nil, fmt.Errorf("load bench topics: %w", err)
	}
	e := &env{cfg: cfg, log: cfg.Logger, reg: reg, url: cfg.DatabaseURL}
	if e.url == "" {
		e.log.Info("starting a throwaway PostgreSQL cluster (durable)")
		e.cluster, err = pgtest.Start(ctx, &pgtest.Options{Durable: true, Settings: clusterSettings})
		if err != nil {
			return nil, fmt.Errorf("start PostgreSQL: %w", err)
		}
		e.url, err = e.cluster.CreateDB(ctx, "bench")
		if err != nil {
			e.close()
			return nil, fmt.Errorf("create database: %w", err)
		}
	}
	e.admin, err = pgxpool.New(ctx, e.url)
	if err == nil {
		err = e.admin.Ping(ctx)
	}
	if err != nil {
		e.close()
		return nil, fmt.Errorf("connect to %s: %w", redact(e.url), err)
	}
	return e, nil
}

func (e *env) close() {
	if e.admin != nil {
		e.admin.Close()
	}
	if e.cluster != nil {
		if err := e.cluster.Close(); err != nil {
			e.log.Warn("stop PostgreSQL", "err", err)
		}
	}
}

func (e *env) describePostgres(ctx context.Context) Postgres {
	var p Postgres
	for _, s := range []struct {
		name string
		dst  *string
	}{{"server_version", &p.Version}, {"fsync", &p.Fsync}, {"synchronous_commit", &p.SynchronousCommit}, {"shared_buffers", &p.SharedBuffers}} {
		if err := e.admin.QueryRow(ctx, "SELECT current_setting($1)", s.name).Scan(s.dst); err != nil {
			*s.dst = "?"
		}
	}
	if v, _, ok := strings.Cut(p.Version, " "); ok {
		p.Version = v
	}
	return p
}

// schema is a scenario's own schema: the outbox tables, the relay's tables
// and the business table, dropped when the scenario ends.
type schema struct {
	env  *env
	name string
	// slot is the replication slot of message storage, once created.
	slot string
}

// businessTable is the table a request-like transaction writes besides the
// outbox.
const businessTable = "bench_invoices"

func (e *env) newSchema(ctx context.Context, purpose string) (*schema, error) {
	name := "bench_" + purpose + "_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")
	s := &schema{env: e, name: name}
	if err := outbox.Migrate(ctx, e.admin, &outbox.MigrateConfig{Schema: name}); err != nil {
		return nil, fmt.Errorf("migrate schema %s: %w", name, err)
	}
	if _, err := e.admin.Exec(ctx, `CREATE TABLE `+pgx.Identifier{name, businessTable}.Sanitize()+` (
		id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		customer_id text NOT NULL,
		amount_cents bigint NOT NULL,
		currency text NOT NULL,
		created_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		s.drop()
		return nil, fmt.Errorf("create business table: %w", err)
	}
	return s, nil
}

// pool returns a pool whose connections have the schema on their
// search_path, so unqualified names (the business table, watermill-sql's
// tables) resolve there.
func (s *schema) pool(ctx context.Context, maxConns int) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(s.env.url)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	pc.MaxConns = int32(maxConns)
	pc.ConnConfig.RuntimeParams["search_path"] = s.name
	p, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	return p, nil
}

// createMessageSlot creates the durable replication slot that message
// storage emits for; drop drops it.
func (s *schema) createMessageSlot(ctx context.Context) error {
	slot, err := outbox.CreateMessageSlot(ctx, s.env.admin, &outbox.MessageSlotConfig{Schema: s.name})
	if err != nil {
		return err
	}
	s.slot = slot.Name
	return nil
}

func (s *schema) table(name string) string { return pgx.Identifier{s.name, name}.Sanitize() }

// drop removes the schema and what it made outside it: the publication of
// migration 008, which DROP SCHEMA leaves behind, and the replication slot
// of message storage, which would hold back WAL for good. A scenario calls
// it on its way out, whatever happened, after stopping its relays.
func (s *schema) drop() {
	ctx := context.Background()
	if s.slot != "" {
		if err := s.dropSlot(ctx); err != nil {
			s.env.log.Warn("drop replication slot", "slot", s.slot, "err", err)
		}
	}
	var pub string
	err := s.env.admin.QueryRow(ctx, outboxsql.New(s.name).Relay.WALPublication, s.table(outboxsql.TableEvents)).Scan(&pub)
	if err == nil {
		_, err = s.env.admin.Exec(ctx, `DROP PUBLICATION `+pgx.Identifier{pub}.Sanitize())
	}
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		s.env.log.Warn("drop publication", "schema", s.name, "err", err)
	}
	if _, err := s.env.admin.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{s.name}.Sanitize()+` CASCADE`); err != nil {
		s.env.log.Warn("drop schema", "schema", s.name, "err", err)
	}
}

// dropSlot drops the schema's replication slot. The WAL sender of a relay
// that has just stopped may hold it a moment longer (object_in_use).
func (s *schema) dropSlot(ctx context.Context) error {
	const wait = 5 * time.Second
	deadline := time.Now().Add(wait)
	for {
		_, err := s.env.admin.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, s.slot)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "55006" || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// insertEvents commits n pending events, shaped as Flush writes them, on
// 10,000 keys, then vacuums and analyzes the table, so the relay starts as it
// would on a backlog that has been sitting for a while.
func (s *schema) insertEvents(ctx context.Context, n int) error {
	return s.insert(ctx, n, "VACUUM ANALYZE")
}

// topUp commits n more pending events and only analyzes the table: the dead
// rows of earlier drains are left to autovacuum.
func (s *schema) topUp(ctx context.Context, n int) error {
	return s.insert(ctx, n, "ANALYZE")
}

func (s *schema) insert(ctx context.Context, n int, after string) error {
	// Chunks go in on insertWorkers connections at once: a single INSERT
	// … SELECT keeps one core busy.
	const chunk, insertWorkers = 50_000, 2
	chunks := make(chan int, (n+chunk-1)/chunk)
	for done := 0; done < n; done += chunk {
		chunks <- done
	}
	close(chunks)
	var g errgroup
	for range insertWorkers {
		g.Go(func() error {
			for from := range chunks {
				if _, err := s.env.admin.Exec(ctx, `INSERT INTO `+s.table(outboxsql.TableEvents)+`
					(id, topic, category, entity, action, data, actor_id, actor_type, job_id, source, key, published_at)
					SELECT gen_random_uuid(), 'billing.InvoiceCreated', 'billing', 'Invoice', 'Created',
						json_build_object('id', 'inv-' || i % 10000, 'customer', json_build_object('id', 'cus-' || i % 997, 'name', 'Customer'),
							'amount_cents', i, 'currency', 'EUR', 'status', 'open', 'due_date', '2026-12-31'),
						'user-42', 'user', 'job-' || i, 'billing-api', 'inv-' || i % 10000, now()
					FROM generate_series($1::bigint, $2::bigint) i`, from, min(from+chunk, n)-1); err != nil {
					return fmt.Errorf("insert events: %w", err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if _, err := s.env.admin.Exec(ctx, after+` `+s.table(outboxsql.TableEvents)); err != nil {
		return fmt.Errorf("%s events: %w", after, err)
	}
	return nil
}

// errgroup runs functions and returns the first error any returned.
type errgroup struct {
	wg   sync.WaitGroup
	once sync.Once
	err  error
}

func (g *errgroup) Go(fn func() error) {
	g.wg.Go(func() {
		if err := fn(); err != nil {
			g.once.Do(func() { g.err = err })
		}
	})
}

func (g *errgroup) Wait() error {
	g.wg.Wait()
	return g.err
}

func redact(url string) string {
	if pc, err := pgx.ParseConfig(url); err == nil {
		return fmt.Sprintf("%s@%s:%d/%s", pc.User, pc.Host, pc.Port, pc.Database)
	}
	return "the database"
}
