package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/topics"
)

const serveUsage = `
Run the events API: the server the relay delivers to and consumers read
from. It takes what "txoutbox relay --sink http://ADDR" sends in either
wire format (POST /events, /events/bulk/ for bc-events; POST / or
/cloudevents for CloudEvents), stores every event once (by id, and by
tenant and dedupe key), and serves them back: GET /api/events to query,
GET /api/stream and /api/ws to subscribe. The routes and their answers are
described in eventsapi/PROTOCOL.md.

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
a Postgres database. --max-age and --max-events delete older events.
SIGINT or SIGTERM stops it: open streams are ended, and the requests in
flight finish.`

const serveExamples = `  txoutbox serve                                   # development: 127.0.0.1:8642, no keys
  txoutbox serve --topics topic_definitions.yaml --max-age 168h
  txoutbox serve --listen 0.0.0.0:8642 --keys /etc/txoutbox/keys.yaml --topics topic_definitions.yaml
  TXOUTBOX_KEYS=/etc/txoutbox/keys.yaml TXOUTBOX_LISTEN=:8642 txoutbox serve`

type serveFlags struct {
	listen      string
	databaseURL string
	topics      string
	keys        string
	maxAge      time.Duration
	maxEvents   int64
}

func (f *serveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.listen, "listen", sinkAddrDefault, "`address` to listen on; port 0 picks a free one. An address beyond this machine needs --keys")
	fs.StringVar(&f.databaseURL, "database-url", "", "Postgres `URL` of the event store; empty keeps events in memory")
	fs.StringVar(&f.topics, "topics", "", "topic definitions `file` events are checked against; empty checks the wire format's rules only")
	fs.StringVar(&f.keys, "keys", "", "API keys `file` (YAML); empty is development mode, loopback only")
	fs.DurationVar(&f.maxAge, "max-age", 0, "delete events stored longer ago than this `duration` (e.g. 168h); 0 keeps them")
	fs.Int64Var(&f.maxEvents, "max-events", 0, "keep only the newest `N` events; 0 keeps them all")
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	fset := newFlagSet("serve", serveUsage, serveExamples)
	f.register(fset)
	if err := parseFlags(fset, args, stdout); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	if f.databaseURL != "" {
		// The Postgres store (eventsapi.PostgresStore) is not part of this
		// build yet; refusing beats silently keeping events in memory.
		return errors.New("serve: --database-url: the Postgres event store is not available in this build yet; leave --database-url (and TXOUTBOX_DATABASE_URL) empty to keep events in memory")
	}
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

	api, err := eventsapi.New(&eventsapi.Config{
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
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	access := "development mode (loopback only)"
	if keys != nil {
		access = fmt.Sprintf("%d keys from %s", keys.Len(), f.keys)
	}
	logger.Info("events API listening", "url", "http://"+ln.Addr().String(), "store", "memory",
		"access", access, "topics", topicsSummary(reg, f.topics))

	select {
	case err = <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Close ends the open streams, which Shutdown would wait for; Shutdown
	// then lets the requests in flight finish.
	closeErr := api.Close()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("serve: shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	if closeErr != nil {
		return fmt.Errorf("serve: close: %w", closeErr)
	}
	logger.Info("events API stopped")
	return nil
}
