package eventsapi

import (
	"encoding/json"
	"hash/fnv"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// pgColumns are the events' columns in the order pgScanEvent reads them.
const pgColumns = `position, id, topic, category, entity, action, key, tenant,
	actor_id, actor_type, job_id, causation_id, coalesce(dedupe_key, ''),
	source, traceparent, format, published_at, received_at, data,
	target_collection, target_project, target_layout, sender, request_metadata,
	depends_on, status, description, retries, updated_at`

// pgQueries is the SQL of one PostgresStore, built once for its schema.
type pgQueries struct {
	table    string // quoted events table
	sequence string // quoted sequence name, for ::regclass
	lockKey  int64  // the append lock
	channel  string // the NOTIFY channel
	// liveChannel carries live-only events between instances.
	liveChannel string

	lock, dupes, seqState, setval, insert, notify string
	get, head, oldest                             string
	pruneCount, pruneBefore, pruneAge             string
}

func newPgQueries(schema string) *pgQueries {
	t := pgTable(schema, pgTableEvents)
	q := &pgQueries{
		table:    t,
		sequence: pgTable(schema, pgSequencePositions),
		lockKey:  pgHash("txoutbox_events_api_append:" + schema),
		channel:  pgChannel(schema),
	}
	q.liveChannel = q.channel + "_live"
	q.lock = "SELECT pg_advisory_xact_lock($1)"
	// Stored events an appended batch may duplicate, by id or by tenant and
	// dedupe key.
	q.dupes = `SELECT position, id, tenant, coalesce(dedupe_key, '') FROM ` + t + ` WHERE id = ANY($1::text[])
		UNION ALL
		SELECT position, id, tenant, dedupe_key FROM ` + t + ` WHERE dedupe_key IS NOT NULL
			AND (tenant, dedupe_key) IN (SELECT * FROM unnest($2::text[], $3::text[]))`
	// The sequence's state: its next value is last_value, or last_value+1
	// once a value was taken. Read under the append lock, so no other
	// append takes a value in between.
	q.seqState = `SELECT last_value, is_called FROM ` + q.sequence
	q.setval = `SELECT setval($1::regclass, $2, true)`
	q.insert = `INSERT INTO ` + t + ` (position, id, topic, category, entity, action, key, tenant,
			actor_id, actor_type, job_id, causation_id, dedupe_key, source, traceparent, format,
			published_at, received_at, data,
			target_collection, target_project, target_layout, sender, request_metadata,
			depends_on, status, description, retries, updated_at)
		SELECT u.position, u.id, u.topic, u.category, u.entity, u.action, u.key, u.tenant,
			u.actor_id, u.actor_type, u.job_id, u.causation_id, NULLIF(u.dedupe_key, ''), u.source, u.traceparent, u.format,
			u.published_at, $18, u.data::json,
			u.target_collection, u.target_project, u.target_layout, u.sender, u.request_metadata::json,
			u.depends_on, u.status, u.description, u.retries, CASE WHEN u.status <> '' THEN $18::timestamptz END
		FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
			$9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], $16::text[],
			$17::timestamptz[], $19::text[],
			$20::text[], $21::text[], $22::text[], $23::text[], $24::text[],
			$25::text[], $26::text[], $27::text[], $28::int[])
			AS u(position, id, topic, category, entity, action, key, tenant,
				actor_id, actor_type, job_id, causation_id, dedupe_key, source, traceparent, format,
				published_at, data,
				target_collection, target_project, target_layout, sender, request_metadata,
				depends_on, status, description, retries)`
	q.notify = `SELECT pg_notify($1, $2)`
	q.get = `SELECT ` + pgColumns + ` FROM ` + t + ` WHERE id = $1`
	q.head = `SELECT coalesce(max(position), 0) FROM ` + t
	q.oldest = `SELECT coalesce(min(position), 0) FROM ` + t
	// The position of the newest event beyond the ones to keep.
	q.pruneCount = `SELECT position FROM ` + t + ` ORDER BY position DESC OFFSET $1 LIMIT 1`
	q.pruneBefore = `DELETE FROM ` + t + ` WHERE position IN (
		SELECT position FROM ` + t + ` WHERE position <= $1 ORDER BY position LIMIT $2)`
	// Deletes from the oldest on, up to the first event received at or
	// after $1, at most $2 of them: a prefix of the stream, as
	// MemoryStore's retention does, even when instances' clocks differ. It
	// keeps the newest event, whose position is the head.
	q.pruneAge = `WITH batch AS MATERIALIZED (
			SELECT position, received_at FROM ` + t + ` ORDER BY position LIMIT $2),
		stop AS (SELECT min(position) AS position FROM batch WHERE received_at >= $1)
		DELETE FROM ` + t + ` WHERE position IN (
			SELECT position FROM batch WHERE position < coalesce((SELECT position FROM stop), 9223372036854775807)
				AND position < (SELECT max(position) FROM ` + t + `))`
	return q
}

// pgHash is a stable 64-bit hash for advisory lock keys and channel names.
func pgHash(s string) int64 {
	h := fnv.New64a()
	h.Write([]byte(s)) //nolint:errcheck // never fails
	return int64(h.Sum64())
}

// pgChannel is the NOTIFY channel of the store in schema: stores in other
// schemas of the same database use other channels (a collision of the hash
// only costs spurious wake-ups).
func pgChannel(schema string) string {
	if schema == "" {
		return "txoutbox_events_api"
	}
	return "txoutbox_events_api_" + strconv.FormatUint(uint64(pgHash(schema)), 16)
}

// pgScanEvent reads one row of pgColumns.
func pgScanEvent(row pgx.Row, ev *Event) error {
	sc := pgEventScan{ev: ev}
	if err := row.Scan(sc.targets()...); err != nil {
		return err
	}
	sc.finish()
	return nil
}

// pgEventScan reads the columns of pgColumns into an Event, for rows that
// hold other columns too: scan into targets, then finish.
type pgEventScan struct {
	ev         *Event
	data, meta []byte
	status     string
	updated    *time.Time
}

func (sc *pgEventScan) targets() []any {
	ev := sc.ev
	return []any{&ev.Position, &ev.ID, &ev.Topic, &ev.Category, &ev.Entity, &ev.Action, &ev.Key, &ev.Tenant,
		&ev.ActorID, &ev.ActorType, &ev.JobID, &ev.CausationID, &ev.DedupeKey,
		&ev.Source, &ev.Traceparent, &ev.Format, &ev.Time, &ev.ReceivedAt, &sc.data,
		&ev.Target.Collection, &ev.Target.Project, &ev.Target.Layout, &ev.Sender, &sc.meta,
		&ev.DependsOn, &sc.status, &ev.Description, &ev.Retries, &sc.updated}
}

func (sc *pgEventScan) finish() {
	ev := sc.ev
	ev.Time, ev.ReceivedAt = ev.Time.UTC(), ev.ReceivedAt.UTC()
	ev.Status = JobStatus(sc.status)
	if sc.updated != nil {
		ev.UpdatedAt = sc.updated.UTC()
	}
	if sc.data != nil {
		ev.Data = json.RawMessage(sc.data)
	}
	if sc.meta != nil {
		ev.RequestMetadata = json.RawMessage(sc.meta)
	}
}

// pgWhere builds a WHERE clause and its arguments.
type pgWhere struct {
	conds []string
	args  []any
}

func (w *pgWhere) arg(v any) string {
	w.args = append(w.args, v)
	return "$" + strconv.Itoa(len(w.args))
}

func (w *pgWhere) add(cond string) { w.conds = append(w.conds, cond) }

func (w *pgWhere) sql() string {
	if len(w.conds) == 0 {
		return "TRUE"
	}
	return strings.Join(w.conds, " AND ")
}

// pgEventColumns are the columns of a Selector's fields.
var pgEventColumns = [fieldCount]string{"topic", "category", "entity", "action", "key", "actor_id", "actor_type", "job_id", "causation_id", "sender", "status", "depends_on"}

// match adds the conditions of m, which select exactly the events m
// matches: a pattern's "*" is LIKE's "%", and the values PostgreSQL cannot
// take as text are handled as the stored values (valid UTF-8, no NUL byte)
// would be by Go: a pattern with a NUL byte, or an invalid UTF-8 one without
// "*", matches nothing; an invalid UTF-8 glob is compared as bytes.
func (w *pgWhere) match(m *Matcher) {
	if m == nil {
		return
	}
	f := m.filter
	if m.scoped {
		if pgText(m.tenant) {
			w.add("tenant = " + w.arg(m.tenant))
		} else {
			w.add("FALSE")
		}
	}
	// Stored times have microseconds; t >= x and t < x hold for them exactly
	// when they hold against x rounded up to the microsecond.
	if !f.Since.IsZero() {
		w.add("published_at >= " + w.arg(pgCeilMicro(f.Since)))
	}
	if !f.Until.IsZero() {
		w.add("published_at < " + w.arg(pgCeilMicro(f.Until)))
	}
	if len(f.Include) > 0 {
		ors := make([]string, 0, len(f.Include))
		for i := range f.Include {
			ors = append(ors, w.selector(&f.Include[i]))
		}
		w.add("(" + strings.Join(ors, " OR ") + ")")
	}
	for i := range f.Exclude {
		w.add("NOT " + w.selector(&f.Exclude[i]))
	}
}

// selector returns the condition of s.
func (w *pgWhere) selector(s *Selector) string {
	var ands []string
	if t := s.Target; !t.IsZero() {
		// Target.Matches: the event has a target, and agrees with t on
		// every level both name.
		ands = append(ands, "target_collection <> ''")
		for i, v := range [...]string{t.Collection, t.Project, t.Layout} {
			if v == "" {
				continue
			}
			col := "target_" + targetNames[i]
			if !pgText(v) {
				ands = append(ands, col+" = ''")
				continue
			}
			ands = append(ands, "("+col+" = '' OR "+col+" = "+w.arg(v)+")")
		}
	}
	for f := range fieldCount {
		ps := s.patterns(f)
		if len(ps) == 0 || pgAnyPattern(ps) {
			continue // matches every event, as compileSelector has it
		}
		var exact, likes []string
		var byteLikes [][]byte
		for _, p := range ps {
			switch {
			case strings.ContainsRune(p, 0):
			case !strings.Contains(p, "*"):
				if utf8.ValidString(p) {
					exact = append(exact, p)
				}
			case utf8.ValidString(p):
				likes = append(likes, string(pgLike([]byte(p))))
			default:
				byteLikes = append(byteLikes, pgLike([]byte(p)))
			}
		}
		col := pgEventColumns[f]
		var ors []string
		if len(exact) > 0 {
			ors = append(ors, col+" = ANY("+w.arg(exact)+"::text[])")
		}
		if len(likes) > 0 {
			ors = append(ors, col+" LIKE ANY("+w.arg(likes)+"::text[])")
		}
		if len(byteLikes) > 0 {
			ors = append(ors, "convert_to("+col+", 'UTF8') LIKE ANY("+w.arg(byteLikes)+"::bytea[])")
		}
		if len(ors) == 0 {
			return "FALSE"
		}
		ands = append(ands, "("+strings.Join(ors, " OR ")+")")
	}
	if len(ands) == 0 {
		return "TRUE"
	}
	return "(" + strings.Join(ands, " AND ") + ")"
}

// pgAnyPattern reports whether a pattern of ps is all "*", which makes the
// field match every event.
func pgAnyPattern(ps []string) bool {
	for _, p := range ps {
		if strings.Trim(p, "*") == "" {
			return true
		}
	}
	return false
}

// pgText reports whether PostgreSQL can hold s in a text value.
func pgText(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// pgLike turns a glob into a LIKE pattern, byte by byte (backslash is
// LIKE's escape character, for text and bytea alike).
func pgLike(glob []byte) []byte {
	out := make([]byte, 0, len(glob)+4)
	for _, c := range glob {
		switch c {
		case '*':
			out = append(out, '%')
		case '%', '_', '\\':
			out = append(out, '\\', c)
		default:
			out = append(out, c)
		}
	}
	return out
}

// pgCeilMicro rounds t up to the microsecond, PostgreSQL's precision.
func pgCeilMicro(t time.Time) time.Time {
	if tt := t.Truncate(time.Microsecond); !tt.Equal(t) {
		return tt.Add(time.Microsecond)
	}
	return t
}
