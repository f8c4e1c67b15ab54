package admin

import (
	"strings"

	"github.com/jackc/pgx/v5"
)

type queries struct {
	counts, relays, leased string
	events                 string
	replayable             string
	requeueDelivered       string
}

// The filter of Events and Replay: $1 ids (empty for any), $2 state, $3
// topic, $4 key ("" for any).
const filter = `(cardinality($1::uuid[]) = 0 OR e.id = ANY($1::uuid[]))
	AND ($2::text = '' OR e.status = $2::text)
	AND ($3::text = '' OR e.topic = $3::text)
	AND ($4::text = '' OR e.key = $4::text)`

func newQueries(schema string) queries {
	ident := func(table string) string {
		if schema == "" {
			return pgx.Identifier{table}.Sanitize()
		}
		return pgx.Identifier{schema, table}.Sanitize()
	}
	r := strings.NewReplacer(
		"{events}", ident(tableEvents),
		"{relays}", ident(tableRelays),
		"{partitions}", ident(tablePartitions),
		"{filter}", filter,
	)
	return queries{
		// One pass over the table. A pending event falls in the first of
		// retrying, blocked (its key has a dead event), in flight (its
		// partition is leased) and unclaimed that fits.
		counts: r.Replace(`WITH dead_keys AS (
				SELECT DISTINCT part, key FROM {events} WHERE status = 'dead'
			), leased AS (
				SELECT part FROM {partitions} WHERE owner IS NOT NULL AND lease_until > now()
			), classified AS (
				SELECT e.topic, e.status, e.published_at,
					CASE
						WHEN e.status <> 'pending' THEN e.status
						WHEN e.next_attempt_at > now() THEN 'retrying'
						WHEN d.key IS NOT NULL THEN 'blocked'
						WHEN l.part IS NOT NULL THEN 'in_flight'
						ELSE 'unclaimed'
					END AS state
				FROM {events} e
				LEFT JOIN dead_keys d ON e.status = 'pending' AND d.part = e.part AND d.key = e.key
				LEFT JOIN leased l ON l.part = e.part
			)
			SELECT topic,
				count(*) FILTER (WHERE status = 'pending'),
				count(*) FILTER (WHERE state = 'in_flight'),
				count(*) FILTER (WHERE state = 'retrying'),
				count(*) FILTER (WHERE state = 'blocked'),
				count(*) FILTER (WHERE state = 'unclaimed'),
				count(*) FILTER (WHERE status = 'delivered'),
				count(*) FILTER (WHERE status = 'dead'),
				coalesce((extract(epoch FROM now() - min(published_at) FILTER (WHERE status = 'pending')) * 1e6)::bigint, 0)
			FROM classified
			GROUP BY topic`),

		relays: r.Replace(`SELECT r.id, r.hostname, r.pid, r.started_at,
				(extract(epoch FROM now() - r.heartbeat_at) * 1e6)::bigint,
				(SELECT count(*) FROM {partitions} p WHERE p.owner = r.id AND p.lease_until > now())::int
			FROM {relays} r ORDER BY r.id`),
		leased: r.Replace(`SELECT count(*)::int FROM {partitions} WHERE owner IS NOT NULL AND lease_until > now()`),

		// $5 limit, $6 whether to return the data.
		events: r.Replace(`SELECT e.seq, e.id, e.topic, e.key, e.status, e.attempts, coalesce(e.last_error, ''),
				e.actor_type, e.actor_id, e.job_id, e.source, e.published_at,
				CASE WHEN e.status = 'pending' AND e.next_attempt_at > now() THEN e.next_attempt_at END,
				e.delivered_at,
				CASE WHEN $6::bool THEN e.data::text END
			FROM {events} e
			WHERE {filter}
			ORDER BY e.seq LIMIT $5`),

		replayable: r.Replace(`SELECT
				count(*) FILTER (WHERE e.status = 'dead'),
				count(*) FILTER (WHERE e.status = 'delivered')
			FROM {events} e
			WHERE e.status IN ('dead', 'delivered') AND {filter}`),

		// As relay.Replay does for dead events; delivered_at is cleared so
		// that the relay's cleanup does not delete the event before it is
		// delivered again. $1 ids, $2 topic, $3 key.
		requeueDelivered: r.Replace(`UPDATE {events} e
			SET status = 'pending', attempts = 0, next_attempt_at = '-infinity', delivered_at = NULL, last_error = NULL
			WHERE e.status = 'delivered'
				AND (cardinality($1::uuid[]) = 0 OR e.id = ANY($1::uuid[]))
				AND ($2::text = '' OR e.topic = $2::text)
				AND ($3::text = '' OR e.key = $3::text)`),
	}
}
