package relay

import (
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/outbox"
)

// Tables the relay uses besides outbox.TableEvents (outbox/migrations/002).
const (
	tableRelays     = "txoutbox_relays"
	tablePartitions = "txoutbox_partitions"
)

// Durations travel as microseconds (bigint) and become intervals in SQL, so
// that no Go duration is ever compared with the relay's clock: lease and retry
// times are all computed with the database's now().
//
// The read selects pending rows of the owned partitions ($1), oldest first, by
// walking the partial index on pending seqs. The partitions travel as an
// array, whose selectivity Postgres estimates well: a bit-mask test looked
// cheaper per row, but its default 0.5% estimate made the planner pick a
// parallel scan that cost 8ms per batch instead of 1ms. The blocked keys ($3)
// are known to this relay only: keys waiting for a retry and keys with a
// dead event whose topic's policy is PoisonBlock (see Relay.read for how the
// filter stays cheap). The rows of $4 are a batch being recorded while the
// next is read.
//
// The columns are in the order decodeRow reads them. wait_us > 0 marks a row
// whose retry is not due: its key waits, and so do the key's later rows.
const readColumns = `seq, id, part, key, attempts,
	CASE WHEN next_attempt_at > now() THEN (extract(epoch FROM next_attempt_at - now()) * 1e6)::bigint ELSE 0 END,
	topic, category, entity, action, data, actor_id, actor_type, job_id, source,
	coalesce(traceparent, ''), coalesce(tenant, ''), coalesce(causation_id::text, ''), coalesce(dedupe_key, ''),
	published_at`

type queries struct {
	read            string
	deleteDelivered string
	markDelivered   string
	recordFailed    string
	deadKeys        string
	cleanup         string

	heartbeat, renew, liveRelays, pruneRelays string
	acquire, release, releaseAll, deregister  string
	replay                                    string
}

func newQueries(schema string) queries {
	ident := func(table string) string {
		if schema == "" {
			return pgx.Identifier{table}.Sanitize()
		}
		return pgx.Identifier{schema, table}.Sanitize()
	}
	r := strings.NewReplacer(
		"{events}", ident(outbox.TableEvents),
		"{relays}", ident(tableRelays),
		"{partitions}", ident(tablePartitions),
	)
	return queries{
		read: r.Replace(`SELECT ` + readColumns + ` FROM {events}
			WHERE status = 'pending' AND part = ANY($1::smallint[]) AND key <> ALL($3::text[])
				AND seq <> ALL($4::bigint[])
			ORDER BY seq LIMIT $2`),

		deleteDelivered: r.Replace(`DELETE FROM {events} WHERE seq = ANY($1::bigint[])`),
		markDelivered: r.Replace(`UPDATE {events}
			SET status = 'delivered', delivered_at = now(), attempts = attempts + 1, last_error = NULL
			WHERE seq = ANY($1::bigint[]) AND status = 'pending'`),

		// Only rows of partitions this relay still owns: after losing a
		// partition, its new owner's record of the row is the one that
		// counts. The status is decided here, from the stored attempts.
		recordFailed: r.Replace(`UPDATE {events} e
			SET attempts = e.attempts + 1,
				next_attempt_at = now() + u.wait_us * interval '1 microsecond',
				last_error = u.err,
				status = CASE WHEN u.permanent AND e.attempts + 1 >= $6 THEN 'dead' ELSE 'pending' END
			FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bool[]) AS u(seq, wait_us, err, permanent)
			WHERE e.seq = u.seq AND e.status = 'pending'
				AND EXISTS (SELECT 1 FROM {partitions} p WHERE p.part = e.part AND p.owner = $5)
			RETURNING e.seq, e.status = 'dead', e.attempts`),

		deadKeys: r.Replace(`SELECT DISTINCT part, key, topic FROM {events}
			WHERE status = 'dead' AND part = ANY($1::smallint[])`),

		cleanup: r.Replace(`DELETE FROM {events} WHERE seq IN (
			SELECT seq FROM {events}
			WHERE status = 'delivered' AND delivered_at < now() - $1 * interval '1 microsecond'
			ORDER BY delivered_at LIMIT $2 FOR UPDATE SKIP LOCKED)`),

		heartbeat: r.Replace(`INSERT INTO {relays} (id, hostname, pid) VALUES ($1, $2, $3)
			ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()`),
		renew: r.Replace(`UPDATE {partitions} SET lease_until = now() + $2 * interval '1 microsecond'
			WHERE owner = $1 RETURNING part`),
		liveRelays: r.Replace(`SELECT count(*) FROM {relays}
			WHERE heartbeat_at > now() - $1 * interval '1 microsecond'`),
		pruneRelays: r.Replace(`DELETE FROM {relays}
			WHERE heartbeat_at < now() - 10 * $1 * interval '1 microsecond'`),
		acquire: r.Replace(`UPDATE {partitions} p
			SET owner = $1, lease_until = now() + $2 * interval '1 microsecond'
			FROM (SELECT part FROM {partitions}
				WHERE owner IS NULL OR lease_until < now()
				ORDER BY part LIMIT $3 FOR UPDATE SKIP LOCKED) f
			WHERE p.part = f.part
			RETURNING p.part`),
		release: r.Replace(`UPDATE {partitions} SET owner = NULL, lease_until = '-infinity'
			WHERE owner = $1 AND part = ANY($2::smallint[])`),
		releaseAll: r.Replace(`UPDATE {partitions} SET owner = NULL, lease_until = '-infinity'
			WHERE owner = $1`),
		deregister: r.Replace(`DELETE FROM {relays} WHERE id = $1`),

		replay: r.Replace(`UPDATE {events}
			SET status = 'pending', attempts = 0, next_attempt_at = '-infinity'
			WHERE status = 'dead'
				AND (cardinality($1::uuid[]) = 0 OR id = ANY($1::uuid[]))
				AND ($2 = '' OR topic = $2)
				AND ($3 = '' OR key = $3)`),
	}
}
