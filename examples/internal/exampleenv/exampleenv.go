// Package exampleenv is the start-up the example programs share: read the
// environment, connect, migrate, build the outbox client, serve HTTP until
// interrupted.
package exampleenv

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/inbox"
	"github.com/txoutbox/txoutbox/internal/invoices"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/topics"
)

// Env is what every example starts from.
type Env struct {
	Pool   *pgxpool.Pool
	Client *outbox.Client
}

// Open connects to DATABASE_URL (or TXOUTBOX_DATABASE_URL), creates the
// outbox and invoices tables when missing, loads the topic definitions
// from TOPICS (default topic_definitions.yaml, so run the examples from the
// repository root) and returns a client publishing as source.
func Open(ctx context.Context, getenv func(string) string, source string) (*Env, error) {
	url := cmp.Or(getenv("DATABASE_URL"), getenv("TXOUTBOX_DATABASE_URL"))
	if url == "" {
		return nil, errors.New("set DATABASE_URL, e.g. postgres://postgres@127.0.0.1:5432/postgres")
	}
	reg, err := topics.Load(cmp.Or(getenv("TOPICS"), "topic_definitions.yaml"))
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	client, err := outbox.New(pool, reg, &outbox.Config{Source: source})
	if err == nil {
		err = outbox.Migrate(ctx, pool, nil)
	}
	if err == nil {
		err = invoices.Migrate(ctx, pool)
	}
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &Env{Pool: pool, Client: client}, nil
}

// OpenInbox connects a consumer to DATABASE_URL (or TXOUTBOX_DATABASE_URL),
// its own database, creates the inbox table when missing, and returns the
// pool and the inbox that records the events it processed.
func OpenInbox(ctx context.Context, getenv func(string) string) (*pgxpool.Pool, *inbox.Inbox, error) {
	url := cmp.Or(getenv("DATABASE_URL"), getenv("TXOUTBOX_DATABASE_URL"))
	if url == "" {
		return nil, nil, errors.New("set DATABASE_URL to the consumer's database, e.g. postgres://postgres@127.0.0.1:5432/postgres")
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, nil, fmt.Errorf("connect: %w", err)
	}
	ib, err := inbox.New(nil)
	if err == nil {
		err = inbox.Migrate(ctx, pool, nil) // real services apply inbox.Migrations() with their own
	}
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return pool, ib, nil
}

// Close closes the pool.
func (e *Env) Close() { e.Pool.Close() }

// Main runs run until SIGINT or SIGTERM and exits 1 when it fails: the
// main function of every example.
func Main(name string, run func(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// RunServer opens the Env, listens on ADDR (by default addr) and serves
// the handler newHandler builds until ctx is done.
func RunServer(ctx context.Context, getenv func(string) string, stdout io.Writer, addr string, newHandler func(*Env) http.Handler) error {
	env, err := Open(ctx, getenv, "billing-api")
	if err != nil {
		return err
	}
	defer env.Close()
	ln, err := Listen(getenv, addr, stdout)
	if err != nil {
		return err
	}
	return Serve(ctx, ln, newHandler(env))
}

// Listen listens on ADDR, by default addr (a loopback address), and tells
// stdout where.
func Listen(getenv func(string) string, addr string, stdout io.Writer) (net.Listener, error) {
	ln, err := net.Listen("tcp", cmp.Or(getenv("ADDR"), addr))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())
	return ln, nil
}

// Serve serves h on ln until ctx is done, then lets requests in flight
// finish (for up to 10 seconds) and returns nil.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
