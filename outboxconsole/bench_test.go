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
// topic, and the count a bulk action's dry run shows. Of the pending
// events, a twentieth are blocked (their key has dead events), a twentieth
// retrying, and the rest split three to one between in flight and
// unclaimed by the partitions a relay holds.
//
//	go test -run '^$' -bench List1M -benchtime 200x ./outboxconsole/
func BenchmarkList1M(b *testing.B) {
	ctx := b.Context()
	pool := migrated(b)
	// Indexes are built faster than they are kept up to date row by row:
	// drop those of migrations 004 and 006 while seeding, then build them
	// again from them.
	var up []byte
	for _, name := range []string{"004_console_indexes.up.sql", "006_pending_state_index.up.sql", "007_pending_topic_index.up.sql"} {
		sql, err := fs.ReadFile(outboxsql.MigrationFS(), name)
		if err != nil {
			b.Fatal(err)
		}
		up = append(append(up, sql...), '\n')
	}
	for _, m := range regexp.MustCompile(`CREATE INDEX IF NOT EXISTS (\w+)`).FindAllStringSubmatch(string(up), -1) {
		exec(b, pool, "DROP INDEX "+m[1])
	}
	exec(b, pool, `INSERT INTO txoutbox_events (id, topic, category, entity, action, data, actor_id, actor_type,
			job_id, source, key, tenant, published_at, status, attempts, next_attempt_at, last_error, delivered_at)
		SELECT gen_random_uuid(), 'billing.Invoice' || a, 'billing', 'Invoice', a, '{"id":"inv"}', 'svc', 'service',
			'job-' || (i / 100), 'bench', 'key-' || (CASE WHEN blocked THEN i - 1 ELSE i END % 50000), 'tenant-' || (i % 10),
			now() - interval '2 hours' + i * interval '5 ms',
			CASE i % 10 WHEN 0 THEN 'dead' WHEN 1 THEN 'pending' ELSE 'delivered' END,
			CASE WHEN i % 10 = 0 THEN 10 WHEN retrying THEN 3 ELSE 0 END,
			CASE WHEN retrying THEN now() + interval '1 hour' ELSE '-infinity' END,
			CASE WHEN i % 10 = 0 THEN 'HTTP 422: invalid ' || (i % 7) WHEN retrying THEN 'HTTP 503' END,
			CASE WHEN i % 10 >= 2 THEN now() END
		FROM generate_series(1, $1::int) i,
			LATERAL (SELECT (ARRAY['Created','Paid','Overdue','Voided'])[1 + (i / 10) % 4] AS a,
				i % 10 = 1 AND (i / 10) % 20 = 0 AS blocked, i % 10 = 1 AND (i / 10) % 20 = 1 AS retrying) t`, benchRows)
	// A relay holds three quarters of the partitions: their pending events
	// are in flight, the others' unclaimed.
	exec(b, pool, `UPDATE txoutbox_partitions SET owner = 'bench', lease_until = now() + interval '1 day' WHERE part < 48`)
	exec(b, pool, string(up))
	exec(b, pool, "VACUUM ANALYZE txoutbox_events")
	s := newStore(pool)

	const topic = "billing.InvoiceVoided" // a quarter of the events; a fortieth of them dead
	deep := int64(benchRows * 9 / 10)
	for _, c := range []struct {
		name  string
		f     Filter
		empty bool // the page is empty: every pending event is read
	}{
		{"dead+topic/first", Filter{State: outboxsql.StatusDead, Topic: topic}, false},
		{"dead+topic/deep", Filter{State: outboxsql.StatusDead, Topic: topic, After: deep}, false},
		{"dead/first", Filter{State: outboxsql.StatusDead}, false},
		{"dead/deep", Filter{State: outboxsql.StatusDead, After: deep}, false},
		{"pending+topic/first", Filter{State: outboxsql.StatusPending, Topic: topic}, false},
		{"pending+topic/deep", Filter{State: outboxsql.StatusPending, Topic: topic, After: deep}, false},
		{"topic/deep", Filter{Topic: topic, After: deep}, false},
		{"delivered/deep", Filter{State: outboxsql.StatusDelivered, After: deep}, false},
		{"key", Filter{Key: "key-4242"}, false},
		{"tenant/deep", Filter{Tenant: "tenant-3", After: deep}, false},
		{"dead+error/first", Filter{State: outboxsql.StatusDead, Error: "invalid 3"}, false},
		{"blocked/first", Filter{State: outboxsql.StateBlocked}, false},
		{"blocked/deep", Filter{State: outboxsql.StateBlocked, After: deep}, false},
		{"blocked+topic/none", Filter{State: outboxsql.StateBlocked, Topic: topic}, true},
		{"retrying/first", Filter{State: outboxsql.StateRetrying}, false},
		{"retrying/deep", Filter{State: outboxsql.StateRetrying, After: deep}, false},
		{"in-flight/first", Filter{State: outboxsql.StateInFlight}, false},
		{"in-flight/deep", Filter{State: outboxsql.StateInFlight, After: deep}, false},
		{"unclaimed/first", Filter{State: outboxsql.StateUnclaimed}, false},
		{"unclaimed/deep", Filter{State: outboxsql.StateUnclaimed, After: deep}, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				evs, _, err := s.list(ctx, &c.f, PageSizeDefault)
				if err != nil {
					b.Fatal(err)
				}
				if (len(evs) == 0) != c.empty {
					b.Fatalf("%d events, want them empty: %v", len(evs), c.empty)
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
