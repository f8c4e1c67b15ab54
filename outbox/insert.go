package outbox

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v3/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The insert path goes through watermill-sql's Publisher, so the outbox
// table is written the way any watermill-sql publisher writes: the
// Publisher asks a SchemaAdapter (ours) for one INSERT and runs it with
// ExecContext on an executor (ours, over the caller's pgx transaction).
// Every event becomes one row; all of a flush's events go in one statement
// whose text does not depend on the number of events, so pgx prepares it once
// per connection and each Flush is one round trip.

// execer is what the insert needs from a pgx.Tx, a *pgx.Conn or a pool.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// txExecutor adapts a pgx executor to watermill-sql's ContextExecutor. The
// Publisher calls only ExecContext, with context.Background(), so the
// executor carries the caller's context itself.
type txExecutor struct {
	ctx context.Context
	db  execer
}

var errQueryUnsupported = errors.New("outbox: the insert executor runs Exec only")

func (e txExecutor) ExecContext(_ context.Context, query string, args ...any) (stdsql.Result, error) {
	tag, err := e.db.Exec(e.ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return execResult(tag.RowsAffected()), nil
}

func (e txExecutor) Exec(query string, args ...any) (stdsql.Result, error) {
	return e.ExecContext(e.ctx, query, args...)
}

func (e txExecutor) QueryContext(context.Context, string, ...any) (*stdsql.Rows, error) {
	return nil, errQueryUnsupported
}

func (e txExecutor) Query(string, ...any) (*stdsql.Rows, error) { return nil, errQueryUnsupported }

// QueryRowContext is never called by the Publisher; database/sql offers no
// way to build a *sql.Row that carries an error.
func (e txExecutor) QueryRowContext(context.Context, string, ...any) *stdsql.Row { return nil }

func (e txExecutor) QueryRow(string, ...any) *stdsql.Row { return nil }

type execResult int64

func (r execResult) LastInsertId() (int64, error) { return 0, errQueryUnsupported }
func (r execResult) RowsAffected() (int64, error) { return int64(r), nil }

// schemaAdapter is the watermill-sql SchemaAdapter for the outbox table. Only
// InsertQuery is used: the table is created by Migrate and read by the relay.
type schemaAdapter struct {
	insertSQL string
}

func newSchemaAdapter(table string) *schemaAdapter {
	return &schemaAdapter{insertSQL: `INSERT INTO ` + table + ` (
	id, topic, category, entity, action, data, actor_id, actor_type, job_id, source,
	key, traceparent, tenant, causation_id, dedupe_key, published_at)
SELECT id, topic, category, entity, action, data, actor_id, actor_type, job_id, source,
	key, NULLIF(traceparent, ''), NULLIF(tenant, ''), NULLIF(causation_id, '')::uuid,
	NULLIF(dedupe_key, ''), published_at
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::json[],
	$7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
	$14::text[], $15::text[], $16::timestamptz[])
	AS e(id, topic, category, entity, action, data, actor_id, actor_type, job_id, source,
	key, traceparent, tenant, causation_id, dedupe_key, published_at)
ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING`}
}

func (a *schemaAdapter) InsertQuery(_ string, msgs message.Messages) (wsql.Query, error) {
	n := len(msgs)
	var (
		ids                                    = make([]uuid.UUID, n)
		data                                   = make([][]byte, n)
		published                              = make([]time.Time, n)
		topic, category, entity, action        = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		actorID, actorType, jobID, source, key = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		traceparent, tenant, causation, dedupe = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	)
	for i, m := range msgs {
		id, err := uuid.Parse(m.UUID)
		if err != nil {
			return wsql.Query{}, fmt.Errorf("message %q: id is not a UUID: %w", m.UUID, err)
		}
		t, err := time.Parse(time.RFC3339Nano, m.Metadata.Get(MetaTime))
		if err != nil {
			return wsql.Query{}, fmt.Errorf("message %s: %s: %w", m.UUID, MetaTime, err)
		}
		ids[i], data[i], published[i] = id, m.Payload, t
		md := m.Metadata
		topic[i], category[i], entity[i], action[i] = md[MetaTopic], md[MetaCategory], md[MetaEntity], md[MetaAction]
		actorID[i], actorType[i], jobID[i], source[i], key[i] = md[MetaActorID], md[MetaActorType], md[MetaJobID], md[MetaSource], md[MetaKey]
		traceparent[i], tenant[i], causation[i], dedupe[i] = md[MetaTraceparent], md[MetaTenant], md[MetaCausationID], md[MetaDedupeKey]
	}
	return wsql.Query{Query: a.insertSQL, Args: []any{
		ids, topic, category, entity, action, data, actorID, actorType, jobID, source,
		key, traceparent, tenant, causation, dedupe, published,
	}}, nil
}

// SchemaInitializingQueries returns nothing: the schema comes from Migrate.
func (a *schemaAdapter) SchemaInitializingQueries(string) []wsql.Query { return nil }

// SelectQuery is not supported: the relay reads the outbox, not a
// watermill-sql subscriber.
func (a *schemaAdapter) SelectQuery(string, string, wsql.OffsetsAdapter) wsql.Query {
	return wsql.Query{Query: "SELECT 'txoutbox: the outbox table is read by the relay, not a watermill-sql subscriber'::int"}
}

func (a *schemaAdapter) UnmarshalMessage(wsql.Scanner) (wsql.Row, error) {
	return wsql.Row{}, errQueryUnsupported
}

func (a *schemaAdapter) SubscribeIsolationLevel() stdsql.IsolationLevel {
	return stdsql.LevelReadCommitted
}

// insert writes events in one statement through the watermill-sql
// Publisher.
func (c *Client) insert(ctx context.Context, db execer, events []*Event) error {
	pub, err := wsql.NewPublisher(txExecutor{ctx: ctx, db: db}, wsql.PublisherConfig{SchemaAdapter: c.adapter}, nil)
	if err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	msgs := make([]*message.Message, len(events))
	for i, e := range events {
		msgs[i] = e.Message()
	}
	if err := pub.Publish(TableEvents, msgs...); err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	return nil
}

var _ execer = pgx.Tx(nil)
