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
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
)

// The insert path goes through watermill-sql's Publisher, so the outbox
// table is written the way any watermill-sql publisher writes: the
// Publisher asks a SchemaAdapter (ours) for one INSERT and runs it with
// ExecContext on an executor (ours, over the caller's pgx transaction).
// Every event becomes one row and all of a flush's events go in one
// statement, so each Flush is one round trip.
//
// The statement is a multi-row VALUES list, the cheapest INSERT for the
// server to run: what the events of a session share (actor, job id, source,
// trace context, tenant, and the topic when they all have the same one) is
// sent once, and ON CONFLICT is added only when an event has a dedupe key.
// Its text depends on that shape, so pgx prepares a handful of statements
// per connection. Flushes of more than maxValuesRows events, or of events
// from different sessions, use one unnest statement whose text does not
// depend on the number of rows. Measured against that unnest statement for
// every flush, the VALUES list took about 30% off a one-event Flush and
// brought a ten-event one to within about 10% of a hand-written INSERT of the
// same rows. The statements' text comes from outboxsql (Queries.Insert);
// this file chooses the shape and passes the parameters.

// txExecutor adapts a pgx executor to watermill-sql's ContextExecutor. The
// Publisher calls only ExecContext, with context.Background(), so the
// executor carries the caller's context itself.
type txExecutor struct {
	ctx context.Context
	db  outboxsql.DB
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

// maxValuesRows is the most events written with a VALUES statement; it
// bounds the number of statement texts (per row count, two each for the
// shared topic, ON CONFLICT and the target columns) pgx keeps prepared per
// connection.
const maxValuesRows = 32

// schemaAdapter is the watermill-sql SchemaAdapter for the outbox table. Only
// InsertQuery is used: the table is created by Migrate and read by the relay.
// The statements are outboxsql's; the adapter passes their parameters.
type schemaAdapter struct {
	q *outboxsql.Queries
}

func sameSession(a, b *Event) bool {
	return a.ActorID == b.ActorID && a.ActorType == b.ActorType && a.JobID == b.JobID &&
		a.Source == b.Source && a.Traceparent == b.Traceparent && a.Tenant == b.Tenant
}

func sameTopic(a, b *Event) bool {
	return a.Topic == b.Topic && a.Category == b.Category && a.Entity == b.Entity && a.Action == b.Action
}

// errNoEvent reports a message that Client.insert did not make.
var errNoEvent = errors.New("outbox: the outbox table takes messages made by Flush, each carrying its event")

// InsertQuery returns the insert statement of messages made by
// Client.insert, reading each event's fields from the event it carries: no
// metadata map is built or read, and the values go to pgx in the types it
// encodes directly (pgtype.UUID, json.RawMessage, time.Time, string).
func (a *schemaAdapter) InsertQuery(_ string, msgs message.Messages) (wsql.Query, error) {
	events := make([]*Event, len(msgs))
	shape := outboxsql.InsertShape{Rows: len(msgs), SharedTopic: true}
	for i, m := range msgs {
		ec, ok := m.Context().(*eventContext)
		if !ok {
			return wsql.Query{}, errNoEvent
		}
		e := ec.event
		events[i] = e
		shape.Dedupe = shape.Dedupe || e.DedupeKey != ""
		shape.Target = shape.Target || !e.Target.IsZero()
		shape.SharedTopic = shape.SharedTopic && sameTopic(e, events[0])
		if !sameSession(e, events[0]) || len(msgs) > maxValuesRows {
			shape.Rows = 0
		}
	}
	if shape.Rows == 0 {
		shape.SharedTopic, shape.Target = false, false
		args, err := unnestArgs(events)
		if err != nil {
			return wsql.Query{}, err
		}
		return wsql.Query{Query: a.q.Insert(shape), Args: args}, nil
	}
	first := events[0]
	args := make([]any, 0, 10+10*len(events))
	args = append(args, first.ActorID, first.ActorType, first.JobID, first.Source, nullable(first.Traceparent), nullable(first.Tenant))
	if shape.SharedTopic {
		args = append(args, first.Topic, first.Category, first.Entity, first.Action)
	}
	for _, e := range events {
		args = append(args, pgtype.UUID{Bytes: e.ID, Valid: true})
		if !shape.SharedTopic {
			args = append(args, e.Topic, e.Category, e.Entity, e.Action)
		}
		causation, err := causationID(e)
		if err != nil {
			return wsql.Query{}, err
		}
		args = append(args, e.Data, e.Key, causation, nullable(e.DedupeKey), e.Time)
		if shape.Target {
			args = append(args, nullable(e.Target.Collection), nullable(e.Target.Project), nullable(e.Target.Layout))
		}
	}
	return wsql.Query{Query: a.q.Insert(shape), Args: args}, nil
}

// causationID returns the event's causation id as a UUID, NULL when it has
// none.
func causationID(e *Event) (pgtype.UUID, error) {
	if e.CausationID == "" {
		return pgtype.UUID{}, nil
	}
	id, err := uuid.Parse(e.CausationID)
	if err != nil {
		return pgtype.UUID{}, fmt.Errorf("event %s: causation id %q is not a UUID: %w", e.ID, e.CausationID, err)
	}
	return pgtype.UUID{Bytes: id, Valid: true}, nil
}

// unnestArgs returns the nineteen column arrays of the unnest statement. The
// ids travel as text, which every pgx query execution mode can encode.
func unnestArgs(events []*Event) ([]any, error) {
	n := len(events)
	var (
		ids                                    = make([]string, n)
		data                                   = make([]string, n)
		published                              = make([]time.Time, n)
		topic, category, entity, action        = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		actorID, actorType, jobID, source, key = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		traceparent, tenant, causation, dedupe = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		collection, project, layout            = make([]string, n), make([]string, n), make([]string, n)
	)
	for i, e := range events {
		if _, err := causationID(e); err != nil {
			return nil, err
		}
		ids[i], data[i], published[i] = e.ID.String(), string(e.Data), e.Time
		topic[i], category[i], entity[i], action[i] = e.Topic, e.Category, e.Entity, e.Action
		actorID[i], actorType[i], jobID[i], source[i], key[i] = e.ActorID, e.ActorType, e.JobID, e.Source, e.Key
		traceparent[i], tenant[i], causation[i], dedupe[i] = e.Traceparent, e.Tenant, e.CausationID, e.DedupeKey
		collection[i], project[i], layout[i] = e.Target.Collection, e.Target.Project, e.Target.Layout
	}
	return []any{
		ids, topic, category, entity, action, data, actorID, actorType, jobID, source,
		key, traceparent, tenant, causation, dedupe, published, collection, project, layout,
	}, nil
}

// nullable turns "" into NULL.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
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

// eventContext is the context of a message Client.insert makes: the
// flush's context, carrying the event the message stands for, so that the
// schema adapter reads the event's fields as they are.
type eventContext struct {
	context.Context
	event *Event
}

// insert writes events in one statement through the watermill-sql
// Publisher. Each message carries its event in its context and the data as
// its payload; it has no metadata, which only the relay's messages need.
func (c *Client) insert(ctx context.Context, db outboxsql.DB, events []*Event) error {
	pub, err := wsql.NewPublisher(txExecutor{ctx: ctx, db: db}, wsql.PublisherConfig{SchemaAdapter: c.adapter}, nil)
	if err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	ms := make([]message.Message, len(events))
	ecs := make([]eventContext, len(events))
	msgs := make([]*message.Message, len(events))
	for i, e := range events {
		ecs[i] = eventContext{ctx, e}
		ms[i].Payload = message.Payload(e.Data)
		ms[i].SetContext(&ecs[i])
		msgs[i] = &ms[i]
	}
	if err := pub.Publish(outboxsql.TableEvents, msgs...); err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	return nil
}
