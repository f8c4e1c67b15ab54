package eventsapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

var (
	_ JobStore  = (*PostgresStore)(nil)
	_ LiveStore = (*PostgresStore)(nil)
)

const (
	// PostgresMaxLiveBytes bounds the JSON of a live-only event a
	// PostgresStore carries: a NOTIFY payload is shorter than 8,000 bytes.
	PostgresMaxLiveBytes = 7999

	pgJobIndex        = "txoutbox_events_api_events_job_idx" // migrations/002
	pgEnrollAttempts  = 8                                    // enrolments that lose a race before Enroll gives up
	pgStaleBatch      = 100                                  // stale jobs one transaction restarts
	pgUniqueViolation = "23505"
)

// pgJobQueries is the SQL of the job operations, built once per store.
type pgJobQueries struct {
	lockUpdate, moveJob, insertJob, staleJobs, restartJobs, notifyCurrent string
}

func newPgJobQueries(q *pgQueries) *pgJobQueries {
	t := q.table
	// The sequence as a literal: its quoted name, quotes doubled.
	seq := "'" + strings.ReplaceAll(q.sequence, "'", "''") + "'"
	return &pgJobQueries{
		lockUpdate: `SELECT ` + pgColumns + ` FROM ` + t + ` WHERE id = $1 FOR UPDATE`,
		// Under the append lock: the job takes the next position, as an
		// append would.
		moveJob: `UPDATE ` + t + ` SET position = nextval(` + seq + `::regclass),
			status = $2, description = $3, retries = $4, sender = $5, updated_at = $6
			WHERE position = $1 RETURNING ` + pgColumns,
		insertJob: `INSERT INTO ` + t + ` (position, id, topic, category, entity, action, key, tenant,
				actor_id, actor_type, job_id, causation_id, source, traceparent, format,
				published_at, received_at, sender, depends_on, status, description, updated_at)
			VALUES (nextval(` + seq + `::regclass), $1, $2, $3, $4, $5, $6, $7,
				'', '', '', '', '', '', $8, $9, $9, $10, $11, $12, $13, $9)
			RETURNING ` + pgColumns,
		staleJobs: `SELECT position, id, status, retries FROM ` + t + `
			WHERE status IN ('pending', 'in_progress') AND updated_at < $1
			ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED`,
		restartJobs: `UPDATE ` + t + ` AS e SET position = nextval(` + seq + `::regclass),
				status = u.status, retries = u.retries, updated_at = $4
			FROM unnest($1::bigint[], $2::text[], $3::int[]) AS u(position, status, retries)
			WHERE e.position = u.position`,
		notifyCurrent: `SELECT pg_notify($1, currval(` + seq + `::regclass)::text)`,
	}
}

// pgEnrollWhere is the condition on source events s of an enrolment.
func pgEnrollWhere(w *pgWhere, req *EnrollRequest, conds []condition) {
	w.add("s.topic = " + w.arg(req.SourceTopic))
	if req.Tenant != "" {
		w.add("s.tenant = " + w.arg(req.Tenant))
	}
	for _, c := range conds {
		w.add("(s.data::jsonb #> " + w.arg(c.path) + "::text[]) = " + w.arg(c.json) + "::jsonb")
	}
}

// pgSourceColumns are pgColumns of the source event s.
const pgSourceColumns = `s.position, s.id, s.topic, s.category, s.entity, s.action, s.key, s.tenant,
	s.actor_id, s.actor_type, s.job_id, s.causation_id, coalesce(s.dedupe_key, ''),
	s.source, s.traceparent, s.format, s.published_at, s.received_at, s.data,
	s.target_collection, s.target_project, s.target_layout, s.sender, s.request_metadata,
	s.depends_on, s.status, s.description, s.retries, s.updated_at`

// Enroll implements JobStore. In one transaction it locks the oldest
// restarted job whose source the request selects, or else the oldest
// source event the request selects that has no job yet (both FOR UPDATE
// SKIP LOCKED, so concurrent enrolments pass each other's picks by); then,
// under the append lock, moves the job to pending at a new position, or
// inserts the new one. The unique index on (topic, depends_on) refuses a
// second job for a source; an enrolment that loses that race tries again.
func (s *PostgresStore) Enroll(ctx context.Context, req *EnrollRequest, job Event) (EnrollResult, bool, error) {
	if s.closed.Load() {
		return EnrollResult{}, false, ErrClosed
	}
	conds, err := compileConditions(req.Conditions)
	if err != nil {
		return EnrollResult{}, false, err
	}
	hint := s.hints.key(req, conds)
	for attempt := 1; ; attempt++ {
		from := s.hints.get(hint)
		res, ok, err := s.enrollTx(ctx, req, conds, job, from)
		if err == nil && !ok && from > 0 {
			// Nothing after the hint: look again from the oldest event,
			// for a source an enrolment that failed left behind.
			s.hints.set(hint, 0)
			res, ok, err = s.enrollTx(ctx, req, conds, job, 0)
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == pgUniqueViolation && pgErr.ConstraintName == pgJobIndex && attempt < pgEnrollAttempts {
			continue
		}
		if err != nil {
			return EnrollResult{}, false, fmt.Errorf("enroll: %w", err)
		}
		if ok {
			s.wake.advance(res.Job.Position)
			if res.Job.DependsOn == res.Source.ID && res.Job.Retries == 0 {
				s.hints.advance(hint, res.Source.Position)
			}
		}
		return res, ok, nil
	}
}

func (s *PostgresStore) enrollTx(ctx context.Context, req *EnrollRequest, conds []condition, job Event, from int64) (EnrollResult, bool, error) {
	now := s.cfg.NowFunc().UTC().Truncate(time.Microsecond)
	var restarted, source pgWhere
	restarted.add("j.status = 'restarted'")
	restarted.add("j.topic = " + restarted.arg(req.TargetTopic))
	pgEnrollWhere(&restarted, req, conds)
	pgEnrollWhere(&source, req, conds)
	if from > 0 {
		source.add("s.position >= " + source.arg(from))
	}
	// A subquery per candidate, not NOT EXISTS: an anti join planned on
	// stale statistics compares every candidate with every job. depends_on
	// <> '' lets the subquery use the job index, which is partial.
	source.add("(SELECT 1 FROM " + s.q.table + " j WHERE j.topic = " + source.arg(req.TargetTopic) +
		" AND j.depends_on = s.id AND j.depends_on <> '' LIMIT 1) IS NULL")

	return pgTx(ctx, s.pool, func(tx pgx.Tx) (EnrollResult, bool, error) {
		var res EnrollResult
		var jobPos int64
		var desc string
		var retries int
		sc := pgEventScan{ev: &res.Source}
		row := tx.QueryRow(ctx, `SELECT j.position, j.description, j.retries, `+pgSourceColumns+` FROM `+s.q.table+` j JOIN `+s.q.table+
			` s ON s.id = j.depends_on WHERE `+restarted.sql()+` ORDER BY j.position LIMIT 1 FOR UPDATE OF j SKIP LOCKED`, restarted.args...)
		err := row.Scan(append([]any{&jobPos, &desc, &retries}, sc.targets()...)...)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return res, false, fmt.Errorf("find a restarted job: %w", err)
		default:
			sc.finish()
			if _, err := tx.Exec(ctx, s.q.lock, s.q.lockKey); err != nil {
				return res, false, fmt.Errorf("lock: %w", err)
			}
			if job.Description != "" {
				desc = job.Description
			}
			if err := pgScanEvent(tx.QueryRow(ctx, s.jq.moveJob, jobPos, string(JobPending), desc, retries, job.Sender, now), &res.Job); err != nil {
				return res, false, fmt.Errorf("move the job: %w", err)
			}
			return res, true, s.notifyMoved(ctx, tx)
		}

		err = pgScanEvent(tx.QueryRow(ctx, `SELECT `+pgSourceColumns+` FROM `+s.q.table+` s WHERE `+source.sql()+
			` ORDER BY s.position LIMIT 1 FOR UPDATE SKIP LOCKED`, source.args...), &res.Source)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return res, false, nil
		case err != nil:
			return res, false, fmt.Errorf("find a source event: %w", err)
		}
		if _, err := tx.Exec(ctx, s.q.lock, s.q.lockKey); err != nil {
			return res, false, fmt.Errorf("lock: %w", err)
		}
		src := &res.Source
		if err := pgScanEvent(tx.QueryRow(ctx, s.jq.insertJob, job.ID, job.Topic, job.Category, job.Entity, job.Action,
			src.Key, src.Tenant, job.Format, now, job.Sender, src.ID, string(JobPending), job.Description), &res.Job); err != nil {
			return res, false, fmt.Errorf("insert the job: %w", err)
		}
		return res, true, s.notifyMoved(ctx, tx)
	})
}

// notifyMoved wakes the readers of every instance, on commit, for the
// position the transaction took last.
func (s *PostgresStore) notifyMoved(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, s.jq.notifyCurrent, s.q.channel); err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	return nil
}

// pgTx runs fn in a transaction on pool and commits it when fn succeeds.
func pgTx[T any](ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) (T, bool, error)) (T, bool, error) {
	var zero T
	tx, err := pool.Begin(ctx)
	if err != nil {
		return zero, false, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit, a no-op
	v, ok, err := fn(tx)
	if err != nil {
		return zero, false, err
	}
	if err := tx.Commit(ctx); err != nil {
		return zero, false, fmt.Errorf("commit: %w", err)
	}
	return v, ok, nil
}

// UpdateJob implements JobStore: it locks the job's row, applies u, and
// moves the job to the next position under the append lock.
func (s *PostgresStore) UpdateJob(ctx context.Context, tenant, id string, u JobUpdate, maxRetries int) (Event, error) {
	if s.closed.Load() {
		return Event{}, ErrClosed
	}
	if !pgText(id) {
		return Event{}, ErrNotFound
	}
	now := s.cfg.NowFunc().UTC().Truncate(time.Microsecond)
	ev, _, err := pgTx(ctx, s.pool, func(tx pgx.Tx) (Event, bool, error) {
		var ev Event
		err := pgScanEvent(tx.QueryRow(ctx, s.jq.lockUpdate, id), &ev)
		switch {
		case errors.Is(err, pgx.ErrNoRows) || (err == nil && tenant != "" && ev.Tenant != tenant):
			return ev, false, ErrNotFound
		case err != nil:
			return ev, false, fmt.Errorf("read the job: %w", err)
		}
		old := ev.Position
		if err := applyJobUpdate(&ev, u, maxRetries, now); err != nil {
			return ev, false, err
		}
		if _, err := tx.Exec(ctx, s.q.lock, s.q.lockKey); err != nil {
			return ev, false, fmt.Errorf("lock: %w", err)
		}
		if err := pgScanEvent(tx.QueryRow(ctx, s.jq.moveJob, old, string(ev.Status), ev.Description, ev.Retries, ev.Sender, now), &ev); err != nil {
			return ev, false, fmt.Errorf("move the job: %w", err)
		}
		return ev, true, s.notifyMoved(ctx, tx)
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrNotAJob) || errors.Is(err, ErrIllegalTransition) {
			return Event{}, err
		}
		return Event{}, fmt.Errorf("update job: %w", err)
	}
	s.wake.advance(ev.Position)
	return ev, nil
}

// RestartStale implements JobStore. Each transaction locks up to 100 stale
// jobs (FOR UPDATE SKIP LOCKED: servers sharing the store share the work)
// and moves them, under the append lock, to new positions.
func (s *PostgresStore) RestartStale(ctx context.Context, before time.Time, maxRetries int) (int, error) {
	if s.closed.Load() {
		return 0, ErrClosed
	}
	total := 0
	for {
		now := s.cfg.NowFunc().UTC().Truncate(time.Microsecond)
		n, _, err := pgTx(ctx, s.pool, func(tx pgx.Tx) (int, bool, error) {
			rows, err := tx.Query(ctx, s.jq.staleJobs, before, pgStaleBatch)
			if err != nil {
				return 0, false, err
			}
			var positions []int64
			var statuses []string
			var retries []int32
			var ev Event
			var status string
			_, err = pgx.ForEachRow(rows, []any{&ev.Position, &ev.ID, &status, &ev.Retries}, func() error {
				ev.Status = JobStatus(status)
				j := ev
				if err := applyJobUpdate(&j, JobUpdate{Status: JobRestarted}, maxRetries, now); err != nil {
					return err
				}
				positions, statuses, retries = append(positions, ev.Position), append(statuses, string(j.Status)), append(retries, int32(j.Retries))
				return nil
			})
			if err != nil || len(positions) == 0 {
				return 0, false, err
			}
			if _, err := tx.Exec(ctx, s.q.lock, s.q.lockKey); err != nil {
				return 0, false, fmt.Errorf("lock: %w", err)
			}
			if _, err := tx.Exec(ctx, s.jq.restartJobs, positions, statuses, retries, now); err != nil {
				return 0, false, err
			}
			return len(positions), true, s.notifyMoved(ctx, tx)
		})
		if err != nil {
			return total, fmt.Errorf("restart stale jobs: %w", err)
		}
		total += n
		if n < pgStaleBatch {
			if n > 0 {
				s.poll(ctx)
			}
			return total, nil
		}
	}
}

// PublishLive implements LiveStore: one NOTIFY on the store's live channel
// per event, its JSON the payload. An event whose JSON is larger than
// PostgresMaxLiveBytes is refused (*LiveTooLargeError), and with it the
// call: nothing is sent.
func (s *PostgresStore) PublishLive(ctx context.Context, evs []Event) error {
	if s.closed.Load() {
		return ErrClosed
	}
	b := &pgx.Batch{}
	for i := range evs {
		data, err := appendEventJSON(nil, &evs[i])
		if err != nil {
			return fmt.Errorf("publish live event %s: %w", evs[i].ID, err)
		}
		if len(data) > PostgresMaxLiveBytes {
			return &LiveTooLargeError{ID: evs[i].ID, Size: len(data), Max: PostgresMaxLiveBytes, StoreLimit: "a PostgreSQL notification's payload"}
		}
		b.Queue(s.q.notify, s.q.liveChannel, string(data))
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("publish live events: %w", err)
	}
	return nil
}

// SubscribeLive implements LiveStore. The store's listener receives the
// live events of every instance sharing its tables, this one's included.
func (s *PostgresStore) SubscribeLive(fn func([]Event)) (stop func()) { return s.live.add(fn) }

// pgEnrollHints remember, per kind of enrolment (topics, tenant,
// conditions), the position of the last source event enrolled: the sources
// before it had jobs then, so the next enrolment starts its scan there
// instead of at the oldest event. A hint is only a start: when nothing
// follows it, the scan runs again from the oldest event, so a source that
// a failed enrolment passed over is found then.
type pgEnrollHints struct {
	mu    sync.Mutex
	start map[string]int64
}

// pgEnrollHintsMax bounds the hints kept; beyond, they are forgotten.
const pgEnrollHintsMax = 1024

func (h *pgEnrollHints) key(req *EnrollRequest, conds []condition) string {
	var b strings.Builder
	for _, s := range []string{req.SourceTopic, req.TargetTopic, req.Tenant} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	for _, c := range conds {
		b.WriteString(strings.Join(c.path, "/"))
		b.WriteByte(0)
		b.WriteString(c.json)
		b.WriteByte(0)
	}
	return b.String()
}

func (h *pgEnrollHints) get(k string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.start[k]
}

func (h *pgEnrollHints) set(k string, pos int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.start == nil || len(h.start) >= pgEnrollHintsMax {
		h.start = make(map[string]int64)
	}
	h.start[k] = pos
}

// advance moves the hint forward to pos.
func (h *pgEnrollHints) advance(k string, pos int64) {
	if pos > h.get(k) {
		h.set(k, pos)
	}
}
