package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outboxconsole"
)

const consoleUsage = `
Serve the operator console: a web page that shows what the outbox holds and
why (counts per topic and state, the oldest pending event, the backlog and
throughput of the last hour, the relays and their partitions, live), lists
and filters events, shows an event's envelope, attempts, last error and the
events of its key, and replays or discards dead events and unblocks keys.

Every action shows how many events it would change first (a dry run) and
runs once when confirmed; it is written to the txoutbox_actions table and
to the log. Event data is hidden unless --show-payloads.

Without --token-file or --users-file the console serves this machine only,
and refuses to listen elsewhere. With them, the page asks to sign in, and
scripts send "Authorization: Bearer TOKEN" or basic auth.

Needs the outbox tables at version 4 (txoutbox migrate).`

const consoleExamples = `  txoutbox console --database-url postgres://app@db/app
  txoutbox console --listen 0.0.0.0:8090 --token-file /run/secrets/console-token --read-only
  txoutbox console --users-file /run/secrets/console-users --show-payloads`

// consoleAddrDefault is where the console listens unless told otherwise.
const consoleAddrDefault = "127.0.0.1:8090"

// consoleFlags are the console's access flags, which txoutbox relay
// --console shares.
type consoleFlags struct {
	tokenFile    string
	usersFile    string
	readOnly     bool
	showPayloads bool
}

func (f *consoleFlags) register(fs *flag.FlagSet, prefix string) {
	fs.StringVar(&f.tokenFile, prefix+"token-file", "", "`file` holding the console's access token")
	fs.StringVar(&f.usersFile, prefix+"users-file", "", "`file` of user:password lines for the console's basic auth")
	fs.BoolVar(&f.readOnly, prefix+"read-only", false, "show only: refuse every action")
	fs.BoolVar(&f.showPayloads, prefix+"show-payloads", false, "show events' data on their pages (it may hold personal data)")
}

// config returns the console's Config, reading the secret files.
func (f *consoleFlags) config(schema, path string, logger *slog.Logger) (*outboxconsole.Config, error) {
	cfg := &outboxconsole.Config{Schema: schema, Path: path, ReadOnly: f.readOnly, ShowPayloads: f.showPayloads, Logger: logger}
	var err error
	if f.tokenFile != "" {
		if cfg.Token, err = outboxconsole.ReadTokenFile(f.tokenFile); err != nil {
			return nil, err
		}
	}
	if f.usersFile != "" {
		if cfg.Users, err = outboxconsole.ReadUsersFile(f.usersFile); err != nil {
			return nil, err
		}
	}
	return cfg, nil
}

// access describes who may use a console, for its start-up log.
func (f *consoleFlags) access() string {
	switch {
	case f.tokenFile != "" && f.usersFile != "":
		return "token and users"
	case f.tokenFile != "":
		return "token"
	case f.usersFile != "":
		return "users"
	}
	return "this machine only (no credentials)"
}

func runConsole(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var db dbFlags
	var cf consoleFlags
	var listen string
	fs := newFlagSet("console", consoleUsage, consoleExamples)
	db.register(fs)
	fs.StringVar(&listen, "listen", consoleAddrDefault, "`address` to listen on; beyond this machine it needs --token-file or --users-file")
	cf.register(fs, "")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	cfg, err := cf.config(db.schema, "/", logger)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	if cfg.Token == "" && cfg.Users == nil && !outboxconsole.IsLoopbackAddr(listen) {
		return fmt.Errorf("console: --listen %s: without --token-file or --users-file the console serves this machine only; listen on 127.0.0.1 or give credentials", listen)
	}
	pool, err := db.connect(ctx, "console")
	if err != nil {
		return err
	}
	defer pool.Close()
	h, err := outboxconsole.New(pool, cfg)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("console: --listen: %w", err)
	}
	logger.Info("console listening", "url", "http://"+ln.Addr().String()+"/", "database", databaseName(db.url),
		"access", cf.access(), "read_only", cf.readOnly, "payloads", cf.showPayloads)
	stop := runSampler(ctx, h)
	defer stop()
	if err := serveHTTP(ctx, ln, h, h.Close, 10*time.Second); err != nil {
		return fmt.Errorf("console: %w", err)
	}
	logger.Info("console stopped")
	return nil
}

// runSampler runs h.Run until the returned function stops it and waits.
func runSampler(ctx context.Context, h *outboxconsole.Handler) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = h.Run(ctx) })
	return func() { cancel(); wg.Wait() }
}

// newRelayConsole returns the console the relay mounts at /console/ on its
// admin address, or nil when --console is off. Off loopback it needs
// credentials, as txoutbox console does.
func (f *relayFlags) newRelayConsole(pool *pgxpool.Pool, logger *slog.Logger) (*outboxconsole.Handler, error) {
	if !f.console {
		return nil, nil
	}
	if f.adminAddr == "" {
		return nil, errors.New("--console: it is served on --admin-addr, which is empty")
	}
	cfg, err := f.consoleFlags.config(f.cfg.Schema, "/console/", logger)
	if err != nil {
		return nil, fmt.Errorf("--console: %w", err)
	}
	if cfg.Token == "" && cfg.Users == nil && !outboxconsole.IsLoopbackAddr(f.adminAddr) {
		return nil, errors.New("--console: the admin address is beyond this machine: give --console-token-file or --console-users-file")
	}
	return outboxconsole.New(pool, cfg)
}
