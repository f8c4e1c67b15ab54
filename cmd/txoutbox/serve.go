package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/topics"
)

const serveUsage = `
Run the events API: the server the relay delivers to and consumers read
from. It takes what "txoutbox relay --sink http://ADDR" sends in either
wire format (POST /events, /events/bulk/ for bc-events; POST / or
/cloudevents for CloudEvents), stores every event once (by id, and by
tenant and dedupe key), and serves them back: GET /api/events to query,
GET /api/stream and /api/ws to subscribe, GET / for a live page of the
events as they arrive (filtered as its URL says: /?topic=billing.*). The
routes and their answers are described in eventsapi/PROTOCOL.md.

Access: --keys names a YAML file of API keys, each with a name, the SHA-256
of its secret (or the environment variable holding it), an optional tenant
and its rights (ingest, subscribe, query):

  version: 1
  keys:
    - name: relay
      secret_sha256: <printf %s "$SECRET" | sha256sum>
      rights: [ingest]
    - name: acme-dashboard
      tenant: acme
      secret_env: ACME_EVENTS_KEY
      rights: [subscribe, query]

Callers send "Authorization: Bearer <secret>" (txoutbox relay: --bearer-token).
Without --keys the server runs in development mode: it answers only
requests from this machine, with every right over every tenant, and it
refuses to listen on any other address.

Events are kept in memory (the newest 100,000) unless --database-url names
a Postgres database: then they are kept there, in tables of their own
(txoutbox_events_api_*, created or upgraded at start; the database may be
the outbox's or another), and several serve processes may share them. --max-age and --max-events delete older events.
The same address serves the EventService (proto/txoutbox/events/v1) over
gRPC (unencrypted HTTP/2), gRPC-Web and Connect.

SIGINT or SIGTERM stops it: first it drains for --drain (10s): /healthz
answers 503, new EventService streams are refused, and open ones are told
to reconnect elsewhere at a random time within the window (reconnect_before);
then open streams are ended, and the requests in flight finish.`

const serveExamples = `  txoutbox serve                                   # development: 127.0.0.1:8642, no keys
  txoutbox serve --topics topic_definitions.yaml --max-age 168h
  txoutbox serve --listen 0.0.0.0:8642 --keys /etc/txoutbox/keys.yaml --topics topic_definitions.yaml
  TXOUTBOX_KEYS=/etc/txoutbox/keys.yaml TXOUTBOX_LISTEN=:8642 txoutbox serve`

type serveFlags struct {
	listen      string
	databaseURL string
	schema      string
	topics      string
	keys        string
	maxAge      time.Duration
	maxEvents   int64
	drain       time.Duration
}

func (f *serveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.listen, "listen", sinkAddrDefault, "`address` to listen on; port 0 picks a free one. An address beyond this machine needs --keys")
	fs.StringVar(&f.databaseURL, "database-url", "", "Postgres `URL` of the event store; empty keeps events in memory. Its tables are created or upgraded at start")
	fs.StringVar(&f.schema, "schema", "", "`schema` of the event store's tables (default: the search_path)")
	fs.StringVar(&f.topics, "topics", "", "topic definitions `file` events are checked against; empty checks the wire format's rules only")
	fs.StringVar(&f.keys, "keys", "", "API keys `file` (YAML); empty is development mode, loopback only")
	fs.DurationVar(&f.maxAge, "max-age", 0, "delete events stored longer ago than this `duration` (e.g. 168h); 0 keeps them")
	fs.Int64Var(&f.maxEvents, "max-events", 0, "keep only the newest `N` events; 0 keeps them all")
	fs.DurationVar(&f.drain, "drain", 10*time.Second, "on SIGINT or SIGTERM, the `window` EventService streams get to reconnect elsewhere before the server stops; 0 stops at once")
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	fset := newFlagSet("serve", serveUsage, serveExamples)
	f.register(fset)
	if err := parseFlags(fset, args, stdout); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	var keys *eventsapi.Keys
	if f.keys != "" {
		var err error
		if keys, err = eventsapi.LoadKeys(f.keys); err != nil {
			return fmt.Errorf("serve: --keys: %w", err)
		}
	}
	host, _, err := net.SplitHostPort(f.listen)
	if err != nil {
		return fmt.Errorf("serve: --listen: %w", err)
	}
	if keys == nil && !isLoopback(host) {
		return fmt.Errorf("serve: --listen %s: without --keys the events API serves this machine only; listen on 127.0.0.1 or give --keys", f.listen)
	}
	var reg *topics.Registry
	if f.topics != "" {
		if reg, err = topics.Load(f.topics); err != nil {
			return fmt.Errorf("serve: --topics: %w", err)
		}
	} else {
		logger.Warn("no --topics: events are checked against the wire format's rules only, not against a topic catalog")
	}

	store, storeName, err := f.openStore(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	api, err := eventsapi.New(&eventsapi.Config{
		Store:     store,
		Registry:  reg,
		Keys:      keys,
		Logger:    logger,
		MaxAge:    f.maxAge,
		MaxEvents: f.maxEvents,
	})
	if err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	defer api.Close()

	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("serve: --listen: %w", err)
	}
	access := "development mode (loopback only)"
	if keys != nil {
		access = fmt.Sprintf("%d keys from %s", keys.Len(), f.keys)
	}
	logger.Info("events API listening", "url", "http://"+ln.Addr().String(), "store", storeName,
		"access", access, "topics", topicsSummary(reg, f.topics))

	stop := func() error {
		if f.drain > 0 {
			logger.Info("events API draining", "window", f.drain)
			_ = api.Drain(context.Background(), f.drain)
		}
		return api.Close()
	}
	if err := serveHTTP(ctx, ln, api, stop, 10*time.Second); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("events API stopped")
	return nil
}

// openStore opens the event store: Postgres when --database-url is set,
// after creating or upgrading its tables, memory otherwise. It returns the
// store and how to name it in logs (never with a password).
func (f *serveFlags) openStore(ctx context.Context) (eventsapi.Store, string, error) {
	if f.databaseURL == "" {
		st, err := eventsapi.NewMemoryStore(nil)
		return st, "memory", err
	}
	cfg, err := pgxpool.ParseConfig(f.databaseURL)
	if err != nil {
		return nil, "", fmt.Errorf("serve: --database-url: %w (want postgres://user:password@host:5432/dbname)", redactErr(err, f.databaseURL))
	}
	cfg.ConnConfig.ConnectTimeout = connectTimeout
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, "", fmt.Errorf("serve: %w", redactErr(err, f.databaseURL))
	}
	name := databaseName(f.databaseURL)
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, "", fmt.Errorf("serve: connect to %s: %w", name, redactErr(err, f.databaseURL))
	}
	scfg := &eventsapi.PostgresStoreConfig{Schema: f.schema}
	if err := eventsapi.MigratePostgres(ctx, pool, scfg); err != nil {
		pool.Close()
		return nil, "", fmt.Errorf("serve: create the event store's tables in %s: %w", name, redactErr(err, f.databaseURL))
	}
	st, err := eventsapi.NewPostgresStore(ctx, pool, scfg)
	if err != nil {
		pool.Close()
		return nil, "", fmt.Errorf("serve: %w", redactErr(err, f.databaseURL))
	}
	return &poolStore{PostgresStore: st, pool: pool}, name, nil
}

// poolStore closes the pool it was opened on after the store.
type poolStore struct {
	*eventsapi.PostgresStore
	pool *pgxpool.Pool
}

func (s *poolStore) Close() error {
	err := s.PostgresStore.Close()
	s.pool.Close()
	return err
}
