package outbox_test

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
)

// examplePool returns a pool on a fresh, migrated database for Example
// functions, which have no *testing.T of their own. The caller closes the
// pool; the database is dropped after the last test.
func examplePool() *pgxpool.Pool {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.ExampleDB())
	if err != nil {
		panic(err)
	}
	if err := outbox.Migrate(ctx, pool, nil); err != nil {
		panic(err)
	}
	return pool
}
