package pgtest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/internal/pgtest"
)

// TestMain checks, after the shared cluster is gone, that nothing pgtest
// started is still running.
func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Wrap(m)) }

func TestNewPool(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := pgtest.NewPool(t)
	if _, err := pool.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "INSERT INTO t VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("count = %d, want 2", n)
	}
}

func TestNewDBIsFreshPerTest(t *testing.T) {
	t.Parallel()
	var names []string
	for range 3 {
		t.Run("sub", func(t *testing.T) {
			url := pgtest.NewDB(t)
			conn, err := pgx.Connect(t.Context(), url)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(context.Background())
			var name string
			var tables int
			err = conn.QueryRow(t.Context(), `SELECT current_database(),
				(SELECT count(*) FROM pg_tables WHERE schemaname = 'public')`).Scan(&name, &tables)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(name, pgtest.DBPrefix) {
				t.Errorf("database %q lacks prefix %q", name, pgtest.DBPrefix)
			}
			if tables != 0 {
				t.Errorf("fresh database has %d tables", tables)
			}
			if _, err := conn.Exec(t.Context(), "CREATE TABLE only_here (x int)"); err != nil {
				t.Fatal(err)
			}
			names = append(names, name)
		})
	}
	if len(names) != 3 || names[0] == names[1] || names[1] == names[2] {
		t.Fatalf("database names not unique: %v", names)
	}
}
