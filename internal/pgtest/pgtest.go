package pgtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

const (
	// EnvURL names the environment variable that points the tests at an existing
	// server instead of a throwaway cluster: the URL of a database there to
	// connect to for CREATE DATABASE, as a role allowed to create databases.
	EnvURL = "TXOUTBOX_TEST_DATABASE_URL"

	// DBPrefix starts the name of every database NewDB creates, so that leftovers
	// on a shared server are easy to recognise and drop.
	DBPrefix = "txoutbox_test_"

	// cleanupTimeout bounds dropping a test's database and stopping the shared
	// cluster.
	cleanupTimeout = 30 * time.Second
)

// shared is the one server per test binary that NewDB and NewPool use: the
// server named by EnvURL, or a cluster started on first use and closed by Main.
// It is package state because a test binary has exactly one, shared by every
// test in it.
var shared sharedServer

type sharedServer struct {
	mu      sync.Mutex
	started bool
	err     error         // the first start's error, returned to every later caller
	cluster *Cluster      // nil when EnvURL is used
	admin   *pgxpool.Pool // on the maintenance database, for CREATE/DROP DATABASE
	base    *url.URL      // URL whose path is replaced by the new database's name
	seq     atomic.Int64  // numbers the databases of this process
	orphans []string      // ExampleDB's databases, dropped by close
}

// Main is TestMain for packages that use NewDB or NewPool: it runs the tests,
// then stops the shared cluster and removes its directory, then exits with the
// tests' status.
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// To add a check that runs after the tests, such as goleak's, wrap m instead:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Wrap(m)) }
func Main(m *testing.M) {
	os.Exit(Wrap(m).Run())
}

// TestingM is what Wrap wraps and returns: the Run method of *testing.M, which
// is also what goleak.VerifyTestMain takes.
type TestingM interface {
	Run() int
}

// Wrap returns m with a Run that stops the shared cluster and removes its
// directory after the tests have run. A failed cleanup is reported on stderr
// and turns a passing run into a failing one.
func Wrap(m TestingM) TestingM { return wrapped{m} }

type wrapped struct{ m TestingM }

func (w wrapped) Run() int {
	code := w.m.Run()
	if err := shared.close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// NewDB creates a fresh, empty database for t and returns its URL. The
// database lives on the server named by TXOUTBOX_TEST_DATABASE_URL when that is
// set, and otherwise on a throwaway cluster this test binary starts on first
// use. It is dropped, its sessions forcibly ended, when t's cleanup runs, so
// close pools on it in cleanups registered after NewDB (NewPool does).
//
// NewDB fails t when there is no server: it never skips.
func NewDB(t testing.TB) string {
	t.Helper()
	ctx := t.Context()
	s, err := shared.get(ctx)
	if err != nil {
		t.Fatalf("%v", err)
	}
	name := dbName(t.Name(), s.seq.Add(1))
	if err := createDB(ctx, s.admin, name); err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := dropDB(ctx, s.admin, name); err != nil {
			t.Errorf("%v", err)
		}
	})
	return s.dbURL(name)
}

// ExampleDB is NewDB for Example functions, which have no testing.TB: it
// creates a fresh database and returns its URL. The database is dropped when
// Main (or Wrap's Run) finishes, after all tests and examples. Since an example
// cannot fail, ExampleDB panics when there is no server, with the same message
// NewDB would fail the test with.
func ExampleDB() string {
	ctx := context.Background()
	s, err := shared.get(ctx)
	if err != nil {
		panic(err)
	}
	name := dbName("example", s.seq.Add(1))
	if err := createDB(ctx, s.admin, name); err != nil {
		panic(err)
	}
	s.mu.Lock()
	s.orphans = append(s.orphans, name)
	s.mu.Unlock()
	return s.dbURL(name)
}

// dbURL returns the URL of database name on the shared server.
func (s *sharedServer) dbURL(name string) string {
	u := *s.base
	u.Path = "/" + name
	u.RawPath = ""
	return u.String()
}

// NewPool returns a pool on a fresh database from NewDB. The pool is closed in
// t's cleanup, before the database is dropped.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	url := NewDB(t)
	pool, err := pgxpool.New(t.Context(), url)
	if err != nil {
		t.Fatalf("pgtest: open pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// get returns the shared server, starting it on first use.
func (s *sharedServer) get(ctx context.Context) (*sharedServer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		s.started = true
		s.err = s.start(ctx)
	}
	return s, s.err
}

func (s *sharedServer) start(ctx context.Context) error {
	// The shared server outlives the test that happens to start it.
	ctx = context.WithoutCancel(ctx)
	adminURL := os.Getenv(EnvURL)
	if adminURL == "" {
		c, err := Start(ctx, nil)
		if err != nil {
			var nf *NotFoundError
			if errors.As(err, &nf) {
				return err
			}
			return fmt.Errorf("pgtest: start the shared test cluster (or set %s to use a running server): %w", EnvURL, err)
		}
		s.cluster = c
		adminURL = c.URL("postgres")
	}
	base, err := url.Parse(adminURL)
	if err != nil || (base.Scheme != "postgres" && base.Scheme != "postgresql") {
		return fmt.Errorf("pgtest: %s must be a postgres:// URL, got %q", EnvURL, adminURL)
	}
	s.base = base
	cfg, err := pgxpool.ParseConfig(adminURL)
	if err != nil {
		return fmt.Errorf("pgtest: parse %s: %w", adminURL, err)
	}
	cfg.MaxConns = 4
	s.admin, err = pgxpool.NewWithConfig(ctx, cfg)
	if err == nil {
		err = s.admin.Ping(ctx)
	}
	if err != nil {
		return fmt.Errorf("pgtest: connect to %s: %w", base.Redacted(), err)
	}
	return nil
}

// close releases the shared server: the admin pool, and the cluster if one was
// started. The server named by EnvURL is left running.
func (s *sharedServer) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if s.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		for _, name := range s.orphans {
			errs = append(errs, dropDB(ctx, s.admin, name))
		}
		s.admin.Close()
		s.admin = nil
	}
	s.orphans = nil
	if s.cluster != nil {
		errs = append(errs, s.cluster.Close())
		s.cluster = nil
	}
	s.started, s.err = false, nil
	return errors.Join(errs...)
}

// execer is what createDB and dropDB need: a pool or a connection.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func createDB(ctx context.Context, db execer, name string) error {
	// template0 is never connected to, so creating from it cannot fail with
	// "source database is being accessed by other users".
	_, err := db.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0")
	if err != nil {
		return fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return nil
}

// FORCE does not end replication: the WAL senders of the database's
// replication slots are ended, and its slots dropped, first. A temporary
// slot is gone once its WAL sender has exited, which the drop may have to
// wait a moment for.
func dropDB(ctx context.Context, db execer, name string) error {
	var err error
	for range 50 {
		if _, err = db.Exec(ctx, `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
			WHERE database = $1 AND active_pid IS NOT NULL`, name); err != nil {
			break
		}
		if _, err = db.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
			WHERE database = $1 AND NOT temporary AND NOT active`, name); err != nil && !isObjectInUse(err) {
			break
		}
		_, err = db.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		if !isObjectInUse(err) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("pgtest: drop database %s: %w", name, err)
	}
	return nil
}

// isObjectInUse reports a replication slot still in use (SQLSTATE 55006).
func isObjectInUse(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55006"
}

// dbName makes a database name unique across processes sharing one server
// (random part) and within this process (seq), and recognisable (DBPrefix, the
// test's name), within PostgreSQL's 63-byte limit.
func dbName(testName string, seq int64) string {
	prefix := fmt.Sprintf("%s%08x_%d_", DBPrefix, rand.Uint32(), seq)
	var slug strings.Builder
	for _, r := range strings.ToLower(testName) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			slug.WriteRune(r)
		default:
			slug.WriteByte('_')
		}
	}
	return truncate(prefix+slug.String(), 63)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
