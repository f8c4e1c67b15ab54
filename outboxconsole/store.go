package outboxconsole

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
)

// ErrNotMigrated is returned when the outbox tables, or the console's
// (migrations 003 and 004), are missing from the database or schema.
var ErrNotMigrated = errors.New("outboxconsole: the outbox tables are missing or out of date: run `txoutbox migrate`")

// ErrReadOnly is returned by actions of a console configured ReadOnly.
var ErrReadOnly = errors.New("outboxconsole: this console is read-only")

// ErrNoFilter is returned by a bulk action whose filter selects every dead
// event of every topic without saying so: set State to "dead" to mean it.
var ErrNoFilter = errors.New("outboxconsole: an action needs ids or a filter")

// States are the values of Filter.State: the statuses, then the states
// pending events are split into by what they wait for.
func States() []string {
	return []string{outboxsql.StatusPending, outboxsql.StateInFlight, outboxsql.StateRetrying, outboxsql.StateBlocked,
		outboxsql.StateUnclaimed, outboxsql.StatusDead, outboxsql.StatusDelivered}
}

// Filter selects events: a list's filter, or what an action acts on.
type Filter = outboxsql.ConsoleFilter

// Counts are one topic's events by state, as `txoutbox status` counts them.
type Counts struct {
	Topic     string
	Pending   int64
	InFlight  int64
	Retrying  int64
	Blocked   int64
	Unclaimed int64
	Delivered int64
	Dead      int64
	// OldestPending is how long ago the oldest pending event was published.
	OldestPending time.Duration
}

// Relay is a relay registered in the lease table.
type Relay struct {
	ID, Hostname string
	PID          int
	StartedAt    time.Time
	HeartbeatAge time.Duration
	// Partitions are the partitions it holds an unexpired lease on.
	Partitions []int
}

// Sample is the backlog at one time.
type Sample struct {
	At            time.Time
	LastSeq       int64
	Pending, Dead int64
}

// Overview is what the console's first page shows.
type Overview struct {
	Total   Counts
	Topics  []Counts
	Relays  []Relay
	Leased  int
	Samples []Sample
	At      time.Time
	// Replication is the server's replication settings and txoutbox's
	// slots in the database, with the WAL each holds back.
	Replication *Replication
}

// Replication is the state of the replication slots of the WAL modes
// (relay.ModeWAL, relay.ModeMessages); see txoutbox status.
type Replication = outboxsql.Replication

// Event is one row of a list.
type Event struct {
	Seq         int64
	ID          uuid.UUID
	Topic, Key  string
	State       string
	Attempts    int
	LastError   string
	Tenant      string
	JobID       string
	PublishedAt time.Time
	NextAttempt *time.Time
	DeliveredAt *time.Time
}

// EventDetail is an event with its whole envelope.
type EventDetail struct {
	Event
	Category, Entity, Action string
	Part                     int
	ActorID, ActorType       string
	Source, Traceparent      string
	CausationID, DedupeKey   string
	CreatedAt                time.Time
	// Data is the event's data, only when the console shows payloads.
	Data []byte
}

// ActionRecord is one row of the audit table.
type ActionRecord struct {
	ID     uuid.UUID
	At     time.Time
	Actor  string
	Action string
	Filter string
	Events int64
	Reason string
}

// store runs the console's queries.
type store struct {
	db     DB
	schema string
	q      *outboxsql.Queries
}

func (s *store) err(what string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") {
		return ErrNotMigrated
	}
	return fmt.Errorf("%s: %w", what, err)
}

// overview reads the counts by topic, the relays, the samples since and the
// replication slots.
func (s *store) overview(ctx context.Context, since time.Duration) (*Overview, error) {
	o := &Overview{At: time.Now()}
	rows, err := s.db.Query(ctx, s.q.Admin.Counts)
	if err != nil {
		return nil, s.err("count events", err)
	}
	for rows.Next() {
		var c Counts
		var ageUS int64
		if err := rows.Scan(&c.Topic, &c.Pending, &c.InFlight, &c.Retrying, &c.Blocked, &c.Unclaimed,
			&c.Delivered, &c.Dead, &ageUS); err != nil {
			rows.Close()
			return nil, s.err("count events", err)
		}
		c.OldestPending = time.Duration(ageUS) * time.Microsecond
		o.Topics = append(o.Topics, c)
		o.Total.add(c)
	}
	if err := rows.Err(); err != nil {
		return nil, s.err("count events", err)
	}
	slices.SortFunc(o.Topics, func(a, b Counts) int { return strings.Compare(a.Topic, b.Topic) })

	rows, err = s.db.Query(ctx, s.q.Console.Relays)
	if err != nil {
		return nil, s.err("list relays", err)
	}
	o.Relays, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Relay, error) {
		var r Relay
		var ageUS int64
		err := row.Scan(&r.ID, &r.Hostname, &r.PID, &r.StartedAt, &ageUS, &r.Partitions)
		r.HeartbeatAge = time.Duration(ageUS) * time.Microsecond
		return r, err
	})
	if err != nil {
		return nil, s.err("list relays", err)
	}
	if err := s.db.QueryRow(ctx, s.q.Admin.Leased).Scan(&o.Leased); err != nil {
		return nil, s.err("count leased partitions", err)
	}
	if o.Samples, err = s.samples(ctx, since); err != nil {
		return nil, err
	}
	if o.Replication, err = outboxsql.ReadReplication(ctx, s.db, s.schema); err != nil {
		return nil, err
	}
	return o, nil
}

func (c *Counts) add(o Counts) {
	c.Pending += o.Pending
	c.InFlight += o.InFlight
	c.Retrying += o.Retrying
	c.Blocked += o.Blocked
	c.Unclaimed += o.Unclaimed
	c.Delivered += o.Delivered
	c.Dead += o.Dead
	c.OldestPending = max(c.OldestPending, o.OldestPending)
}

// sample records the backlog in the current sample bucket.
func (s *store) sample(ctx context.Context) error {
	if _, err := s.db.Exec(ctx, s.q.Console.Sample, outboxsql.Table(s.schema, outboxsql.TableEvents)); err != nil {
		return s.err("record a sample", err)
	}
	return nil
}

func (s *store) samples(ctx context.Context, since time.Duration) ([]Sample, error) {
	rows, err := s.db.Query(ctx, s.q.Console.Samples, since.Microseconds())
	if err != nil {
		return nil, s.err("read samples", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Sample, error) {
		var sm Sample
		err := row.Scan(&sm.At, &sm.LastSeq, &sm.Pending, &sm.Dead)
		return sm, err
	})
	if err != nil {
		return nil, s.err("read samples", err)
	}
	return out, nil
}

func scanEvent(row pgx.Row, e *Event) error {
	return row.Scan(&e.Seq, &e.ID, &e.Topic, &e.Key, &e.State, &e.Attempts, &e.LastError, &e.Tenant, &e.JobID,
		&e.PublishedAt, &e.NextAttempt, &e.DeliveredAt)
}

// list returns at most limit events f selects, oldest first, and whether
// more follow in the direction of the page (after f.After, or before
// f.Before).
func (s *store) list(ctx context.Context, f *Filter, limit int) ([]Event, bool, error) {
	sql, args := s.q.ConsoleList(f, limit+1)
	// The planner prices a list of a pending state as if it probed every
	// pending event, though the page's LIMIT stops it after a few: JIT
	// compiling for that price would cost a page more than it runs.
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return nil, false, s.err("list events", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read only: nothing to commit
	if _, err := tx.Exec(ctx, "SET LOCAL jit = off"); err != nil {
		return nil, false, s.err("list events", err)
	}
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, false, s.err("list events", err)
	}
	evs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Event, error) {
		var e Event
		return e, scanEvent(row, &e)
	})
	if err != nil {
		return nil, false, s.err("list events", err)
	}
	more := len(evs) > limit
	if more {
		evs = evs[:limit]
	}
	if f.Before > 0 {
		slices.Reverse(evs)
	}
	return evs, more, nil
}

// event reads one event, its data only when data is set; nil when there is
// no such event.
func (s *store) event(ctx context.Context, id uuid.UUID, data bool) (*EventDetail, error) {
	var e EventDetail
	var payload *string
	err := s.db.QueryRow(ctx, s.q.Console.Event, id, data).Scan(&e.Seq, &e.ID, &e.Topic, &e.Category, &e.Entity,
		&e.Action, &e.Key, &e.Part, &e.State, &e.Attempts, &e.LastError, &e.ActorID, &e.ActorType, &e.JobID,
		&e.Source, &e.Traceparent, &e.Tenant, &e.CausationID, &e.DedupeKey, &e.PublishedAt, &e.CreatedAt,
		&e.NextAttempt, &e.DeliveredAt, &payload)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, s.err("read event", err)
	}
	if payload != nil {
		e.Data = []byte(*payload)
	}
	return &e, nil
}

// keyEvents are the undelivered events of key, at most limit.
func (s *store) keyEvents(ctx context.Context, key string, limit int) ([]Event, error) {
	rows, err := s.db.Query(ctx, s.q.Console.KeyEvents, key, limit)
	if err != nil {
		return nil, s.err("list the key's events", err)
	}
	evs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Event, error) {
		var e Event
		return e, scanEvent(row, &e)
	})
	if err != nil {
		return nil, s.err("list the key's events", err)
	}
	return evs, nil
}

// count counts the dead events f selects and returns the highest seq among
// them, the bound an action on them is confirmed with.
func (s *store) count(ctx context.Context, f *Filter) (n, maxSeq int64, err error) {
	sql, args := s.q.ConsoleCount(f)
	if err := s.db.QueryRow(ctx, sql, args...).Scan(&n, &maxSeq); err != nil {
		return 0, 0, s.err("count dead events", err)
	}
	return n, maxSeq, nil
}

// act applies action to the dead events f selects, in one transaction with
// its audit row id. A second call with an id already recorded changes
// nothing and returns the first call's record, done set to false.
func (s *store) act(ctx context.Context, id uuid.UUID, actor, action string, f *Filter, reason string) (rec ActionRecord, done bool, err error) {
	filterJSON, err := json.Marshal(f)
	if err != nil {
		return rec, false, fmt.Errorf("encode filter: %w", err)
	}
	note := "discarded by " + actor
	if reason != "" {
		note += ": " + reason
	}
	sql, args, err := s.q.ConsoleAction(action, f, note)
	if err != nil {
		return rec, false, err
	}
	tx, err := s.db.Begin(ctx)
	if err != nil {
		return rec, false, s.err("begin", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit
	err = tx.QueryRow(ctx, s.q.Console.RecordAction, id, actor, action, filterJSON, reason).Scan(new(uuid.UUID))
	if errors.Is(err, pgx.ErrNoRows) {
		rec, err := s.action(ctx, tx, id)
		return rec, false, err
	}
	if err != nil {
		return rec, false, s.err("record action", err)
	}
	tag, err := tx.Exec(ctx, sql, args...)
	if err != nil {
		return rec, false, s.err(action, err)
	}
	if _, err := tx.Exec(ctx, s.q.Console.FinishAction, id, tag.RowsAffected()); err != nil {
		return rec, false, s.err("record action", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return rec, false, s.err("commit", err)
	}
	return ActionRecord{ID: id, At: time.Now(), Actor: actor, Action: action, Filter: string(filterJSON),
		Events: tag.RowsAffected(), Reason: reason}, true, nil
}

func (s *store) action(ctx context.Context, db outboxsql.DB, id uuid.UUID) (ActionRecord, error) {
	rec := ActionRecord{ID: id}
	err := db.QueryRow(ctx, s.q.Console.Action, id).Scan(&rec.Actor, &rec.Action, &rec.Filter, &rec.Events, &rec.At)
	if err != nil {
		return rec, s.err("read action", err)
	}
	return rec, nil
}

// actions are the latest limit actions, newest first.
func (s *store) actions(ctx context.Context, limit int) ([]ActionRecord, error) {
	rows, err := s.db.Query(ctx, s.q.Console.Actions, limit)
	if err != nil {
		return nil, s.err("list actions", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ActionRecord, error) {
		var r ActionRecord
		err := row.Scan(&r.ID, &r.At, &r.Actor, &r.Action, &r.Filter, &r.Events, &r.Reason)
		return r, err
	})
	if err != nil {
		return nil, s.err("list actions", err)
	}
	return out, nil
}
