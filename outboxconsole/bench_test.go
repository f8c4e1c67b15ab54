package outboxconsole

import (
	"io/fs"
	"regexp"
	"testing"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
)

// benchRows is the size of the outbox the list benchmarks page through.
const benchRows = 1_000_000

// BenchmarkList1M pages through an outbox of a million events (four topics;
// a tenth dead, a tenth pending, the rest delivered) the way the console's
// list does: the first page and a page deep behind a cursor, by state and
// topic, and the count a bulk action's dry run shows.
//
//	go test -run '^$' -bench List1M -benchtime 200x ./outboxconsole/
func BenchmarkList1M(b *testing.B) {
	ctx := b.Context()
	pool := migrated(b)
	// Indexes are built faster than they are kept up to date row by row:
	// drop migration 004's while seeding, then build them again from it.
	up, err := fs.ReadFile(outboxsql.MigrationFS(), "004_console_indexes.up.sql")
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`CREATE INDEX IF NOT EXISTS (\w+)`).FindAllStringSubmatch(string(up), -1) {
		exec(b, pool, "DROP INDEX "+m[1])
	}
	exec(b, pool, `INSERT INTO txoutbox_events (id, topic, category, entity, action, data, actor_id, actor_type,
			job_id, source, key, tenant, published_at, status, attempts, last_error, delivered_at)
		SELECT gen_random_uuid(), 'billing.Invoice' || a, 'billing', 'Invoice', a, '{"id":"inv"}', 'svc', 'service',
			'job-' || (i / 100), 'bench', 'key-' || (i % 50000), 'tenant-' || (i % 10),
			now() - interval '2 hours' + i * interval '5 ms',
			CASE i % 10 WHEN 0 THEN 'dead' WHEN 1 THEN 'pending' ELSE 'delivered' END,
			CASE i % 10 WHEN 0 THEN 10 ELSE 0 END,
			CASE i % 10 WHEN 0 THEN 'HTTP 422: invalid ' || (i % 7) END,
			CASE WHEN i % 10 >= 2 THEN now() END
		FROM generate_series(1, $1::int) i, LATERAL (SELECT (ARRAY['Created','Paid','Overdue','Voided'])[1 + (i / 10) % 4] AS a) t`, benchRows)
	exec(b, pool, string(up))
	exec(b, pool, "VACUUM ANALYZE txoutbox_events")
	s := newStore(pool)

	const topic = "billing.InvoiceVoided" // a quarter of the events; a fortieth of them dead
	deep := int64(benchRows * 9 / 10)
	for _, c := range []struct {
		name string
		f    Filter
	}{
		{"dead+topic/first", Filter{State: outboxsql.StatusDead, Topic: topic}},
		{"dead+topic/deep", Filter{State: outboxsql.StatusDead, Topic: topic, After: deep}},
		{"dead/first", Filter{State: outboxsql.StatusDead}},
		{"dead/deep", Filter{State: outboxsql.StatusDead, After: deep}},
		{"pending+topic/first", Filter{State: outboxsql.StatusPending, Topic: topic}},
		{"pending+topic/deep", Filter{State: outboxsql.StatusPending, Topic: topic, After: deep}},
		{"topic/deep", Filter{Topic: topic, After: deep}},
		{"delivered/deep", Filter{State: outboxsql.StatusDelivered, After: deep}},
		{"key", Filter{Key: "key-4242"}},
		{"tenant/deep", Filter{Tenant: "tenant-3", After: deep}},
		{"dead+error/first", Filter{State: outboxsql.StatusDead, Error: "invalid 3"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				evs, _, err := s.list(ctx, &c.f, PageSizeDefault)
				if err != nil {
					b.Fatal(err)
				}
				if len(evs) == 0 {
					b.Fatal("an empty page")
				}
			}
		})
	}
	b.Run("dead+topic/count", func(b *testing.B) {
		for b.Loop() {
			if n, _, err := s.count(ctx, &Filter{State: outboxsql.StatusDead, Topic: topic}); err != nil || n != benchRows/40 {
				b.Fatalf("count = %d, %v; want %d", n, err, benchRows/40)
			}
		}
	})
}
