package bench

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay/relayhttp"
)

// apiServer is an events API on 127.0.0.1, served by an http.Server of its
// own.
type apiServer struct {
	*loopback
	api *eventsapi.Server
}

// apiKeys are the credentials of the benchmark's servers: the relay's, to
// ingest, a consumer's, to subscribe, and a worker's, to enroll.
type apiKeys struct {
	keys                   *eventsapi.Keys
	ingest, consumer, jobs string // the secrets
}

func newAPIKeys() (*apiKeys, error) {
	k := &apiKeys{ingest: rand.Text(), consumer: rand.Text(), jobs: rand.Text()}
	var err error
	k.keys, err = eventsapi.NewKeys(
		eventsapi.Key{Name: "relay", Rights: []eventsapi.Right{eventsapi.RightIngest}, SecretSHA256: eventsapi.HashSecret(k.ingest)},
		eventsapi.Key{Name: "consumer", Rights: []eventsapi.Right{eventsapi.RightSubscribe}, SecretSHA256: eventsapi.HashSecret(k.consumer)},
		eventsapi.Key{Name: "worker", Rights: []eventsapi.Right{eventsapi.RightJobs}, SecretSHA256: eventsapi.HashSecret(k.jobs)},
	)
	if err != nil {
		return nil, fmt.Errorf("events API keys: %w", err)
	}
	return k, nil
}

// startAPI serves an events API over store, checking events against the
// benchmark's topics, as "txoutbox serve --topics" does.
func startAPI(e *env, store eventsapi.Store, keys *apiKeys) (*apiServer, error) {
	api, err := eventsapi.New(&eventsapi.Config{Store: store, Registry: e.reg, Keys: keys.keys, Logger: e.log})
	if err != nil {
		return nil, fmt.Errorf("events API: %w", err)
	}
	l, err := serveLoopback(api)
	if err != nil {
		_ = api.Close()
		return nil, err
	}
	return &apiServer{loopback: l, api: api}, nil
}

// close ends the streams, then the server.
func (a *apiServer) close() {
	_ = a.api.Close()
	a.loopback.close()
}

// eventsStore is a PostgresStore in a schema of its own, dropped by close.
type eventsStore struct {
	*eventsapi.PostgresStore
	env    *env
	schema string
	pool   *pgxpool.Pool
}

func (e *env) newEventsStore(ctx context.Context, purpose string) (s *eventsStore, err error) {
	s = &eventsStore{env: e, schema: "bench_" + purpose + "_" + strings.ReplaceAll(uuid.NewString()[:8], "-", "")}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	pc, err := pgxpool.ParseConfig(e.url)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	pc.MaxConns = 8
	if s.pool, err = pgxpool.NewWithConfig(ctx, pc); err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	cfg := &eventsapi.PostgresStoreConfig{Schema: s.schema, Logger: e.log}
	if err := eventsapi.MigratePostgres(ctx, s.pool, cfg); err != nil {
		return nil, err
	}
	if s.PostgresStore, err = eventsapi.NewPostgresStore(ctx, s.pool, cfg); err != nil {
		return nil, err
	}
	return s, nil
}

// settle vacuums and analyzes the store's tables, then checkpoints, so that
// a measurement starts on rows that have been sitting a while (their
// visibility settled) and with no backlog of dirty pages to write.
func (s *eventsStore) settle(ctx context.Context) error {
	rows, err := s.env.admin.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = $1`, s.schema)
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	for _, t := range tables {
		if _, err := s.env.admin.Exec(ctx, `VACUUM ANALYZE `+pgx.Identifier{s.schema, t}.Sanitize()); err != nil {
			return fmt.Errorf("vacuum %s: %w", t, err)
		}
	}
	return s.env.checkpoint(ctx)
}

// checkpoint writes the server's dirty pages out, where the benchmark may:
// a server it does not own, or a user without the right, skips it.
func (e *env) checkpoint(ctx context.Context) error {
	if e.cluster == nil {
		return nil
	}
	if _, err := e.admin.Exec(ctx, `CHECKPOINT`); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

func (s *eventsStore) close() {
	if s.PostgresStore != nil {
		_ = s.PostgresStore.Close()
	}
	if s.pool != nil {
		s.pool.Close()
		if _, err := s.env.admin.Exec(context.Background(), `DROP SCHEMA IF EXISTS `+pgx.Identifier{s.schema}.Sanitize()+` CASCADE`); err != nil {
			s.env.log.Warn("drop schema", "schema", s.schema, "err", err)
		}
	}
}

// eventMaker makes billing.InvoiceCreated events, as the relay hands them
// to its sink. A stamped event carries in its data, as sent_ns, when it was
// made: nanoseconds on the maker's monotonic clock, which the subscribers
// of the same process read too.
type eventMaker struct {
	seq   atomic.Int64
	clock monoClock
	data  [][]byte // unstamped data, made once
}

// monoClock reads nanoseconds since its start on the monotonic clock.
type monoClock struct{ start time.Time }

func (c monoClock) now() int64 { return int64(time.Since(c.start)) }

// stampedInvoice is an invoice with the time it was sent: the topic's
// schema allows properties beyond its own.
type stampedInvoice struct {
	invoice
	SentNs int64 `json:"sent_ns,omitempty"`
}

func newEventMaker() *eventMaker {
	m := &eventMaker{clock: monoClock{start: time.Now()}, data: make([][]byte, 1000)}
	for i := range m.data {
		m.data[i], _ = json.Marshal(newInvoice("inv-"+strconv.Itoa(i), int64(i)))
	}
	return m
}

// batch returns n events of one job (a bc-events bulk post carries one job
// id), stamped or not.
func (m *eventMaker) batch(n int, stamped bool) []*outbox.Event {
	first := m.seq.Add(int64(n)) - int64(n)
	job := "job-" + strconv.FormatInt(first, 10)
	now := time.Now()
	sent := m.clock.now()
	evs := make([]*outbox.Event, n)
	for i := range evs {
		k := first + int64(i)
		id := "inv-" + strconv.FormatInt(k%10_000, 10)
		data := m.data[k%int64(len(m.data))]
		if stamped {
			data, _ = json.Marshal(stampedInvoice{invoice: newInvoice(id, k), SentNs: sent})
		}
		evs[i] = &outbox.Event{
			ID: uuid.Must(uuid.NewV7()), Topic: "billing.InvoiceCreated", Category: "billing", Entity: "Invoice", Action: "Created",
			Data: data, ActorID: "user-42", ActorType: outbox.ActorUser, JobID: job, Source: "billing-api", Key: id, Time: now,
		}
	}
	return evs
}

// storeEvents returns the events as the API would store them from a
// CloudEvents post.
func storeEvents(evs []*outbox.Event) []eventsapi.Event {
	out := make([]eventsapi.Event, len(evs))
	for i, ev := range evs {
		out[i] = eventsapi.Event{
			ID: ev.ID.String(), Topic: ev.Topic, Category: ev.Category, Entity: ev.Entity, Action: ev.Action,
			Key: ev.Key, ActorID: ev.ActorID, ActorType: ev.ActorType, JobID: ev.JobID, Source: ev.Source,
			Format: "cloudevents", Time: ev.Time, Data: ev.Data,
		}
	}
	return out
}

// newPoster returns a relay HTTP sink posting to a: CloudEvents batches to
// /cloudevents, or bc-events bulk posts.
func newPoster(e *env, a *apiServer, keys *apiKeys, format relayhttp.Format) (*relayhttp.Sink, error) {
	u := "http://" + a.addr
	if format == relayhttp.FormatCloudEvents {
		u += "/cloudevents"
	}
	s, err := relayhttp.New(&relayhttp.Config{URL: u, Format: format, BearerToken: keys.ingest, Logger: e.log})
	if err != nil {
		return nil, fmt.Errorf("http sink: %w", err)
	}
	return s, nil
}
