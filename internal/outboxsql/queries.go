package outboxsql

import (
	"strings"
	"sync"
)

// Queries are the statements of one schema, built by New with the tables'
// names quoted and qualified. Parameters are documented where a statement
// is defined; callers pass them in that order.
type Queries struct {
	Relay   RelayQueries
	Admin   AdminQueries
	Console ConsoleQueries
	Backlog string // outboxprom's backlog gauges
	// ReadEvents reads events for outboxtest's assertions.
	ReadEvents string

	events  string            // quoted name of the outbox table
	console *strings.Replacer // fills the console's statements in
	insert  sync.Map          // InsertShape → statement text
}

// RelayQueries are the relay's statements.
type RelayQueries struct {
	Read            string
	DeleteDelivered string
	MarkDelivered   string
	RecordFailed    string
	DeadKeys        string
	Cleanup         string

	Heartbeat, Renew, LiveRelays, PruneRelays string
	Acquire, Release, ReleaseAll, Deregister  string
	Replay                                    string
	WALPublication                            string
	Spill, SpilledKeys, TableKeys             string
}

// AdminQueries are the statements behind `txoutbox status`, `inspect` and
// `replay`.
type AdminQueries struct {
	Counts, Relays, Leased string
	Events                 string
	Replayable             string
	RequeueDelivered       string
}

// ReadColumns are the columns of RelayQueries.Read, in the order the relay
// decodes them. The sixth, the microseconds until a row's retry is due, is
// above 0 for a row whose retry is not due: its key waits, and so do the
// key's later rows.
const ReadColumns = `seq, id, part, key, attempts,
	CASE WHEN next_attempt_at > now() THEN (extract(epoch FROM next_attempt_at - now()) * 1e6)::bigint ELSE 0 END,
	topic, category, entity, action, data, actor_id, actor_type, job_id, source,
	coalesce(traceparent, ''), coalesce(tenant, ''), coalesce(causation_id::text, ''), coalesce(dedupe_key, ''),
	published_at, coalesce(target_collection, ''), coalesce(target_project, ''), coalesce(target_layout, '')`

// Pending events are split by what they wait for into these states, which
// the admin queries' state column holds (and a delivered or dead event its
// status).
const (
	StateInFlight  = "in_flight" // due, in a partition a relay holds
	StateRetrying  = "retrying"  // failed before; waiting out a backoff
	StateBlocked   = "blocked"   // due, but its key has a dead event
	StateUnclaimed = "unclaimed" // due, in a partition no relay holds
)

// stateCase is the one rule that sorts events into states: a pending
// event falls in the first of retrying, blocked, in flight and unclaimed
// that fits (pendingState); others keep their status. blocked and leased
// are the tests of "its key has a dead event" and "a relay holds its
// partition", which the two WITH clauses below make in the way that suits
// them.
func stateCase(blocked, leased string) string {
	return `CASE WHEN e.status <> 'pending' THEN e.status ELSE ` + pendingState(blocked, leased) + ` END`
}

// pendingState is the state of pending event e. It reads no column but
// part, key and next_attempt_at, which migration 006's index of pending
// events holds.
func pendingState(blocked, leased string) string {
	return `CASE
				WHEN e.next_attempt_at > now() THEN '` + StateRetrying + `'
				WHEN ` + blocked + ` THEN '` + StateBlocked + `'
				WHEN ` + leased + ` THEN '` + StateInFlight + `'
				ELSE '` + StateUnclaimed + `'
			END`
}

// classifiedEvents is a WITH clause whose "classified" is the events with
// their state, for queries that read the whole table: the dead keys and
// leased partitions are gathered once and joined.
var classifiedEvents = `WITH dead_keys AS (
		SELECT DISTINCT part, key FROM {events} WHERE status = 'dead'
	), leased AS (
		SELECT part FROM {partitions} WHERE owner IS NOT NULL AND lease_until > now()
	), classified AS (
		SELECT e.*, ` + stateCase("d.key IS NOT NULL", "l.part IS NOT NULL") + ` AS state
		FROM {events} e
		LEFT JOIN dead_keys d ON e.status = 'pending' AND d.part = e.part AND d.key = e.key
		LEFT JOIN leased l ON l.part = e.part
	)`

// The tests of stateCase for one row e at a time, by index probes, so
// that a page costs its own rows, not a pass over every dead event. OFFSET
// 0 keeps Postgres from hashing every dead key instead, at the first
// pending row, which costs a page 70ms at 100,000 dead events.
const (
	blockedProbe = `EXISTS (SELECT 1 FROM {events} d WHERE d.status = 'dead' AND d.part = e.part AND d.key = e.key OFFSET 0)`
	leasedProbe  = `EXISTS (SELECT 1 FROM {partitions} l WHERE l.part = e.part AND l.owner IS NOT NULL AND l.lease_until > now() OFFSET 0)`
)

// classifiedRows is classifiedEvents for queries that read a page of rows
// by an index: the state is worked out per row returned, by the probes.
// A list of a pending state picks its rows by {pending_state}, the same
// rule on a pending row, which an index holds every column of.
var classifiedRows = `WITH classified AS (
		SELECT e.*, ` + stateCase(blockedProbe, leasedProbe) + ` AS state
		FROM {events} e
	)`

// replaySet makes a dead event pending again, due at once, its attempts
// reset.
const replaySet = `SET status = 'pending', attempts = 0, next_attempt_at = '-infinity'`

// adminFilter is the filter of AdminQueries.Events and Replayable, on
// classified events: $1 ids (empty for any), $2 status or state, $3 topic,
// $4 key ("" for any).
const adminFilter = `(cardinality($1::uuid[]) = 0 OR e.id = ANY($1::uuid[]))
	AND ($2::text = '' OR e.status = $2::text OR e.state = $2::text)
	AND ($3::text = '' OR e.topic = $3::text)
	AND ($4::text = '' OR e.key = $4::text)`

// New returns the statements of the tables in schema, or on the
// search_path when schema is "". schema is quoted, never spliced in as is;
// check it with CheckSchema first.
func New(schema string) *Queries {
	tables := []string{
		"{events}", Table(schema, TableEvents),
		"{relays}", Table(schema, TableRelays),
		"{partitions}", Table(schema, TablePartitions),
		"{samples}", Table(schema, TableSamples),
		"{actions}", Table(schema, TableActions),
	}
	r := strings.NewReplacer(append(tables,
		"{filter}", adminFilter,
		"{classified}", strings.NewReplacer(tables...).Replace(classifiedEvents),
		"{classified_rows}", strings.NewReplacer(tables...).Replace(classifiedRows),
		"{pending_state}", strings.NewReplacer(tables...).Replace(pendingState(blockedProbe, leasedProbe)),
	)...)
	return &Queries{
		Relay:   newRelayQueries(r),
		Admin:   newAdminQueries(r),
		Console: newConsoleQueries(r),
		events:  Table(schema, TableEvents),
		console: r,

		// One query per scrape, on the partial indexes of pending and dead
		// rows: pending count, age of the oldest in seconds, dead count.
		Backlog: r.Replace(`SELECT
	(SELECT count(*) FROM {events} WHERE status = 'pending'),
	coalesce(extract(epoch FROM now() - (SELECT published_at FROM {events} WHERE status = 'pending' ORDER BY seq LIMIT 1)), 0)::float8,
	(SELECT count(*) FROM {events} WHERE status = 'dead')`),

		// Events in insert order. $1 is the topics to read, NULL for all;
		// $2 the most rows to return, NULL for all. The last column counts
		// the rows before the limit.
		ReadEvents: r.Replace(`SELECT id::text, topic, category, entity, action, data::text,
	actor_id, actor_type, job_id, source, key, coalesce(traceparent, ''),
	coalesce(tenant, ''), coalesce(causation_id::text, ''), coalesce(dedupe_key, ''),
	published_at, coalesce(target_collection, ''), coalesce(target_project, ''),
	coalesce(target_layout, ''), count(*) OVER ()
FROM {events}
WHERE $1::text[] IS NULL OR topic = ANY($1::text[])
ORDER BY seq
LIMIT $2::bigint`),
	}
}

// Durations travel as microseconds (bigint) and become intervals in SQL, so
// that no Go duration is ever compared with the relay's clock: lease and retry
// times are all computed with the database's now().
func newRelayQueries(r *strings.Replacer) RelayQueries {
	return RelayQueries{
		// The read selects pending rows of the owned partitions ($1), oldest
		// first, by walking the partial index on pending seqs. The
		// partitions travel as an array, whose selectivity Postgres
		// estimates well: a bit-mask test looked cheaper per row, but its
		// default 0.5% estimate made the planner pick a parallel scan that
		// cost 8ms per batch instead of 1ms. $2 is the batch size. The
		// blocked keys ($3) are known to the relay only: keys waiting for a
		// retry and keys with a dead event whose topic's policy is
		// PoisonBlock (see the relay's read for how the filter stays
		// cheap). The rows of $4 are a batch being recorded while the
		// next is read.
		Read: r.Replace(`SELECT ` + ReadColumns + ` FROM {events}
			WHERE status = 'pending' AND part = ANY($1::smallint[]) AND key <> ALL($3::text[])
				AND seq <> ALL($4::bigint[])
			ORDER BY seq LIMIT $2`),

		// $1 seqs.
		DeleteDelivered: r.Replace(`DELETE FROM {events} WHERE seq = ANY($1::bigint[])`),
		MarkDelivered: r.Replace(`UPDATE {events}
			SET status = 'delivered', delivered_at = now(), attempts = attempts + 1, last_error = NULL
			WHERE seq = ANY($1::bigint[]) AND status = 'pending'`),

		// $1-$4 the failed rows' seqs, retry waits, errors and whether the
		// failure is permanent; $5 the relay's id; $6 the most attempts.
		// Only rows of partitions this relay still owns: after losing a
		// partition, its new owner's record of the row is the one that
		// counts. The status is decided here, from the stored attempts.
		RecordFailed: r.Replace(`UPDATE {events} e
			SET attempts = e.attempts + 1,
				next_attempt_at = now() + u.wait_us * interval '1 microsecond',
				last_error = u.err,
				status = CASE WHEN u.permanent OR e.attempts + 1 >= $6 THEN 'dead' ELSE 'pending' END
			FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bool[]) AS u(seq, wait_us, err, permanent)
			WHERE e.seq = u.seq AND e.status = 'pending'
				AND EXISTS (SELECT 1 FROM {partitions} p WHERE p.part = e.part AND p.owner = $5)
			RETURNING e.seq, e.status = 'dead', e.attempts`),

		// $1 partitions.
		DeadKeys: r.Replace(`SELECT DISTINCT part, key, topic FROM {events}
			WHERE status = 'dead' AND part = ANY($1::smallint[])`),

		// The publication a WAL-mode relay streams: one that publishes the
		// inserts into the events table, whose quoted name is $1; the one
		// migration 008 created (txoutbox_{schema}) first.
		WALPublication: `SELECT p.pubname FROM pg_publication_rel pr
			JOIN pg_publication p ON p.oid = pr.prpubid
			WHERE pr.prrelid = to_regclass($1) AND p.pubinsert
			ORDER BY p.pubname LIKE 'txoutbox\_%' DESC, p.pubname LIMIT 1`,

		// ModeMessages writes the events it could not deliver from the
		// stream into the table: $1 is a JSON array of walmsg.Spilled. An
		// event already there (the stream delivers it again after the relay
		// restarted) is left as it is.
		Spill: r.Replace(`INSERT INTO {events} (id, topic, category, entity, action, data, actor_id, actor_type,
				job_id, source, key, traceparent, tenant, causation_id, dedupe_key, published_at,
				target_collection, target_project, target_layout, status, attempts, next_attempt_at, last_error)
			SELECT id, topic, category, entity, action, data, actor_id, actor_type, job_id, source, key,
				NULLIF(traceparent, ''), NULLIF(tenant, ''), NULLIF(causation_id, '')::uuid, NULLIF(dedupe_key, ''),
				"time", NULLIF(target_collection, ''), NULLIF(target_project, ''), NULLIF(target_layout, ''),
				CASE WHEN dead THEN 'dead' ELSE 'pending' END, attempts,
				now() + wait_us * interval '1 microsecond', NULLIF(error, '')
			FROM json_to_recordset($1::json) AS e(id uuid, topic text, category text, entity text, action text,
				data json, actor_id text, actor_type text, job_id text, source text, key text, traceparent text,
				tenant text, causation_id text, dedupe_key text, "time" timestamptz, target_collection text,
				target_project text, target_layout text, dead bool, attempts int, wait_us bigint, error text)
			ON CONFLICT DO NOTHING`),

		// The keys of $1 that have pending or dead rows, with the rows'
		// status and topic: a ModeMessages relay sends a key's events from
		// the stream only while it has none.
		SpilledKeys: r.Replace(`SELECT DISTINCT key, status, topic FROM {events}
			WHERE key = ANY($1::text[]) AND status IN ('pending', 'dead')`),

		// Every key with pending or dead rows.
		TableKeys: r.Replace(`SELECT DISTINCT key FROM {events} WHERE status IN ('pending', 'dead')`),

		// $1 retention, $2 the most rows to delete.
		Cleanup: r.Replace(`DELETE FROM {events} WHERE seq IN (
			SELECT seq FROM {events}
			WHERE status = 'delivered' AND delivered_at < now() - $1 * interval '1 microsecond'
			ORDER BY delivered_at LIMIT $2 FOR UPDATE SKIP LOCKED)`),

		// $1 is the relay's id throughout; $2 a lease's length.
		Heartbeat: r.Replace(`INSERT INTO {relays} (id, hostname, pid) VALUES ($1, $2, $3)
			ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()`),
		Renew: r.Replace(`UPDATE {partitions} SET lease_until = now() + $2 * interval '1 microsecond'
			WHERE owner = $1 RETURNING part`),
		LiveRelays: r.Replace(`SELECT count(*) FROM {relays}
			WHERE heartbeat_at > now() - $1 * interval '1 microsecond'`),
		PruneRelays: r.Replace(`DELETE FROM {relays}
			WHERE heartbeat_at < now() - 10 * $1 * interval '1 microsecond'`),
		Acquire: r.Replace(`UPDATE {partitions} p
			SET owner = $1, lease_until = now() + $2 * interval '1 microsecond'
			FROM (SELECT part FROM {partitions}
				WHERE owner IS NULL OR lease_until < now()
				ORDER BY part LIMIT $3 FOR UPDATE SKIP LOCKED) f
			WHERE p.part = f.part
			RETURNING p.part`),
		Release: r.Replace(`UPDATE {partitions} SET owner = NULL, lease_until = '-infinity'
			WHERE owner = $1 AND part = ANY($2::smallint[])`),
		ReleaseAll: r.Replace(`UPDATE {partitions} SET owner = NULL, lease_until = '-infinity'
			WHERE owner = $1`),
		Deregister: r.Replace(`DELETE FROM {relays} WHERE id = $1`),

		// relay.Replay: $1 ids (empty for any), $2 topic, $3 key ("" for
		// any).
		Replay: r.Replace(`UPDATE {events}
			` + replaySet + `
			WHERE status = 'dead'
				AND (cardinality($1::uuid[]) = 0 OR id = ANY($1::uuid[]))
				AND ($2 = '' OR topic = $2)
				AND ($3 = '' OR key = $3)`),
	}
}

func newAdminQueries(r *strings.Replacer) AdminQueries {
	return AdminQueries{
		// One pass over the table.
		Counts: r.Replace(`{classified}
			SELECT topic,
				count(*) FILTER (WHERE status = 'pending'),
				count(*) FILTER (WHERE state = '` + StateInFlight + `'),
				count(*) FILTER (WHERE state = '` + StateRetrying + `'),
				count(*) FILTER (WHERE state = '` + StateBlocked + `'),
				count(*) FILTER (WHERE state = '` + StateUnclaimed + `'),
				count(*) FILTER (WHERE status = 'delivered'),
				count(*) FILTER (WHERE status = 'dead'),
				coalesce((extract(epoch FROM now() - min(published_at) FILTER (WHERE status = 'pending')) * 1e6)::bigint, 0)
			FROM classified
			GROUP BY topic`),

		Relays: r.Replace(`SELECT r.id, r.hostname, r.pid, r.started_at,
				(extract(epoch FROM now() - r.heartbeat_at) * 1e6)::bigint,
				(SELECT count(*) FROM {partitions} p WHERE p.owner = r.id AND p.lease_until > now())::int
			FROM {relays} r ORDER BY r.id`),
		Leased: r.Replace(`SELECT count(*)::int FROM {partitions} WHERE owner IS NOT NULL AND lease_until > now()`),

		// The filter's parameters, then $5 limit, $6 whether to return the
		// data.
		Events: r.Replace(`{classified}
			SELECT e.seq, e.id, e.topic, e.key, e.status, e.attempts, coalesce(e.last_error, ''),
				e.actor_type, e.actor_id, e.job_id, e.source, e.published_at,
				CASE WHEN e.status = 'pending' AND e.next_attempt_at > now() THEN e.next_attempt_at END,
				e.delivered_at,
				CASE WHEN $6::bool THEN e.data::text END
			FROM classified e
			WHERE {filter}
			ORDER BY e.seq LIMIT $5`),

		Replayable: r.Replace(`{classified}
			SELECT
				count(*) FILTER (WHERE e.status = 'dead'),
				count(*) FILTER (WHERE e.status = 'delivered')
			FROM classified e
			WHERE e.status IN ('dead', 'delivered') AND {filter}`),

		// As RelayQueries.Replay does for dead events; delivered_at is cleared so that
		// the relay's cleanup does not delete the event before it is
		// delivered again. $1 ids, $2 topic, $3 key.
		RequeueDelivered: r.Replace(`UPDATE {events} e
			SET status = 'pending', attempts = 0, next_attempt_at = '-infinity', delivered_at = NULL, last_error = NULL
			WHERE e.status = 'delivered'
				AND (cardinality($1::uuid[]) = 0 OR e.id = ANY($1::uuid[]))
				AND ($2::text = '' OR e.topic = $2::text)
				AND ($3::text = '' OR e.key = $3::text)`),
	}
}
