package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	outboxadmin "github.com/txoutbox/txoutbox/cmd/txoutbox/internal/admin"
)

// connectTimeout bounds how long a tool waits for the database to answer.
const connectTimeout = 10 * time.Second

// dbFlags are the flags of every subcommand that talks to the database.
type dbFlags struct {
	url    string
	schema string
}

func (f *dbFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "database-url", "", "PostgreSQL `URL` of the database holding the outbox (required)")
	fs.StringVar(&f.schema, "schema", "", "`schema` of the outbox tables (default: the search_path)")
}

// connect opens a small pool for subcommand cmd and checks that the database
// answers. Its errors are one line and never show the URL's password.
func (f *dbFlags) connect(ctx context.Context, cmd string) (*pgxpool.Pool, error) {
	if f.url == "" {
		return nil, fmt.Errorf("%s: --database-url (%s) is required", cmd, envName("database-url"))
	}
	cfg, err := pgxpool.ParseConfig(f.url)
	if err != nil {
		return nil, fmt.Errorf("%s: --database-url: %w (want postgres://user:password@host:5432/dbname)", cmd, redactErr(err, f.url))
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.ConnectTimeout = connectTimeout
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, redactErr(err, f.url))
	}
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%s: connect to %s: %w", cmd, databaseName(f.url), redactErr(err, f.url))
	}
	return pool, nil
}

// dbError turns a query's error into what an operator should read: a
// missing table says to migrate, and the URL's password never shows.
func (f *dbFlags) dbError(cmd string, err error) error {
	if errors.Is(err, outboxadmin.ErrNotMigrated) {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: interrupted", cmd)
	}
	return fmt.Errorf("%s: %w", cmd, redactErr(err, f.url))
}

// databaseName names the database of a URL or keyword/value connection
// string for logs and messages: user, host, port and database name, never
// the password.
func databaseName(raw string) string {
	cfg, err := pgconn.ParseConfig(raw)
	if err != nil {
		return redactURL(raw)
	}
	u := url.URL{Scheme: "postgres", User: url.User(cfg.User), Path: "/" + cfg.Database}
	if strings.HasPrefix(cfg.Host, "/") { // a Unix socket's directory
		u.RawQuery = url.Values{"host": {cfg.Host}, "port": {strconv.Itoa(int(cfg.Port))}}.Encode()
	} else {
		u.Host = net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	}
	return u.String()
}
