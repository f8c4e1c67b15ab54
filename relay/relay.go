package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/txoutbox/txoutbox/internal/walmsg"
)

// ErrRunning is returned by Run when the relay is already running.
var ErrRunning = errors.New("relay: already running")

// Relay forwards committed outbox rows to a sink. Create it with New and call
// Run; several relays, in one process or many, share the outbox by leasing
// its partitions.
type Relay struct {
	pool *pgxpool.Pool
	sink Sink
	cfg  *Config
	q    queries
	log  *slog.Logger
	host string
	// tracer starts the spans of deliveries to the sink.
	tracer trace.Tracer
	// statsBuf backs BatchStats.Events; used by the loop only.
	statsBuf []EventStats
	// msgStatsBuf is statsBuf of ModeMessages' stream.
	msgStatsBuf []EventStats

	wake     chan struct{}
	running  atomic.Bool
	lastPoll atomic.Int64 // unix nanoseconds

	// leases is the partitions held. The lease goroutine renews, takes and
	// gives them back without ever waiting for a batch; a partition in the
	// batch in flight is given back once the batch is recorded, when the
	// loop sends on leaseKick for a lease round at once.
	leases    leaseSet
	leaseKick chan struct{}

	wal walState // ModeWAL's stream

	// sinkPause holds every sender back while the sink's Retry-After runs.
	sinkPause sinkPause
}

// New returns a relay that delivers the outbox in pool's database to sink.
// cfg may be nil for the defaults. The sink is the relay's for as long as it
// runs but is not closed by it.
func New(pool *pgxpool.Pool, sink Sink, cfg *Config) (*Relay, error) {
	if pool == nil {
		return nil, errors.New("relay: pool is nil")
	}
	if sink == nil {
		return nil, errors.New("relay: sink is nil")
	}
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	return &Relay{
		pool: pool,
		sink: sink,
		cfg:  c,
		q:    newQueries(c.Schema),
		log:  c.Logger.With("relay", c.ID),
		host: host,
		wake: make(chan struct{}, 1),

		leaseKick: make(chan struct{}, 1),

		tracer: c.TracerProvider.Tracer(tracerName),
	}, nil
}

// ID returns the relay's id, as it appears in the txoutbox_relays table.
func (r *Relay) ID() string { return r.cfg.ID }

// Wake asks the relay to poll now instead of at the end of its current wait.
// It never blocks. An application that embeds the relay passes it to the
// outbox client, client.OnCommit(r.Wake), so that events committed by this
// process are delivered within milliseconds of their commit. Wake after the
// commit: a poll that a wake started and that found nothing leaves the
// relay's schedule as it was, so a wake that came too early is wasted. A
// wake does not cut short the backoff after a round in which the sink or
// the database failed.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// LastPoll returns when the relay last finished a round of its loop,
// successful or not; the zero time before the first. A daemon's liveness
// check compares it with the clock.
func (r *Relay) LastPoll() time.Time {
	n := r.lastPoll.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Run delivers events until ctx is cancelled, then finishes the batch in
// flight (within Config.ShutdownTimeout), releases its partitions so that
// other relays take them over at once, and returns nil.
//
// Run keeps going through database and sink outages, logging and backing
// off. It returns an error only when it cannot start: the outbox tables are
// missing, or the relay is already running.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer r.running.Store(false)
	var pub, slot, schema string
	if r.cfg.Mode != ModePoll {
		var err error
		if pub, slot, schema, err = r.walPrepare(ctx); err != nil {
			if ctx.Err() != nil {
				return nil // stopped before it started: a clean shutdown
			}
			if isUndefinedTable(err) {
				return fmt.Errorf("relay: outbox tables missing, run the migrations: %w", err)
			}
			return err
		}
	}
	first, err := r.tickLeases(ctx)
	if err != nil {
		if isUndefinedTable(err) {
			return fmt.Errorf("relay: outbox tables missing, run the migrations: %w", err)
		}
		if ctx.Err() != nil {
			return nil
		}
		r.log.Warn("lease partitions", "err", err)
	}

	// The batch in flight when ctx is cancelled runs on under workCtx, which
	// ends ShutdownTimeout later.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopTimer := context.AfterFunc(ctx, func() {
		t := time.NewTimer(r.cfg.ShutdownTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			cancelWork()
		case <-workCtx.Done():
		}
	})
	defer stopTimer()

	// Leases are renewed until the loop is done with its last batch.
	bgCtx, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { r.leaseLoop(bgCtx, first) })
	wg.Go(func() { r.cleanupLoop(ctx) })
	switch r.cfg.Mode {
	case ModeWAL:
		wg.Go(func() { r.walLoop(ctx, pub) })
	case ModeMessages:
		wg.Go(func() { r.messagesLoop(ctx, workCtx, pub, slot, walmsg.Prefix(schema)) })
	}

	r.loop(ctx, workCtx)

	stopBg()
	wg.Wait()
	cancelWork()

	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.ShutdownTimeout)
	defer cancel()
	if err := r.releaseAll(ctx); err != nil {
		r.log.Warn("release partitions", "err", err)
	}
	return nil
}

// loop polls, delivers and waits, adapting the wait to what the last round
// found (see plan). A wake starts a round at once, except during the backoff
// after a failed round: a sink or database that is down is not asked again
// for every commit of the application.
func (r *Relay) loop(ctx, workCtx context.Context) {
	st := newLoopState()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
			if st.failures > 0 {
				continue
			}
		case <-timer.C:
		}
		start := time.Now()
		walParts := r.wal.woken.Swap(0)
		res := r.step(ctx, workCtx, st)
		now := time.Now()
		r.lastPoll.Store(now.UnixNano())
		if ctx.Err() == nil {
			if res.dbErr != nil {
				r.log.Warn("relay round", "err", res.dbErr)
			}
			if res.sinkDown != nil {
				r.log.Warn("sink failed again; no attempt counted, backing off", "err", res.sinkDown, "events", res.unsent)
			}
		}
		timer.Reset(st.plan(r.cfg, res, start, now, walParts).Sub(now))
	}
}

// loopState is the loop's memory between rounds; only the loop touches it.
type loopState struct {
	blocked      map[string]blockedKey
	rows         []row // the last round's rows, reused by the next
	spare        []row // a second buffer, for reading while rows are recorded
	prefetched   bool  // rows holds the next batch, read while the last was recorded
	partsVersion uint64
	deadLoadedAt time.Time
	pollAt       time.Time     // when the next scheduled round is due
	idle         time.Duration // last idle wait; 0 after rows were found
	failures     int           // consecutive rounds that failed as a whole
	// sinkFailed: the last round that sent anything delivered nothing and
	// failed retryably. Then the sink, not the events, is taken to be at
	// fault: the next rounds send one event as a probe, each the head of
	// another key (probes counts them), and count no attempt until the
	// sink delivers again.
	sinkFailed bool
	probes     int
}

// blockedKey is a key whose oldest pending event must not be tried before
// until (zero for a key blocked by a dead event).
type blockedKey struct {
	part  int16
	until time.Time
	dead  bool
}

func newLoopState() *loopState {
	return &loopState{blocked: make(map[string]blockedKey), partsVersion: ^uint64(0)}
}

// stepResult is what one round did.
type stepResult struct {
	read      int
	parts     uint64 // the partitions the rows read are in, a bit each
	delivered int
	dbErr     error // the database failed; the round did nothing or only part
	// sinkErr: the sink delivered nothing and failed retryably; retryIn is
	// the longest RetryAfter it asked for.
	sinkErr error
	retryIn time.Duration
	// sinkDown: sinkErr followed an earlier round's, so no attempt was
	// counted for the unsent events.
	sinkDown error
	unsent   int
}

// Bounds of the loop's backoff while the database is unreachable.
const (
	dbRetryBase = 100 * time.Millisecond
	dbRetryMax  = 5 * time.Second
)

// sinkRetryMax caps the loop's backoff while the sink fails every round:
// RetryBase doubling up to this (or RetryMax when lower), waiting half to
// all of it. Each of those rounds sends one event, so probing a sink that is
// down this often costs one request, and delivery resumes within about
// sinkRetryMax of the sink's recovery unless the sink asked for a longer
// RetryAfter.
const sinkRetryMax = 4 * time.Second

// walRecheck is how soon a round that the WAL stream woke for partitions
// in which it then read nothing reads again, once. The stream can report a
// commit an instant before its rows are visible to a new snapshot: the
// commit record is flushed, and may be sent, before the transaction leaves
// the server's list of running ones.
const walRecheck = time.Millisecond

// plan returns when the next round is due, after a round that started at
// start and ended at now with res; walParts are the partitions the WAL
// stream woke the loop for since the round before (0 for none).
//
// A round that started before the scheduled one was due (a wake) and read
// nothing leaves the schedule as it was: a wake that came before the
// commit it announced must not push the next poll back. Any other round
// schedules the next as next says. A round woken by the WAL stream that
// read nothing in the partitions it was woken for is followed by another
// walRecheck later; that one, unless the stream woke the loop again
// meanwhile, has no walParts and so no recheck of its own.
func (st *loopState) plan(cfg *Config, res stepResult, start, now time.Time, walParts uint64) time.Time {
	woken := start.Before(st.pollAt)
	failed := res.dbErr != nil || res.sinkErr != nil
	if !woken || res.read > 0 || failed {
		st.pollAt = now.Add(st.next(cfg, res))
	}
	if walParts != 0 && res.parts&walParts == 0 && !failed {
		if recheck := now.Add(walRecheck); recheck.Before(st.pollAt) {
			return recheck
		}
	}
	return st.pollAt
}

// next returns how long to wait before the next scheduled round.
func (st *loopState) next(cfg *Config, res stepResult) time.Duration {
	switch {
	case res.dbErr != nil:
		st.failures++
		st.idle = 0
		return equalJitter(dbRetryBase, dbRetryMax, st.failures)
	case res.sinkErr != nil:
		// Back off the whole loop, so that a sink that is down is not
		// tried once per key of the backlog.
		st.failures++
		st.idle = 0
		return max(res.retryIn, equalJitter(cfg.RetryBase, min(cfg.RetryMax, sinkRetryMax), st.failures))
	case res.read >= cfg.BatchSize:
		st.failures, st.idle = 0, 0
		return 0
	case res.read > 0:
		st.failures, st.idle = 0, pollMin
		return pollMin
	default:
		st.failures = 0
		st.idle = min(max(2*st.idle, pollMin), cfg.PollInterval)
		return st.idle
	}
}

func isUndefinedTable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P01"
}
