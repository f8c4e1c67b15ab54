package outboxsql

import (
	"fmt"
	"strings"
)

// InsertShape selects the text of an insert statement.
type InsertShape struct {
	// Rows is the number of rows of the VALUES form; 0 selects the unnest
	// form, whose text does not depend on the number of rows.
	Rows int
	// SharedTopic passes the topic columns once for all rows of the VALUES
	// form.
	SharedTopic bool
	// Dedupe adds ON CONFLICT DO NOTHING on the dedupe key, for when some
	// event has one.
	Dedupe bool
	// Target adds the target columns to each row of the VALUES form, for
	// when some event has a target; without it they are left NULL. The
	// unnest form always takes them.
	Target bool
}

const (
	insertColumns = `id, topic, category, entity, action, data, actor_id, actor_type, job_id, source,
	key, traceparent, tenant, causation_id, dedupe_key, published_at`
	targetColumns    = `target_collection, target_project, target_layout`
	onConflictDedupe = `
ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING`
)

// Insert returns the text of the insert statement of shape, building it
// once. Every parameter carries a cast, so the statements work in every pgx
// query execution mode, the simple protocol included.
//
// The unnest form takes nineteen arrays, one a column in this order: id
// (text), topic, category, entity, action, data (text), actor_id,
// actor_type, job_id, source, key, traceparent, tenant, causation_id (text),
// dedupe_key, published_at, target_collection, target_project,
// target_layout; "" in traceparent, tenant, causation_id, dedupe_key and
// the target columns is stored as NULL.
//
// The VALUES form takes $1-$6, what a session's events share: actor_id,
// actor_type, job_id, source, traceparent, tenant; then with SharedTopic
// $7-$10: topic, category, entity, action; then per row: id, [topic,
// category, entity, action,] data, key, causation_id, dedupe_key,
// published_at[, target_collection, target_project, target_layout (with
// Target; NULL for a level not named)].
func (q *Queries) Insert(shape InsertShape) string {
	if s, ok := q.insert.Load(shape); ok {
		return s.(string)
	}
	var b strings.Builder
	b.WriteString(`INSERT INTO ` + q.events + ` (` + insertColumns)
	if shape.Rows == 0 || shape.Target {
		b.WriteString(`, ` + targetColumns)
	}
	b.WriteString(`)`)
	if shape.Rows == 0 {
		b.WriteString(`
SELECT id, topic, category, entity, action, data, actor_id, actor_type, job_id, source,
	key, NULLIF(traceparent, ''), NULLIF(tenant, ''), NULLIF(causation_id, '')::uuid,
	NULLIF(dedupe_key, ''), published_at,
	NULLIF(target_collection, ''), NULLIF(target_project, ''), NULLIF(target_layout, '')
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::json[],
	$7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
	$14::text[], $15::text[], $16::timestamptz[], $17::text[], $18::text[], $19::text[])
	AS e(` + insertColumns + `, ` + targetColumns + `)`)
	} else {
		b.WriteString(` VALUES`)
		next := 7
		topic := `$7::text, $8::text, $9::text, $10::text`
		if shape.SharedTopic {
			next = 11
		}
		param := func() int { next++; return next - 1 }
		for i := range shape.Rows {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "\n\t($%d::uuid, ", param())
			if !shape.SharedTopic {
				topic = fmt.Sprintf("$%d::text, $%d::text, $%d::text, $%d::text", param(), param(), param(), param())
			}
			fmt.Fprintf(&b, "%s, $%d::json, $1::text, $2::text, $3::text, $4::text, $%d::text, $5::text, $6::text, $%d::uuid, $%d::text, $%d::timestamptz",
				topic, param(), param(), param(), param(), param())
			if shape.Target {
				fmt.Fprintf(&b, ", $%d::text, $%d::text, $%d::text", param(), param(), param())
			}
			b.WriteByte(')')
		}
	}
	if shape.Dedupe {
		b.WriteString(onConflictDedupe)
	}
	s, _ := q.insert.LoadOrStore(shape, b.String())
	return s.(string)
}

// EmitMessage emits the logical decoding message $2 (bytea) with prefix $1,
// transactional, if the replication slot $3 is there and not lost: it
// returns one row when it emitted and none when it did not.
const EmitMessage = `SELECT pg_logical_emit_message(true, $1::text, $2::bytea)
FROM pg_replication_slots WHERE slot_name = $3::text AND wal_status IS DISTINCT FROM 'lost'`
