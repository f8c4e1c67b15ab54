package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/relay"
)

// ErrNotMigrated is returned when the outbox tables do not exist in the
// database (or schema) asked about.
var ErrNotMigrated = errors.New("the outbox table is missing: run `txoutbox migrate`")

// ErrInvalidFilter is matched by the error for a Filter that makes no sense,
// such as a state that does not exist.
var ErrInvalidFilter = errors.New("invalid filter")

// Event states: the statuses stored in the status column, and the states
// Status splits pending events into (see Counts).
const (
	StatePending   = outboxsql.StatusPending
	StateDelivered = outboxsql.StatusDelivered
	StateDead      = outboxsql.StatusDead

	StateInFlight  = outboxsql.StateInFlight
	StateRetrying  = outboxsql.StateRetrying
	StateBlocked   = outboxsql.StateBlocked
	StateUnclaimed = outboxsql.StateUnclaimed
)

// States returns the values Filter.State takes, in the order Status shows
// them.
func States() []string {
	return []string{StatePending, StateInFlight, StateRetrying, StateBlocked, StateUnclaimed, StateDelivered, StateDead}
}

// LimitDefault is how many events Events returns when Filter.Limit is 0.
const LimitDefault = 50

// Admin runs operators' queries against one outbox.
type Admin struct {
	db     outboxsql.DB
	schema string
	q      outboxsql.AdminQueries
}

// New returns an Admin for the outbox in schema ("" for the search_path's),
// the same schema given to outbox.Migrate and the relay. db is a pool, a
// connection or a transaction.
func New(db outboxsql.DB, schema string) *Admin {
	return &Admin{db: db, schema: schema, q: outboxsql.New(schema).Admin}
}

// Counts are the outbox's events by state. Pending events are split into
// mutually exclusive groups that say why they have not been delivered yet:
// Pending = InFlight + Retrying + Blocked + Unclaimed.
type Counts struct {
	// Pending events have not been delivered yet.
	Pending int64 `json:"pending"`
	// InFlight events are due and in a partition a relay holds a lease on:
	// that relay is delivering them or will in its next rounds.
	InFlight int64 `json:"in_flight"`
	// Retrying events failed at least once and wait out their backoff.
	Retrying int64 `json:"retrying"`
	// Blocked events are due but share their key with a dead event. Under
	// the block poison policy they wait until it is replayed; under skip
	// they are delivered.
	Blocked int64 `json:"blocked"`
	// Unclaimed events are due but no relay holds their partition: nothing
	// delivers them until a relay runs.
	Unclaimed int64 `json:"unclaimed"`
	// Delivered events are kept for the relay's retention period; 0 when
	// the relay deletes events on delivery.
	Delivered int64 `json:"delivered"`
	// Dead events failed permanently and wait for a replay.
	Dead int64 `json:"dead"`
	// OldestPendingAge is how long ago the oldest pending event was
	// published; 0 when nothing is pending.
	OldestPendingAge time.Duration `json:"-"`
}

// TopicCounts are the counts of one topic.
type TopicCounts struct {
	Topic string `json:"topic"`
	Counts
}

// RelayInfo is one relay that has registered with the outbox.
type RelayInfo struct {
	ID           string        `json:"id"`
	Hostname     string        `json:"hostname"`
	PID          int           `json:"pid"`
	StartedAt    time.Time     `json:"started_at"`
	HeartbeatAge time.Duration `json:"-"`
	// Partitions is how many partitions it holds an unexpired lease on.
	Partitions int `json:"partitions"`
}

// Status is a snapshot of an outbox.
type Status struct {
	Counts
	// Topics are the topics with events in the table, most pending first.
	Topics []TopicCounts `json:"topics"`
	// Relays are the relays registered in the lease table, by id.
	Relays []RelayInfo `json:"relays"`
	// LeasedPartitions is how many of the 64 partitions are held by a relay.
	LeasedPartitions int `json:"leased_partitions"`
	// Replication is the server's replication settings and txoutbox's
	// slots in the database: what the WAL modes need and hold back.
	Replication *outboxsql.Replication `json:"replication"`
}

// Status counts the outbox's events by state and topic, lists the relays
// and reads the state of replication.
// It reads the whole table, so it costs a scan of it.
func (a *Admin) Status(ctx context.Context) (*Status, error) {
	rows, err := a.db.Query(ctx, a.q.Counts)
	if err != nil {
		return nil, a.err("count events", err)
	}
	st := &Status{}
	for rows.Next() {
		var tc TopicCounts
		var ageUS int64
		if err := rows.Scan(&tc.Topic, &tc.Pending, &tc.InFlight, &tc.Retrying, &tc.Blocked, &tc.Unclaimed,
			&tc.Delivered, &tc.Dead, &ageUS); err != nil {
			rows.Close()
			return nil, a.err("count events", err)
		}
		tc.OldestPendingAge = time.Duration(ageUS) * time.Microsecond
		st.add(tc.Counts)
		st.Topics = append(st.Topics, tc)
	}
	if err := rows.Err(); err != nil {
		return nil, a.err("count events", err)
	}
	slices.SortStableFunc(st.Topics, func(x, y TopicCounts) int {
		if x.Pending != y.Pending {
			return int(y.Pending - x.Pending)
		}
		return strings.Compare(x.Topic, y.Topic)
	})

	rows, err = a.db.Query(ctx, a.q.Relays)
	if err != nil {
		return nil, a.err("list relays", err)
	}
	for rows.Next() {
		var r RelayInfo
		var ageUS int64
		if err := rows.Scan(&r.ID, &r.Hostname, &r.PID, &r.StartedAt, &ageUS, &r.Partitions); err != nil {
			rows.Close()
			return nil, a.err("list relays", err)
		}
		r.HeartbeatAge = time.Duration(ageUS) * time.Microsecond
		st.Relays = append(st.Relays, r)
	}
	if err := rows.Err(); err != nil {
		return nil, a.err("list relays", err)
	}
	if err := a.db.QueryRow(ctx, a.q.Leased).Scan(&st.LeasedPartitions); err != nil {
		return nil, a.err("count leased partitions", err)
	}
	if st.Replication, err = outboxsql.ReadReplication(ctx, a.db, a.schema); err != nil {
		return nil, err
	}
	return st, nil
}

func (c *Counts) add(o Counts) {
	c.Pending += o.Pending
	c.InFlight += o.InFlight
	c.Retrying += o.Retrying
	c.Blocked += o.Blocked
	c.Unclaimed += o.Unclaimed
	c.Delivered += o.Delivered
	c.Dead += o.Dead
	c.OldestPendingAge = max(c.OldestPendingAge, o.OldestPendingAge)
}

// Filter selects events. The conditions that are set must all match.
type Filter struct {
	// IDs selects events by id.
	IDs []uuid.UUID
	// State is one of States(), or "" for any.
	State string
	// Topic is a full topic name, e.g. billing.InvoiceCreated.
	Topic string
	// Key is an ordering key.
	Key string
	// Limit bounds how many events Events returns. Defaults to
	// LimitDefault.
	Limit int
	// Data makes Events return the events' data as well.
	Data bool
}

func (f *Filter) validate() error {
	if f.State != "" && !slices.Contains(States(), f.State) {
		return fmt.Errorf("%w: State: %q is not one of %s", ErrInvalidFilter, f.State, strings.Join(States(), ", "))
	}
	if f.Limit < 0 {
		return fmt.Errorf("%w: Limit: %d is negative", ErrInvalidFilter, f.Limit)
	}
	return nil
}

func (f *Filter) args() []any {
	ids := f.IDs
	if ids == nil {
		ids = []uuid.UUID{}
	}
	return []any{ids, f.State, f.Topic, f.Key}
}

// Event is one row of the outbox, as Events returns it.
type Event struct {
	Seq         int64      `json:"seq"`
	ID          uuid.UUID  `json:"id"`
	Topic       string     `json:"topic"`
	Key         string     `json:"key"`
	Status      string     `json:"status"`
	Attempts    int        `json:"attempts"`
	LastError   string     `json:"last_error,omitempty"`
	ActorType   string     `json:"actor_type"`
	ActorID     string     `json:"actor_id"`
	JobID       string     `json:"job_id"`
	Source      string     `json:"source"`
	PublishedAt time.Time  `json:"published_at"`
	NextAttempt *time.Time `json:"next_attempt_at,omitempty"` // set while a retry waits
	DeliveredAt *time.Time `json:"delivered_at,omitempty"`
	// Data is the event's data, only when Filter.Data was set.
	Data []byte `json:"data,omitempty"`
}

// Events lists the events f selects, oldest first.
func (a *Admin) Events(ctx context.Context, f Filter) ([]Event, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	args := append(f.args(), f.Limit, f.Data)
	if f.Limit == 0 {
		args[4] = LimitDefault
	}
	rows, err := a.db.Query(ctx, a.q.Events, args...)
	if err != nil {
		return nil, a.err("list events", err)
	}
	evs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Event, error) {
		var e Event
		var data *string
		err := row.Scan(&e.Seq, &e.ID, &e.Topic, &e.Key, &e.Status, &e.Attempts, &e.LastError,
			&e.ActorType, &e.ActorID, &e.JobID, &e.Source, &e.PublishedAt, &e.NextAttempt, &e.DeliveredAt, &data)
		if data != nil {
			e.Data = []byte(*data)
		}
		return e, err
	})
	if err != nil {
		return nil, a.err("list events", err)
	}
	return evs, nil
}

// Replayable counts the events Replay would requeue for f, by state.
func (a *Admin) Replayable(ctx context.Context, f Filter) (dead, delivered int64, err error) {
	if err := f.replayable(); err != nil {
		return 0, 0, err
	}
	if err := a.db.QueryRow(ctx, a.q.Replayable, f.args()...).Scan(&dead, &delivered); err != nil {
		return 0, 0, a.err("count replayable events", err)
	}
	return dead, delivered, nil
}

// Replay makes dead or delivered events pending again, attempts reset, and
// returns how many it requeued. With IDs and no State both kinds are
// requeued; otherwise State must be StateDead or StateDelivered, and a State
// alone selects every event in it.
//
// Dead events go through relay.Replay: the relay owning their partition picks
// them up within LeaseTTL/3. A delivered event is sent again with the same
// id, so consumers that deduplicate by id ignore it; it is delivered before
// the later pending events of its key, since the relay reads in insert
// order.
func (a *Admin) Replay(ctx context.Context, f Filter) (int64, error) {
	if err := f.replayable(); err != nil {
		return 0, err
	}
	var n int64
	if f.State != StateDelivered {
		dead, err := relay.Replay(ctx, a.db, relay.ReplayFilter{
			Schema: a.schema, IDs: f.IDs, Topic: f.Topic, Key: f.Key, All: true,
		})
		if err != nil {
			return 0, a.err("replay dead events", err)
		}
		n += dead
	}
	if f.State != StateDead {
		args := f.args()
		tag, err := a.db.Exec(ctx, a.q.RequeueDelivered, args[0], f.Topic, f.Key)
		if err != nil {
			return n, a.err("requeue delivered events", err)
		}
		n += tag.RowsAffected()
	}
	return n, nil
}

func (f *Filter) replayable() error {
	if err := f.validate(); err != nil {
		return err
	}
	switch {
	case f.State != "" && f.State != StateDead && f.State != StateDelivered:
		return fmt.Errorf("%w: State: %s events are already queued", ErrInvalidFilter, f.State)
	case f.State == "" && len(f.IDs) == 0:
		return fmt.Errorf("%w: replay needs IDs or a State (dead or delivered)", ErrInvalidFilter)
	}
	return nil
}

// err wraps a query's error, turning a missing table or schema into
// ErrNotMigrated.
func (a *Admin) err(what string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000") {
		if a.schema != "" {
			return fmt.Errorf("%w (schema %q)", ErrNotMigrated, a.schema)
		}
		return ErrNotMigrated
	}
	return fmt.Errorf("%s: %w", what, err)
}
