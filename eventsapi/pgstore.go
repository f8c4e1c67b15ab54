package eventsapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
)

// Defaults and limits of PostgresStore.
const (
	// PostgresPollIntervalDefault is how often a PostgresStore checks for
	// events other instances appended, in case a notification was lost.
	PostgresPollIntervalDefault = time.Second
	// PostgresMaxIndexedBytes bounds an event's ID, Tenant, Key and
	// DedupeKey in a PostgresStore: they are indexed, and PostgreSQL's
	// indexes take entries of at most about 2.7 kB.
	PostgresMaxIndexedBytes = 1024

	pgGroupEventsDefault = 1000   // events one append transaction takes from several calls
	pgPruneBatchDefault  = 5000   // rows one retention statement deletes
	pgReadLimitDefault   = 1000   // Read's limit when the request has none
	pgReadLimitMax       = 10_000 // most events one Read returns
	pgReadChunks         = 8      // queries one Read runs at most
)

// PostgresStoreConfig configures a PostgresStore. A nil *PostgresStoreConfig
// is allowed.
type PostgresStoreConfig struct {
	// Schema holds the store's tables: the one given to MigratePostgres.
	// Defaults to the connection's search_path.
	Schema string
	// PollInterval is how often the store checks for events appended by
	// other instances sharing its tables, in case a notification was lost
	// (a reconnect, say): a lost one costs at most this much latency.
	// Defaults to PostgresPollIntervalDefault.
	PollInterval time.Duration
	// Logger receives the notification listener's connection trouble.
	// Defaults to slog.Default().
	Logger *slog.Logger
	// NowFunc returns the time events are received at; defaults to time.Now.
	NowFunc func() time.Time

	// groupEvents caps the events of one append transaction; negative runs
	// each Append in its own transaction on the caller's goroutine (for the
	// benchmark that compares the two). Defaults to pgGroupEventsDefault.
	groupEvents int
	// pruneBatch is how many rows one retention statement deletes. Defaults
	// to pgPruneBatchDefault.
	pruneBatch int
}

// PostgresStore is the durable Store: events in PostgreSQL tables of its
// own (create them with MigratePostgres), in the outbox's database or in
// another. Several instances, in one process or many, may share the tables:
// each sees what the others append, and is woken for it within milliseconds.
//
// # Positions
//
// Positions come from a sequence, and become visible in order because every
// append transaction takes the same transaction-scoped advisory lock before
// it takes positions and holds it until it commits. PostgreSQL releases a
// transaction's locks only after its commit is visible to new snapshots, so
// the next transaction to get the lock takes larger positions and commits
// later: a reader that has seen position P has seen every event below P.
// (Taking positions from a sequence without the lock would break the rule:
// see Store.)
//
// The lock serializes appends, so an instance does not run one transaction
// per Append call: a single writer goroutine takes the calls waiting when
// the previous transaction ends and appends them in one (group commit, up
// to 1,000 events), which keeps ingest throughput when many requests arrive
// at once. Each call is still stored all or none: when a combined
// transaction fails, each call is retried on its own.
//
// An append takes two round trips to the server while it holds the lock:
// one finds duplicates and reads the sequence, one inserts, notifies and
// commits.
//
// # Waking subscribers
//
// Each append transaction sends one NOTIFY (whatever the number of events).
// Every store listens on a dedicated connection, made from the pool's
// configuration and remade with backoff when it breaks, and also checks the
// newest position every PollInterval, so a lost notification only costs
// latency.
//
// # Limits and differences from MemoryStore
//
// Times are stored to the microsecond. ID, Tenant, Key and DedupeKey are at
// most PostgresMaxIndexedBytes, and no text field holds a NUL byte or
// invalid UTF-8, nor Data invalid JSON: Append rejects such events. An id
// is a duplicate only while its event is held: once retention deleted it,
// the id may be stored again. Read returns at most 10,000 events a call.
// When Append fails after its commit was sent (the connection broke), the
// events may be stored; appending them again answers Duplicate. Retention
// keeps the newest event, even older than the age limit: its position is
// the head, which must not go back (see Store.Head).
type PostgresStore struct {
	pool  *pgxpool.Pool
	cfg   PostgresStoreConfig
	q     *pgQueries
	jq    *pgJobQueries
	live  liveSubscribers // SubscribeLive's functions
	hints pgEnrollHints   // where enrolments start their scans

	reqs   chan *pgAppendReq // to the writer
	quit   chan struct{}     // closed by Close
	closed atomic.Bool
	wake   pgWake
	stopBG context.CancelFunc // ends the listener and the poller
	wg     sync.WaitGroup

	closeOnce sync.Once
}

var _ Store = (*PostgresStore)(nil)

// NewPostgresStore returns a store on the tables MigratePostgres created in
// pool's database, and starts its listener. Close it to stop the listener;
// the pool stays open.
func NewPostgresStore(ctx context.Context, pool *pgxpool.Pool, cfg *PostgresStoreConfig) (*PostgresStore, error) {
	c := PostgresStoreConfig{}
	if cfg != nil {
		c = *cfg
	}
	switch {
	case pool == nil:
		return nil, fmt.Errorf("%w: eventsapi.NewPostgresStore: pool is nil", ErrInvalidConfig)
	case c.PollInterval < 0:
		return nil, fmt.Errorf("%w: eventsapi.PostgresStoreConfig.PollInterval: %s is negative", ErrInvalidConfig, c.PollInterval)
	}
	if err := outboxsql.CheckSchema(c.Schema); err != nil {
		return nil, fmt.Errorf("%w: eventsapi.PostgresStoreConfig.Schema: %w", ErrInvalidConfig, err)
	}
	c.PollInterval = cmp.Or(c.PollInterval, PostgresPollIntervalDefault)
	c.groupEvents = cmp.Or(c.groupEvents, pgGroupEventsDefault)
	c.pruneBatch = cmp.Or(c.pruneBatch, pgPruneBatchDefault)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.NowFunc == nil {
		c.NowFunc = time.Now
	}
	if err := pgCheckMigrated(ctx, pool, c.Schema); err != nil {
		return nil, fmt.Errorf("eventsapi: %w", err)
	}
	s := &PostgresStore{
		pool: pool,
		cfg:  c,
		q:    newPgQueries(c.Schema),
		reqs: make(chan *pgAppendReq),
		quit: make(chan struct{}),
	}
	s.jq = newPgJobQueries(s.q)
	head, err := s.head(ctx)
	if err != nil {
		return nil, fmt.Errorf("eventsapi: read head: %w", err)
	}
	s.wake.init(head)

	bg, stop := context.WithCancel(context.Background())
	s.stopBG = stop
	s.wg.Add(3)
	go s.writeLoop()
	go s.listenLoop(bg, pool.Config().ConnConfig)
	go s.pollLoop(bg)
	return s, nil
}

// pgAppendReq is one Append call waiting for the writer.
type pgAppendReq struct {
	ctx    context.Context
	events []Event
	done   chan struct{} // closed once out and err are set
	out    []Appended
	err    error
}

func (r *pgAppendReq) finish(err error) {
	r.err = err
	close(r.done)
}

// Append implements Store.
func (s *PostgresStore) Append(ctx context.Context, events []Event) ([]Appended, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.closed.Load() {
		return nil, ErrClosed
	}
	if len(events) == 0 {
		return []Appended{}, nil
	}
	if err := pgCheckEvents(events); err != nil {
		return nil, err
	}
	r := &pgAppendReq{ctx: ctx, events: events, done: make(chan struct{})}
	if s.cfg.groupEvents < 0 {
		if err := s.appendTx(ctx, []*pgAppendReq{r}); err != nil {
			return nil, err
		}
		return r.out, nil
	}
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-s.quit:
		return nil, ErrClosed
	}
	<-r.done // the writer took it: it answers even when ctx ends
	if r.err != nil {
		return nil, r.err
	}
	return r.out, nil
}

// pgCheckEvents rejects what PostgreSQL would refuse, so that a combined
// transaction fails only for reasons that are not one call's fault.
func pgCheckEvents(events []Event) error {
	for i := range events {
		ev := &events[i]
		fields := [...]struct {
			name, v string
			indexed bool
		}{
			{"id", ev.ID, true}, {"topic", ev.Topic, false}, {"category", ev.Category, false},
			{"entity", ev.Entity, false}, {"action", ev.Action, false}, {"key", ev.Key, true},
			{"tenant", ev.Tenant, true}, {"actor_id", ev.ActorID, false}, {"actor_type", ev.ActorType, false},
			{"job_id", ev.JobID, false}, {"causation_id", ev.CausationID, false},
			{"dedupe_key", ev.DedupeKey, true}, {"source", ev.Source, false},
			{"traceparent", ev.Traceparent, false}, {"format", ev.Format, false},
		}
		for _, f := range fields {
			switch {
			case !pgText(f.v):
				return fmt.Errorf("eventsapi: event %d (id %q): %s has a NUL byte or invalid UTF-8", i, ev.ID, f.name)
			case f.indexed && len(f.v) > PostgresMaxIndexedBytes:
				return fmt.Errorf("eventsapi: event %d: %s is %d bytes, at most %d", i, f.name, len(f.v), PostgresMaxIndexedBytes)
			}
		}
		if len(ev.Data) > 0 && (!utf8.Valid(ev.Data) || !json.Valid(ev.Data)) {
			return fmt.Errorf("eventsapi: event %d (id %q): data is not valid JSON", i, ev.ID)
		}
	}
	return nil
}

// writeLoop is the writer: it appends the calls waiting, together, until
// Close.
func (s *PostgresStore) writeLoop() {
	defer s.wg.Done()
	var next *pgAppendReq // taken, but too many events for the last group
	for {
		r := next
		next = nil
		if r == nil {
			select {
			case <-s.quit:
				return
			case r = <-s.reqs:
			}
		}
		group, n := []*pgAppendReq{r}, len(r.events)
	gather:
		for n < s.cfg.groupEvents {
			select {
			case r := <-s.reqs:
				if n+len(r.events) > s.cfg.groupEvents {
					next = r
					break gather
				}
				group, n = append(group, r), n+len(r.events)
			default:
				break gather
			}
		}
		s.appendGroup(group)
	}
}

// appendGroup appends the calls of group in one transaction, or each in its
// own when that fails, and answers them.
func (s *PostgresStore) appendGroup(group []*pgAppendReq) {
	live := group[:0]
	for _, r := range group {
		if err := r.ctx.Err(); err != nil {
			r.finish(err)
			continue
		}
		live = append(live, r)
	}
	switch len(live) {
	case 0:
		return
	case 1:
		live[0].finish(s.appendTx(live[0].ctx, live))
		return
	}
	ctx, cancel := groupContext(live)
	err := s.appendTx(ctx, live)
	cancel()
	if err == nil {
		for _, r := range live {
			r.finish(nil)
		}
		return
	}
	for _, r := range live {
		r.out = nil
		r.finish(s.appendTx(r.ctx, []*pgAppendReq{r}))
	}
}

// groupContext returns a context that ends when every call of group has
// given up, so that one caller's cancellation does not fail the others.
func groupContext(group []*pgAppendReq) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	var left atomic.Int32
	left.Store(int32(len(group)))
	stops := make([]func() bool, len(group))
	for i, r := range group {
		stops[i] = context.AfterFunc(r.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// pgInsert holds the columns of the events an append inserts.
type pgInsert struct {
	position                                          []int64
	id, topic, category, entity, action, key, tenant  []string
	actorID, actorType, jobID, causationID, dedupeKey []string
	source, traceparent, format                       []string
	publishedAt                                       []time.Time
	data                                              []*string
	targetCollection, targetProject, targetLayout     []string
	sender, dependsOn, status, description            []string
	requestMetadata                                   []*string
	retries                                           []int32
}

func (in *pgInsert) add(pos int64, ev *Event, now time.Time) {
	in.position = append(in.position, pos)
	in.id = append(in.id, ev.ID)
	in.topic = append(in.topic, ev.Topic)
	in.category = append(in.category, ev.Category)
	in.entity = append(in.entity, ev.Entity)
	in.action = append(in.action, ev.Action)
	in.key = append(in.key, ev.Key)
	in.tenant = append(in.tenant, ev.Tenant)
	in.actorID = append(in.actorID, ev.ActorID)
	in.actorType = append(in.actorType, ev.ActorType)
	in.jobID = append(in.jobID, ev.JobID)
	in.causationID = append(in.causationID, ev.CausationID)
	in.dedupeKey = append(in.dedupeKey, ev.DedupeKey)
	in.source = append(in.source, ev.Source)
	in.traceparent = append(in.traceparent, ev.Traceparent)
	in.format = append(in.format, ev.Format)
	t := ev.Time
	if t.IsZero() {
		t = now
	}
	in.publishedAt = append(in.publishedAt, t)
	var data *string
	if len(ev.Data) > 0 {
		d := string(ev.Data)
		data = &d
	}
	in.data = append(in.data, data)
	in.targetCollection = append(in.targetCollection, ev.Target.Collection)
	in.targetProject = append(in.targetProject, ev.Target.Project)
	in.targetLayout = append(in.targetLayout, ev.Target.Layout)
	in.sender = append(in.sender, ev.Sender)
	var meta *string
	if len(ev.RequestMetadata) > 0 {
		m := string(ev.RequestMetadata)
		meta = &m
	}
	in.requestMetadata = append(in.requestMetadata, meta)
	in.dependsOn = append(in.dependsOn, ev.DependsOn)
	in.status = append(in.status, string(ev.Status))
	in.description = append(in.description, ev.Description)
	in.retries = append(in.retries, int32(ev.Retries))
}

func (in *pgInsert) args(now time.Time) []any {
	return []any{in.position, in.id, in.topic, in.category, in.entity, in.action, in.key, in.tenant,
		in.actorID, in.actorType, in.jobID, in.causationID, in.dedupeKey, in.source, in.traceparent, in.format,
		in.publishedAt, now, in.data,
		in.targetCollection, in.targetProject, in.targetLayout, in.sender, in.requestMetadata,
		in.dependsOn, in.status, in.description, in.retries}
}

// appendTx appends the events of reqs in one transaction and sets their
// answers (out) when it commits.
//
// Under the append lock, in one round trip, it finds the stored events the
// batch duplicates and reads the sequence; it then sorts out the duplicates
// (within the batch too) in Go, numbers the rest from the sequence's next
// value, and in a second round trip moves the sequence past them, inserts
// them, notifies and commits.
func (s *PostgresStore) appendTx(ctx context.Context, reqs []*pgAppendReq) error {
	now := s.cfg.NowFunc().UTC().Truncate(time.Microsecond)
	var ids, dkTenants, dkKeys []string
	for _, r := range reqs {
		for i := range r.events {
			ev := &r.events[i]
			ids = append(ids, ev.ID)
			if ev.DedupeKey != "" {
				dkTenants, dkKeys = append(dkTenants, ev.Tenant), append(dkKeys, ev.DedupeKey)
			}
		}
	}

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("append events: acquire connection: %w", err)
	}
	// A connection left inside a transaction by an error is closed by the
	// pool on release, which rolls the transaction back.
	defer conn.Release()

	b := &pgx.Batch{}
	b.Queue("BEGIN")
	// Plans for the values at hand: a generic plan cached while the table
	// was small (and not analyzed since) would scan it all to find
	// duplicates.
	b.Queue("SET LOCAL plan_cache_mode = force_custom_plan")
	b.Queue(s.q.lock, s.q.lockKey)
	b.Queue(s.q.dupes, ids, dkTenants, dkKeys)
	b.Queue(s.q.seqState)
	br := conn.SendBatch(ctx, b)
	byID := make(map[string]int64)
	byDedupe := make(map[string]int64)
	var last int64
	err = func() error {
		defer br.Close() //nolint:errcheck // the first error is returned below
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("set plan_cache_mode: %w", err)
		}
		if _, err := br.Exec(); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		rows, err := br.Query()
		if err != nil {
			return fmt.Errorf("find duplicates: %w", err)
		}
		var pos int64
		var id, tenant, dk string
		if _, err := pgx.ForEachRow(rows, []any{&pos, &id, &tenant, &dk}, func() error {
			byID[id] = pos
			if dk != "" {
				byDedupe[dedupeID(tenant, dk)] = pos
			}
			return nil
		}); err != nil {
			return fmt.Errorf("find duplicates: %w", err)
		}
		var called bool
		if err := br.QueryRow().Scan(&last, &called); err != nil {
			return fmt.Errorf("read position sequence: %w", err)
		}
		if !called {
			last-- // the next value is last_value itself
		}
		return br.Close()
	}()
	if err != nil {
		return fmt.Errorf("append events: %w", err)
	}

	var in pgInsert
	outs := make([][]Appended, len(reqs))
	for ri, r := range reqs {
		out := make([]Appended, len(r.events))
		for i := range r.events {
			ev := &r.events[i]
			if pos, ok := byID[ev.ID]; ok {
				out[i] = Appended{Position: pos, Duplicate: true}
				continue
			}
			var dk string
			if ev.DedupeKey != "" {
				dk = dedupeID(ev.Tenant, ev.DedupeKey)
				if pos, ok := byDedupe[dk]; ok {
					out[i] = Appended{Position: pos, Duplicate: true}
					continue
				}
			}
			last++
			in.add(last, ev, now)
			byID[ev.ID] = last
			if dk != "" {
				byDedupe[dk] = last
			}
			out[i] = Appended{Position: last}
		}
		outs[ri] = out
	}

	b = &pgx.Batch{}
	stored := len(in.position) > 0
	if stored {
		b.Queue(s.q.setval, s.q.sequence, last)
		b.Queue(s.q.insert, in.args(now)...)
		b.Queue(s.q.notify, s.q.channel, strconv.FormatInt(last, 10))
	}
	b.Queue("COMMIT")
	br = conn.SendBatch(ctx, b)
	err = func() error {
		defer br.Close() //nolint:errcheck // the first error is returned below
		if stored {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("take positions: %w", err)
			}
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("insert: %w", err)
			}
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("notify: %w", err)
			}
		}
		tag, err := br.Exec()
		if err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		if tag.String() != "COMMIT" {
			return fmt.Errorf("commit: %w", pgx.ErrTxCommitRollback)
		}
		return br.Close()
	}()
	if err != nil {
		return fmt.Errorf("append events: %w", err)
	}
	for ri, r := range reqs {
		r.out = outs[ri]
	}
	if stored {
		s.wake.advance(last)
	}
	return nil
}

// Read implements Store. The filter is said in SQL, exactly, on a scan in
// position order (the tenant's index when the filter has a tenant). Rows
// are matched in Go as well, as a check: were it to reject some, the next
// rows are read, in at most 8 queries.
func (s *PostgresStore) Read(ctx context.Context, req *ReadRequest) ([]Event, error) {
	if s.closed.Load() {
		return nil, ErrClosed
	}
	limit := req.Limit
	if limit <= 0 {
		limit = pgReadLimitDefault
	}
	limit = min(limit, pgReadLimitMax)
	after, before := req.After, req.Before
	if before <= 0 {
		before = math.MaxInt64
	}
	// $1, $2: the positions, $3: the limit.
	w := pgWhere{args: make([]any, 3)}
	w.match(req.Match)
	order := "ASC"
	if req.Descending {
		order = "DESC"
	}
	sql := `SELECT ` + pgColumns + ` FROM ` + s.q.table + ` WHERE position > $1 AND position < $2 AND ` + w.sql() +
		` ORDER BY position ` + order + ` LIMIT $3`

	var out []Event
	for i, chunk := 0, 0; i < pgReadChunks; i++ {
		// The first query asks for what is missing; should the check in Go
		// reject rows, the next ones ask for more, growing fourfold.
		chunk = min(max(limit-len(out), chunk*4), pgReadLimitMax)
		w.args[0], w.args[1], w.args[2] = after, before, chunk
		n, pos, err := s.readChunk(ctx, sql, w.args, req.Match, limit, &out)
		if err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		if n < chunk || len(out) == limit {
			break // the range is exhausted, or the limit reached
		}
		if req.Descending {
			before = pos
		} else {
			after = pos
		}
	}
	return out, nil
}

// readChunk runs one query of Read and appends to out the events m
// matches, up to limit in all. It returns how many rows it read and the
// position of the last.
func (s *PostgresStore) readChunk(ctx context.Context, sql string, args []any, m *Matcher, limit int, out *[]Event) (n int, last int64, err error) {
	rows, err := s.pool.Query(ctx, sql, args...)
	if err != nil {
		return 0, 0, err
	}
	defer rows.Close()
	for rows.Next() {
		var ev Event
		if err := pgScanEvent(rows, &ev); err != nil {
			return n, last, err
		}
		n, last = n+1, ev.Position
		if m.Match(&ev) {
			if *out = append(*out, ev); len(*out) == limit {
				break
			}
		}
	}
	return n, last, rows.Err()
}

// Get implements Store.
func (s *PostgresStore) Get(ctx context.Context, tenant, id string) (Event, error) {
	if s.closed.Load() {
		return Event{}, ErrClosed
	}
	if !pgText(id) {
		return Event{}, ErrNotFound
	}
	var ev Event
	err := pgScanEvent(s.pool.QueryRow(ctx, s.q.get, id), &ev)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Event{}, ErrNotFound
	case err != nil:
		return Event{}, fmt.Errorf("get event: %w", err)
	case tenant != "" && ev.Tenant != tenant:
		return Event{}, ErrNotFound
	}
	return ev, nil
}

// Latest implements Store. It reads in one REPEATABLE READ snapshot: the
// newest position, then the newest matching event of each key up to it.
// Events without a key are not part of any state.
func (s *PostgresStore) Latest(ctx context.Context, m *Matcher) ([]Event, int64, error) {
	if s.closed.Load() {
		return nil, 0, ErrClosed
	}
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, 0, fmt.Errorf("latest events: begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read only: nothing to keep
	var head int64
	if err := tx.QueryRow(ctx, s.q.head).Scan(&head); err != nil {
		return nil, 0, fmt.Errorf("latest events: head: %w", err)
	}
	var w pgWhere
	w.add("key <> ''")
	w.add("position <= " + w.arg(head))
	w.match(m)
	rows, err := tx.Query(ctx, `SELECT DISTINCT ON (key) `+pgColumns+` FROM `+s.q.table+` WHERE `+w.sql()+
		` ORDER BY key, position DESC`, w.args...)
	if err != nil {
		return nil, 0, fmt.Errorf("latest events: %w", err)
	}
	var out []Event
	for rows.Next() {
		var ev Event
		if err := pgScanEvent(rows, &ev); err != nil {
			rows.Close()
			return nil, 0, fmt.Errorf("latest events: %w", err)
		}
		if m.Match(&ev) { // the SQL says the filter exactly: a check
			out = append(out, ev)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("latest events: %w", err)
	}
	slices.SortFunc(out, func(a, b Event) int { return cmp.Compare(a.Position, b.Position) })
	return out, head, nil
}

// Head implements Store.
func (s *PostgresStore) Head(ctx context.Context) (int64, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	head, err := s.head(ctx)
	if err != nil {
		return 0, fmt.Errorf("head: %w", err)
	}
	return head, nil
}

func (s *PostgresStore) head(ctx context.Context) (int64, error) {
	var head int64
	err := s.pool.QueryRow(ctx, s.q.head).Scan(&head)
	return head, err
}

// Oldest implements Store.
func (s *PostgresStore) Oldest(ctx context.Context) (int64, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	var oldest int64
	if err := s.pool.QueryRow(ctx, s.q.oldest).Scan(&oldest); err != nil {
		return 0, fmt.Errorf("oldest: %w", err)
	}
	return oldest, nil
}

// Changed implements Store. The channel closes when this store appends, when
// a notification from another instance arrives, or when the poll finds a
// newer position.
func (s *PostgresStore) Changed(after int64) <-chan struct{} { return s.wake.changed(after) }

// Prune implements Store. It deletes from the oldest event on, in
// statements of at most 5,000 rows, until done or ctx ends; the count is
// what it deleted until then.
func (s *PostgresStore) Prune(ctx context.Context, olderThan time.Time, keep int64) (int64, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	var total int64
	if keep > 0 {
		var cut int64
		err := s.pool.QueryRow(ctx, s.q.pruneCount, keep).Scan(&cut)
		switch {
		case errors.Is(err, pgx.ErrNoRows): // no more than keep events
		case err != nil:
			return total, fmt.Errorf("prune events: %w", err)
		default:
			if err := s.pruneBatches(ctx, &total, s.q.pruneBefore, cut); err != nil {
				return total, err
			}
		}
	}
	if !olderThan.IsZero() {
		if err := s.pruneBatches(ctx, &total, s.q.pruneAge, pgCeilMicro(olderThan)); err != nil {
			return total, err
		}
	}
	return total, nil
}

// pruneBatches runs a delete statement of bound and the batch size until it
// deletes less than a batch, adding what it deletes to total.
func (s *PostgresStore) pruneBatches(ctx context.Context, total *int64, sql string, bound any) error {
	for {
		tag, err := s.pool.Exec(ctx, sql, bound, s.cfg.pruneBatch)
		if err != nil {
			return fmt.Errorf("prune events: %w", err)
		}
		*total += tag.RowsAffected()
		if tag.RowsAffected() < int64(s.cfg.pruneBatch) {
			return nil
		}
	}
}

// Close implements Store: it stops the listener and the writer (after the
// transaction in progress) and wakes waiting readers. It does not close the
// pool.
func (s *PostgresStore) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.quit)
		s.stopBG()
		s.wg.Wait()
		s.wake.close()
	})
	return nil
}
