package relay

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
)

// TestSchemaNameHostile runs the relay on an outbox migrated into a schema
// whose name is an SQL injection: the name is quoted, so the relay delivers
// from that schema and nothing else is touched. A hostile name of a schema
// that does not exist makes Run fail saying the tables are missing; names
// outbox.Migrate refuses (which PostgreSQL would truncate, or which carry a
// NUL that quoting drops) are refused by New, naming the field.
func TestSchemaNameHostile(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := pgtest.NewDB(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	const schema = `Out"box'; DROP TABLE victim; --`
	if _, err := pool.Exec(ctx, `CREATE TABLE victim (id int)`); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Migrate(ctx, pool, &outbox.MigrateConfig{Schema: schema}); err != nil {
		t.Fatal(err)
	}
	// Events go in through a pool whose search_path is the hostile schema;
	// the relay's pool keeps the default one, which has no outbox tables.
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	inSchema, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inSchema.Close)
	insertEvents(t, inSchema, cycleKeys(50, 5)...)

	sink := &recordingSink{}
	startRelay(t, pool, sink, &Config{Schema: schema, LeaseTTL: time.Second})
	waitFor(t, 10*time.Second, "the events in the quoted schema", func() bool { return sink.distinct() == 50 })
	checkOrder(t, sink.delivered())
	var victims int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'victim'`).Scan(&victims); err != nil || victims != 1 {
		t.Fatalf("table victim: %d, %v; want it untouched", victims, err)
	}

	missing, err := New(pool, &recordingSink{}, &Config{Schema: `nope"; DROP TABLE victim; --`, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := missing.Run(runCtx); err == nil || !strings.Contains(err.Error(), "outbox tables missing") {
		t.Errorf("Run on a schema that does not exist = %v, want the missing tables named", err)
	}

	for _, bad := range []string{strings.Repeat("s", 64), "out\x00box", " outbox", "outbox\n"} {
		if _, err := New(pool, &recordingSink{}, &Config{Schema: bad}); err == nil || !strings.Contains(err.Error(), "Config.Schema") {
			t.Errorf("New with Schema %q = %v, want an error naming Config.Schema", bad, err)
		}
	}
}
