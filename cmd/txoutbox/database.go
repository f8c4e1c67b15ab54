package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

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
		return nil, fmt.Errorf("%s: --database-url: %w (want postgres://user:password@host:5432/dbname)", cmd, redact(err, f.url))
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.ConnectTimeout = connectTimeout
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, redact(err, f.url))
	}
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%s: connect to %s: %w", cmd, redactURL(f.url), redact(err, f.url))
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
	return fmt.Errorf("%s: %w", cmd, redact(err, f.url))
}

// redactedError is an error whose message was cleaned of a secret and
// folded onto one line; errors.Is and errors.As still see the original.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redact returns err with rawURL's password removed from its message (pgx
// masks it already; this holds for every error, whoever wrote it) and its
// lines joined, repeated ones dropped: pgx lists every connection attempt on
// a line of its own, often the same one twice.
func redact(err error, rawURL string) error {
	msg := err.Error()
	if rawURL != "" {
		msg = strings.ReplaceAll(msg, rawURL, redactURL(rawURL))
		if pw := password(rawURL); pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
			if esc := url.PathEscape(pw); esc != pw {
				msg = strings.ReplaceAll(msg, esc, "xxxxx")
			}
		}
	}
	var lines []string
	for _, l := range strings.Split(msg, "\n") {
		if l = strings.TrimSpace(l); l != "" && !slices.Contains(lines, l) {
			lines = append(lines, l)
		}
	}
	return &redactedError{msg: strings.Join(lines, " "), err: err}
}

// password returns the password in a postgres:// URL or a key=value
// connection string, or "".
func password(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		pw, _ := u.User.Password()
		return pw
	}
	for _, field := range strings.Fields(raw) {
		if v, ok := strings.CutPrefix(field, "password="); ok {
			return strings.Trim(v, "'")
		}
	}
	return ""
}

// redactURL returns the database URL with its password masked, or "the
// database" when it cannot be read as a URL.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "the database"
	}
	c := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	if u.User != nil {
		c.User = url.User(u.User.Username())
	}
	return c.String()
}
