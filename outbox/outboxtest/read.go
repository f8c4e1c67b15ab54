package outboxtest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/outbox"
)

// listMax is the most events a failure message lists.
const listMax = 20

// undefinedTable is the SQLSTATE of a missing table.
const undefinedTable = "42P01"

// reader reads the outbox table for one assertion and fails t when it
// cannot.
type reader struct {
	t     TB
	fn    string // the assertion, for messages
	db    Querier
	query string
	name  string // the table as messages show it
}

func newReader(t TB, fn string, db Querier, opts *RequireOpts) (*reader, bool) {
	t.Helper()
	if db == nil {
		t.Fatalf("outboxtest: %s: db is nil", fn)
		return nil, false
	}
	schema, name := "", outboxsql.TableEvents
	if opts != nil && opts.Schema != "" {
		schema, name = opts.Schema, opts.Schema+"."+outboxsql.TableEvents
	}
	return &reader{t: t, fn: fn, db: db, query: outboxsql.New(schema).ReadEvents, name: name}, true
}

// read returns the events of topics (all events for nil topics) in insert
// order; ok is false when t has been failed.
func (r *reader) read(ctx context.Context, topics []string) (events []*outbox.Event, ok bool) {
	r.t.Helper()
	events, _, err := r.load(ctx, topics, nil)
	if err != nil {
		r.fail(err)
		return nil, false
	}
	return events, true
}

// failMissing fails t because no event matches w, listing what the table
// holds.
func (r *reader) failMissing(ctx context.Context, w *compiled) {
	r.t.Helper()
	events, total, err := r.load(ctx, nil, listMax)
	switch {
	case err != nil:
		r.fail(err)
	case total == 0:
		r.t.Fatalf("outboxtest: no event matches %s: %s is empty as seen through this connection "+
			"(events flushed into a transaction are visible only through it until it commits)", w, r.name)
	default:
		r.t.Fatalf("outboxtest: no event matches %s; %s holds %d:\n%s", w, r.name, total, list(events, total, w))
	}
}

func (r *reader) fail(err error) {
	r.t.Helper()
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == undefinedTable {
		r.t.Fatalf("outboxtest: %s: read %s: %v (run outbox.Migrate on this database first, and set RequireOpts.Schema to the client's Config.Schema)",
			r.fn, r.name, err)
		return
	}
	r.t.Fatalf("outboxtest: %s: read %s: %v", r.fn, r.name, err)
}

// load runs the query, outboxsql's ReadEvents; limit is nil or an int. total
// counts the events of topics before the limit.
func (r *reader) load(ctx context.Context, topics []string, limit any) (events []*outbox.Event, total int, err error) {
	rows, err := r.db.Query(ctx, r.query, topics, limit)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			e           outbox.Event
			id, data    string
			publishedAt time.Time
			count       int64
		)
		err := rows.Scan(&id, &e.Topic, &e.Category, &e.Entity, &e.Action, &data,
			&e.ActorID, &e.ActorType, &e.JobID, &e.Source, &e.Key, &e.Traceparent,
			&e.Tenant, &e.CausationID, &e.DedupeKey, &publishedAt,
			&e.Target.Collection, &e.Target.Project, &e.Target.Layout, &count)
		if err != nil {
			return nil, 0, err
		}
		if e.ID, err = uuid.Parse(id); err != nil {
			return nil, 0, fmt.Errorf("event id %q: %w", id, err)
		}
		e.Data, e.Time, total = []byte(data), publishedAt, int(count)
		events = append(events, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, err
	}
	return events, total, nil
}
