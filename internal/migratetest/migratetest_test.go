package migratetest

import (
	"context"
	"database/sql"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"testing"

	"github.com/golang-migrate/migrate/v4"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// A set of migrations, in both layouts, and the library's own way to apply
// them, whose result the tools must reproduce.
type set struct {
	name          string
	golangMigrate fs.FS
	goose         fs.FS
	migrate       func(ctx context.Context, pool *pgxpool.Pool) error
	table         string // a table the migrations create
}

var sets = []set{
	{"outbox", outbox.Migrations(), outbox.GooseMigrations(), func(ctx context.Context, pool *pgxpool.Pool) error {
		return outbox.Migrate(ctx, pool, nil)
	}, "txoutbox_events"},
	{"eventsapi", eventsapi.PostgresMigrations(), eventsapi.PostgresGooseMigrations(), func(ctx context.Context, pool *pgxpool.Pool) error {
		return eventsapi.MigratePostgres(ctx, pool, nil)
	}, "txoutbox_events_api_events"},
}

// A migration tool: up applies the next migration, down reverts the last
// one applied.
type tool struct {
	up, down func(ctx context.Context) error
}

func TestGoose(t *testing.T) {
	t.Parallel()
	forEachSet(t, func(t *testing.T, s set, pool *pgxpool.Pool) tool {
		db := stdlib.OpenDBFromPool(pool)
		t.Cleanup(func() { db.Close() })
		p, err := goose.NewProvider(goose.DialectPostgres, db, s.goose, goose.WithTableName("tool_goose_version"))
		if err != nil {
			t.Fatal(err)
		}
		if got := len(p.ListSources()); got == 0 {
			t.Fatal("goose finds no migrations")
		}
		return tool{
			up:   func(ctx context.Context) error { _, err := p.UpByOne(ctx); return err },
			down: func(ctx context.Context) error { _, err := p.Down(ctx); return err },
		}
	})
}

func TestGolangMigrate(t *testing.T) {
	t.Parallel()
	forEachSet(t, func(t *testing.T, s set, pool *pgxpool.Pool) tool {
		db := stdlib.OpenDBFromPool(pool)
		t.Cleanup(func() { db.Close() })
		m := newGolangMigrate(t, db, s.golangMigrate)
		step := func(n int) error {
			if err := m.Steps(n); err != nil {
				return err
			}
			if _, dirty, err := versionOf(m); err != nil || dirty {
				return errors.Join(err, errors.New("golang-migrate is left dirty"))
			}
			return nil
		}
		return tool{
			up:   func(context.Context) error { return step(1) },
			down: func(context.Context) error { return step(-1) },
		}
	})
}

// forEachSet runs testTool on every set, in parallel.
func forEachSet(t *testing.T, newTool func(*testing.T, set, *pgxpool.Pool) tool) {
	for _, s := range sets {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			testTool(t, s, func(t *testing.T, pool *pgxpool.Pool) tool { return newTool(t, s, pool) })
		})
	}
}

func newGolangMigrate(t *testing.T, db *sql.DB, files fs.FS) *migrate.Migrate {
	t.Helper()
	src, err := iofs.New(files, ".")
	if err != nil {
		t.Fatal(err)
	}
	drv, err := migratepgx.WithInstance(db, &migratepgx.Config{MigrationsTable: "tool_schema_migrations"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", drv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() }) // releases the connection the driver holds
	return m
}

func versionOf(m *migrate.Migrate) (uint, bool, error) {
	v, dirty, err := m.Version()
	if errors.Is(err, migrate.ErrNilVersion) {
		return 0, false, nil
	}
	return v, dirty, err
}

// testTool applies s's n migrations with the tool one by one, reverts them
// one by one, and applies them again, comparing the schema at each step:
// after all ups it is what the library's own Migrate makes, and after each
// down exactly what it was before the up it reverts.
func testTool(t *testing.T, s set, newTool func(*testing.T, *pgxpool.Pool) tool) {
	ctx := t.Context()
	want := pgtest.NewPool(t)
	if err := s.migrate(ctx, want); err != nil {
		t.Fatal(err)
	}
	migrated := snapshot(t, want)
	if !slices.ContainsFunc(migrated, func(l string) bool { return strings.HasPrefix(l, "table "+s.table+" ") }) {
		t.Fatalf("the library's migration made no %s:\n%s", s.table, strings.Join(migrated, "\n"))
	}
	ups, err := fs.Glob(s.golangMigrate, "*.up.sql")
	if err != nil || len(ups) == 0 {
		t.Fatalf("no up migrations (%v)", err)
	}
	n := len(ups)

	pool := pgtest.NewPool(t)
	tl := newTool(t, pool)
	states := [][]string{snapshot(t, pool)} // states[i]: after i migrations
	for round := range 2 {
		for i := 1; i <= n; i++ {
			if err := tl.up(ctx); err != nil {
				t.Fatalf("round %d: up to migration %d: %v", round+1, i, err)
			}
			got := snapshot(t, pool)
			if round == 0 {
				states = append(states, got)
				if slices.Equal(got, states[i-1]) {
					t.Errorf("migration %d changed nothing", i)
				}
			} else if !slices.Equal(got, states[i]) {
				t.Errorf("round 2: migration %d, applied again, made another schema:\n%s", i, diffLines(states[i], got))
			}
		}
		if got := states[n]; !slices.Equal(got, migrated) {
			t.Fatalf("the tool's schema differs from Migrate's:\n%s", diffLines(migrated, got))
		}
		for i := n; i >= 1; i-- {
			if err := tl.down(ctx); err != nil {
				t.Fatalf("round %d: down from migration %d: %v", round+1, i, err)
			}
			if got := snapshot(t, pool); !slices.Equal(got, states[i-1]) {
				t.Errorf("round %d: down from migration %d leaves a schema other than before its up:\n%s", round+1, i, diffLines(states[i-1], got))
			}
		}
	}
}

// snapshot lists what the search_path's schema holds, one line per
// relation, column, constraint, index, sequence and publication, sorted; the tools' and
// the library's version tables are left out.
func snapshot(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	const q = `
WITH rel AS (
	SELECT c.oid, c.relname, c.relkind FROM pg_class c
	WHERE c.relnamespace = current_schema()::regnamespace
	  AND c.relname NOT LIKE 'tool\_%' AND c.relname NOT LIKE '%migrations%'
)
SELECT line FROM (
	SELECT CASE relkind WHEN 'r' THEN 'table ' WHEN 'i' THEN 'index ' WHEN 'S' THEN 'sequence ' ELSE 'relation ' END
		|| relname || ' ' || relkind::text AS line FROM rel
	UNION ALL
	SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type || ' null=' || is_nullable
		|| ' default=' || coalesce(column_default, '') || ' generated=' || coalesce(generation_expression, '')
		|| ' identity=' || is_identity
	FROM information_schema.columns
	WHERE table_schema = current_schema() AND table_name IN (SELECT relname FROM rel)
	UNION ALL
	SELECT 'constraint ' || rel.relname || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
	FROM pg_constraint co JOIN rel ON rel.oid = co.conrelid
	UNION ALL
	SELECT 'indexdef ' || indexdef FROM pg_indexes
	WHERE schemaname = current_schema() AND tablename IN (SELECT relname FROM rel)
	UNION ALL
	SELECT 'owned ' || seq.relname || ' by ' || tab.relname
	FROM pg_depend d JOIN rel seq ON seq.oid = d.objid JOIN rel tab ON tab.oid = d.refobjid
	WHERE seq.relkind = 'S' AND d.deptype IN ('a', 'i')
	UNION ALL
	SELECT 'publication ' || p.pubname || ' of ' || rel.relname || ' insert=' || p.pubinsert::text
	FROM pg_publication p JOIN pg_publication_rel pr ON pr.prpubid = p.oid JOIN rel ON rel.oid = pr.prrelid
	UNION ALL
	SELECT 'rows ' || relname || ' ' || (xpath('/row/n/text()', query_to_xml(format('SELECT count(*) AS n FROM %I', relname), false, true, '')))[1]::text
	FROM rel WHERE relkind = 'r'
) lines ORDER BY line`
	rows, err := pool.Query(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for rows.Next() {
		var l string
		if err := rows.Scan(&l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

func diffLines(want, got []string) string {
	var b strings.Builder
	for _, l := range want {
		if !slices.Contains(got, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range got {
		if !slices.Contains(want, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}
