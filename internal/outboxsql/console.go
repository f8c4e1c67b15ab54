package outboxsql

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// The operator console's tables (migrations/003).
const (
	// TableSamples holds the backlog sampled every SampleEvery.
	TableSamples = "txoutbox_samples"
	// TableActions is the audit trail of the console's actions.
	TableActions = "txoutbox_actions"

	// SampleEvery is the width of a sample's bucket: one row per bucket.
	SampleEvery = 10 * time.Second
)

// ConsoleQueries are the operator console's fixed statements. Its event
// lists and actions depend on the filter and are built by ConsoleList,
// ConsoleCount and ConsoleAction.
type ConsoleQueries struct {
	// Event reads one event: $1 its id, $2 whether to return its data.
	Event string
	// KeyEvents are the undelivered events of key $1, oldest first, at most
	// $2: what an event of that key waits behind.
	KeyEvents string
	// Relays are the registered relays with the partitions each holds.
	Relays string
	// Sample records the backlog in the current bucket, once however many
	// consoles run, and prunes samples older than a day.
	Sample string
	// Samples reads the samples of the last $1 microseconds, oldest first.
	Samples string
	// RecordAction starts an action's audit row: $1 id, $2 actor, $3
	// action, $4 filter (JSON), $5 reason. It returns nothing when the
	// action was recorded before: the action has run.
	RecordAction string
	// FinishAction sets action $1's event count $2.
	FinishAction string
	// Action reads action $1: actor, action, filter, events, at.
	Action string
	// Actions lists the $1 latest actions, newest first.
	Actions string
}

// ConsoleListColumns are the columns of ConsoleList's rows, in order.
const ConsoleListColumns = `e.seq, e.id, e.topic, e.key, e.state, e.attempts, left(coalesce(e.last_error, ''), 300),
	coalesce(e.tenant, ''), e.job_id, e.published_at,
	CASE WHEN e.status = 'pending' AND e.next_attempt_at > now() THEN e.next_attempt_at END, e.delivered_at`

func newConsoleQueries(r *strings.Replacer) ConsoleQueries {
	return ConsoleQueries{
		Event: r.Replace(`{classified_rows}
			SELECT e.seq, e.id, e.topic, e.category, e.entity, e.action, e.key, e.part, e.state, e.attempts,
				coalesce(e.last_error, ''), e.actor_id, e.actor_type, e.job_id, e.source,
				coalesce(e.traceparent, ''), coalesce(e.tenant, ''), coalesce(e.causation_id::text, ''),
				coalesce(e.dedupe_key, ''), e.published_at, e.created_at,
				CASE WHEN e.status = 'pending' AND e.next_attempt_at > now() THEN e.next_attempt_at END,
				e.delivered_at, CASE WHEN $2::bool THEN e.data::text END
			FROM classified e WHERE e.id = $1`),

		KeyEvents: r.Replace(`{classified_rows}
			SELECT ` + ConsoleListColumns + `
			FROM classified e WHERE e.key = $1 AND e.status <> 'delivered'
			ORDER BY e.seq LIMIT $2`),

		Relays: r.Replace(`SELECT r.id, r.hostname, r.pid, r.started_at,
				(extract(epoch FROM now() - r.heartbeat_at) * 1e6)::bigint,
				coalesce((SELECT array_agg(p.part ORDER BY p.part) FROM {partitions} p
					WHERE p.owner = r.id AND p.lease_until > now()), ARRAY[]::smallint[])::int[]
			FROM {relays} r ORDER BY r.id`),

		// The last seq comes from the identity's sequence, not max(seq):
		// rows deleted on delivery must not make publishing look negative.
		Sample: r.Replace(`WITH pruned AS (
				DELETE FROM {samples} WHERE at < now() - interval '1 day'
			)
			INSERT INTO {samples} (at, last_seq, pending, dead)
			SELECT to_timestamp(floor(extract(epoch FROM now()) / ` + fmt.Sprint(SampleEvery.Seconds()) + `) * ` + fmt.Sprint(SampleEvery.Seconds()) + `),
				coalesce(pg_sequence_last_value(pg_get_serial_sequence($1, 'seq')), 0),
				(SELECT count(*) FROM {events} WHERE status = 'pending'),
				(SELECT count(*) FROM {events} WHERE status = 'dead')
			ON CONFLICT (at) DO NOTHING`),
		Samples: r.Replace(`SELECT at, last_seq, pending, dead FROM {samples}
			WHERE at > now() - $1 * interval '1 microsecond' ORDER BY at`),

		RecordAction: r.Replace(`INSERT INTO {actions} (id, actor, action, filter, events, reason)
			VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (id) DO NOTHING RETURNING id`),
		FinishAction: r.Replace(`UPDATE {actions} SET events = $2 WHERE id = $1`),
		Action:       r.Replace(`SELECT actor, action, filter::text, events, at FROM {actions} WHERE id = $1`),
		Actions: r.Replace(`SELECT id, at, actor, action, filter::text, events, reason FROM {actions}
			ORDER BY at DESC LIMIT $1`),
	}
}

// ConsoleFilter selects events for the console. The conditions that are
// set must all match.
type ConsoleFilter struct {
	// IDs selects events by id.
	IDs []uuid.UUID `json:"ids,omitempty"`
	// State is a status (pending, delivered, dead) or a pending event's
	// state (in_flight, retrying, blocked, unclaimed).
	State string `json:"state,omitempty"`
	// Topic, Key, Tenant and JobID match exactly.
	Topic  string `json:"topic,omitempty"`
	Key    string `json:"key,omitempty"`
	Tenant string `json:"tenant,omitempty"`
	JobID  string `json:"job_id,omitempty"`
	// Error matches events whose last error contains it, ignoring case.
	Error string `json:"error,omitempty"`
	// From and To bound the publish time: From <= published_at < To.
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
	// After and Before are cursors: only events with a seq above After,
	// or below Before (listed newest first).
	After  int64 `json:"-"`
	Before int64 `json:"-"`
	// MaxSeq, when above 0, leaves out events inserted after the seq: an
	// action confirmed for N events acts on those N, not on later ones.
	MaxSeq int64 `json:"max_seq,omitempty"`
}

// where returns the filter's condition on events e, numbering
// its parameters from len(args)+1, and args with its values appended. The
// text comes from fixed fragments only; values are always parameters.
func (f *ConsoleFilter) where(args []any) (string, []any) {
	var conds []string
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, strings.ReplaceAll(cond, "$?", fmt.Sprintf("$%d", len(args))))
	}
	if len(f.IDs) > 0 {
		add("e.id = ANY($?::uuid[])", f.IDs)
	}
	switch f.State {
	case "":
	case StatusPending, StatusDelivered, StatusDead:
		add("e.status = $?::text", f.State)
	default:
		add("e.status = 'pending' AND {pending_state} = $?::text", f.State)
	}
	for _, c := range []struct{ col, v string }{{"topic", f.Topic}, {"key", f.Key}, {"tenant", f.Tenant}, {"job_id", f.JobID}} {
		if c.v != "" {
			add("e."+c.col+" = $?::text", c.v)
		}
	}
	if f.Error != "" {
		add(`e.last_error ILIKE $?::text ESCAPE '\'`, "%"+likeEscaper.Replace(f.Error)+"%")
	}
	if !f.From.IsZero() {
		add("e.published_at >= $?::timestamptz", f.From)
	}
	if !f.To.IsZero() {
		add("e.published_at < $?::timestamptz", f.To)
	}
	if f.After > 0 {
		add("e.seq > $?::bigint", f.After)
	}
	if f.Before > 0 {
		add("e.seq < $?::bigint", f.Before)
	}
	if f.MaxSeq > 0 {
		add("e.seq <= $?::bigint", f.MaxSeq)
	}
	if len(conds) == 0 {
		return "true", args
	}
	return strings.Join(conds, "\n\t\t\tAND "), args
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// ConsoleList returns the statement listing at most limit events f
// selects, ConsoleListColumns, oldest first; newest first when f.Before is
// set, for the page before a cursor. The page's seqs are chosen on the
// events table alone, before any other column is read: a list of a
// pending state walks the index of pending events (migration 006), which
// holds every column the state is decided on, and reads the table only
// for the rows of its page.
func (q *Queries) ConsoleList(f *ConsoleFilter, limit int) (string, []any) {
	where, args := f.where(nil)
	order := "e.seq"
	if f.Before > 0 {
		order = "e.seq DESC"
	}
	args = append(args, limit)
	return q.console.Replace(`{classified_rows}
		SELECT ` + ConsoleListColumns + `
		FROM classified e
		WHERE e.seq IN (
			SELECT e.seq FROM {events} e
			WHERE ` + where + `
			ORDER BY ` + order + fmt.Sprintf(` LIMIT $%d)`, len(args)) + `
		ORDER BY ` + order), args
}

// ConsoleCount returns the statement counting the events f selects that
// are dead, and the highest seq among them (0 when there are none): what a
// bulk action would change, and the bound it is confirmed with.
func (q *Queries) ConsoleCount(f *ConsoleFilter) (string, []any) {
	where, args := f.where(nil)
	return q.console.Replace(`{classified_rows}
		SELECT count(*), coalesce(max(e.seq), 0)
		FROM classified e
		WHERE e.status = 'dead' AND ` + where), args
}

// The console's actions, all on dead events.
const (
	// ActionReplay makes dead events pending again, as relay.Replay does.
	ActionReplay = "replay"
	// ActionDiscard marks dead events delivered without sending them,
	// with the reason in their last error; the relay's cleanup removes
	// them after its retention. It unblocks their keys.
	ActionDiscard = "discard"
)

// ConsoleAction returns the statement applying action (ActionReplay or
// ActionDiscard) to the dead events f selects. A discard's last error
// becomes note followed by the error it had.
func (q *Queries) ConsoleAction(action string, f *ConsoleFilter, note string) (string, []any, error) {
	where, args := f.where(nil)
	var set string
	switch action {
	case ActionReplay:
		set = replaySet
	case ActionDiscard:
		args = append(args, note)
		set = fmt.Sprintf(`SET status = 'delivered', delivered_at = now(),
			last_error = $%d::text || coalesce(' (last error: ' || last_error || ')', '')`, len(args))
	default:
		return "", nil, fmt.Errorf("unknown console action %q", action)
	}
	return q.console.Replace(`{classified_rows}
		UPDATE {events} ` + set + `
		WHERE status = 'dead' AND seq IN (
			SELECT e.seq FROM classified e WHERE e.status = 'dead' AND ` + where + `)`,
	), args, nil
}
