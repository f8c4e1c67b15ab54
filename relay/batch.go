package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/txoutbox/txoutbox/outbox"
)

// row is one pending outbox row read for delivery.
type row struct {
	seq      int64
	part     int16
	key      string
	attempts int32
	waitUS   int64 // > 0: the row's next attempt is not due yet
	ev       outbox.Event
}

// failure is a row the sink did not take.
type failure struct {
	row  *row
	err  error
	wait time.Duration
}

// logAttrs are the fields of a failed event's log lines: what identifies
// it and why it failed, never its data, which may hold personal details.
func (f failure) logAttrs() []slog.Attr {
	return []slog.Attr{
		slog.String("event_id", f.row.ev.ID.String()),
		slog.String("topic", f.row.ev.Topic),
		slog.String("key", f.row.key),
		slog.Int("attempt", int(f.row.attempts)),
		slog.Any("err", f.err),
	}
}

// outcome is what the sink did with a batch.
type outcome struct {
	delivered []*row
	failed    []failure
	unsent    []*row // left pending as they were: no attempt, no backoff
}

// sinkFailed reports whether the sink delivered nothing of what it sent and
// failed all of it retryably: a failure of the sink rather than of events.
func (o *outcome) sinkFailed() bool {
	if len(o.delivered) > 0 || len(o.failed) == 0 {
		return false
	}
	for _, f := range o.failed {
		if IsPermanent(f.err) {
			return false
		}
	}
	return true
}

// unsendCancelled moves to unsent the failures of a delivery the relay
// cancelled (its shutdown timeout ran out): the sink did not fail those
// events, the relay stopped it.
func (o *outcome) unsendCancelled() {
	o.failed = slices.DeleteFunc(o.failed, func(f failure) bool {
		if errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded) {
			o.unsent = append(o.unsent, f.row)
			return true
		}
		return false
	})
}

// step runs one round: read a batch of the owned partitions, deliver it,
// record the outcome. The partitions it reads are busy until it returns: the
// lease goroutine gives none of them back meanwhile.
func (r *Relay) step(ctx, workCtx context.Context, st *loopState) stepResult {
	now := time.Now()
	version, parts := r.leases.begin(now, r.cfg.LeaseTTL/3)
	defer func() {
		if r.leases.end() {
			select {
			case r.leaseKick <- struct{}{}:
			default:
			}
		}
	}()
	if version != st.partsVersion || (r.cfg.mayBlock() && now.Sub(st.deadLoadedAt) >= r.cfg.LeaseTTL/3) {
		if err := r.syncBlocked(ctx, st, version, now); err != nil {
			return stepResult{dbErr: err}
		}
	}
	if len(parts) == 0 {
		return stepResult{}
	}
	var rows []row
	if st.prefetched {
		rows = st.keepParts(parts)
	} else {
		var err error
		rows, err = r.read(ctx, st.rows[:0], parts, st.blockedKeys(now), nil)
		if err != nil {
			return stepResult{dbErr: err}
		}
		st.rows = rows
	}
	st.prefetched = false
	res := stepResult{read: len(rows)}
	for i := range rows {
		res.parts |= 1 << uint(rows[i].part)
	}
	batch := st.due(rows, now)
	if len(batch) == 0 {
		return res
	}
	if st.sinkFailed {
		batch = st.probe(batch) // is the sink back?
	}

	// Delivery stops when a lease of the batch's partitions is about to
	// end: what was not sent by then stays pending for the next owner.
	dctx, stopCut := r.leases.deliverContext(workCtx)
	out := r.deliver(dctx, batch)
	stopCut()
	recCtx := workCtx
	if workCtx.Err() != nil {
		// The shutdown timeout ran out mid-batch. What the sink accepted
		// is recorded all the same, on a context of its own, so that the
		// next owner does not send it again; the rest stays pending.
		out.unsendCancelled()
		var cancel context.CancelFunc
		recCtx, cancel = context.WithTimeout(context.WithoutCancel(workCtx), recordAfterShutdown)
		defer cancel()
		r.log.Warn("shutdown timeout ran out with a batch in flight; recording what the sink accepted",
			"delivered", len(out.delivered), "left_in_flight", len(out.unsent)+len(out.failed))
	}
	res.delivered = len(out.delivered)
	switch {
	case out.sinkFailed():
		res.sinkErr = out.failed[0].err
		for _, f := range out.failed {
			if d, ok := RetryAfterOf(f.err); ok {
				res.retryIn = max(res.retryIn, d)
			}
		}
		if st.sinkFailed {
			// The sink failed the round before too: it is down, and
			// these events count no attempt for it.
			res.sinkDown, res.unsent = res.sinkErr, len(out.failed)
			for _, f := range out.failed {
				out.unsent = append(out.unsent, f.row)
			}
			out.failed = nil
		}
		st.sinkFailed = true
	case len(out.delivered) > 0 || len(out.failed) > 0:
		st.sinkFailed, st.probes = false, 0
	}
	var stats BatchStats
	var err error
	if len(rows) >= r.cfg.BatchSize && len(out.delivered) == len(rows) {
		// A full batch, all delivered: a backlog is draining. Read the
		// next batch while this one is recorded, on a second connection.
		stats, err = r.recordAndPrefetch(ctx, recCtx, st, out, parts, now)
	} else {
		stats, err = r.record(recCtx, st, out)
	}
	if err != nil {
		res.dbErr = err
		return res
	}
	stats.Read, stats.Elapsed = len(rows), time.Since(now)
	if r.cfg.Hooks.BatchFunc != nil {
		stats.Events = r.eventStats(&r.statsBuf, out, true)
		r.cfg.Hooks.BatchFunc(stats)
	}
	return res
}

// recordAfterShutdown bounds the record of a batch whose delivery the
// shutdown timeout cut short.
const recordAfterShutdown = 5 * time.Second

// probe returns the one event of batch to send while the sink is taken to be
// down: the first event of a key, a different key each time, so that an
// event the sink fails for reasons of its own does not stand for the sink
// and hold up the others.
func (st *loopState) probe(batch []*row) []*row {
	var heads []*row
	seen := make(map[string]bool)
	for _, rw := range batch {
		if !seen[rw.key] {
			seen[rw.key] = true
			heads = append(heads, rw)
		}
	}
	p := heads[st.probes%len(heads)]
	st.probes++
	return []*row{p}
}

// recordAndPrefetch records a batch that was delivered whole and, at the
// same time, reads the next one, leaving out the rows being recorded. Only
// such a batch is overlapped: it blocks no key, so record does not touch the
// loop's state, and the read needs nothing from the outcome. The prefetched
// rows are dropped if the record fails (they would overtake the rows it
// leaves pending) or the read does.
func (r *Relay) recordAndPrefetch(ctx, workCtx context.Context, st *loopState, out outcome, parts []int16, now time.Time) (BatchStats, error) {
	exclude := make([]int64, len(out.delivered))
	for i, rw := range out.delivered {
		exclude[i] = rw.seq
	}
	blocked := st.blockedKeys(now)
	var next []row
	var readErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		next, readErr = r.read(ctx, st.spare[:0], parts, blocked, exclude)
	}()
	stats, err := r.record(workCtx, st, out)
	<-done
	if err == nil && readErr == nil {
		st.rows, st.spare, st.prefetched = next, st.rows, true
	}
	return stats, err
}

// keepParts returns the prefetched rows of the partitions still usable:
// rows of a partition given back since belong to its new owner.
func (st *loopState) keepParts(parts []int16) []row {
	var held [partitions]bool
	for _, p := range parts {
		held[p] = true
	}
	st.rows = slices.DeleteFunc(st.rows, func(rw row) bool { return !held[rw.part] })
	return st.rows
}

// syncBlocked forgets the blocked keys of partitions no longer held and
// reloads the keys blocked by dead events: those of newly taken partitions,
// and those unblocked by a replay. A dead event blocks its key when its
// topic's poison policy is PoisonBlock.
func (r *Relay) syncBlocked(ctx context.Context, st *loopState, version uint64, now time.Time) error {
	held := r.leases.held()
	var mask uint64
	for _, p := range held {
		mask |= 1 << uint(p)
	}
	for k, b := range st.blocked {
		if mask&(1<<uint(b.part)) == 0 || b.dead {
			delete(st.blocked, k)
		}
	}
	if r.cfg.mayBlock() && len(held) > 0 {
		rows, err := r.pool.Query(ctx, r.q.deadKeys, held)
		if err != nil {
			return fmt.Errorf("load dead keys: %w", err)
		}
		var part int16
		var key, topic string
		_, err = pgx.ForEachRow(rows, []any{&part, &key, &topic}, func() error {
			if r.cfg.poisonPolicy(topic) == PoisonBlock {
				st.blocked[key] = blockedKey{part: part, dead: true}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("load dead keys: %w", err)
		}
	}
	st.partsVersion, st.deadLoadedAt = version, now
	return nil
}

// blockedKeys returns the keys whose events must not be read now, and
// forgets those whose retry has come due.
func (st *loopState) blockedKeys(now time.Time) []string {
	keys := make([]string, 0, len(st.blocked))
	for k, b := range st.blocked {
		if !b.dead && !b.until.After(now) {
			delete(st.blocked, k)
			continue
		}
		keys = append(keys, k)
	}
	return keys
}

// due returns the rows to attempt now, in order. A row whose retry is not due
// blocks its key: neither it nor the key's later rows are attempted, and the
// key stays out of the reads until the retry is due.
func (st *loopState) due(rows []row, now time.Time) []*row {
	batch := make([]*row, 0, len(rows))
	var waiting map[string]bool
	for i := range rows {
		rw := &rows[i]
		if waiting[rw.key] {
			continue
		}
		if b, ok := st.blocked[rw.key]; ok && (b.dead || b.until.After(now)) {
			// Blocked after the rows were read: by a failure of the
			// batch before a prefetched one, or by a dead key loaded
			// since.
			if waiting == nil {
				waiting = make(map[string]bool)
			}
			waiting[rw.key] = true
			continue
		}
		if rw.waitUS > 0 {
			if waiting == nil {
				waiting = make(map[string]bool)
			}
			waiting[rw.key] = true
			st.block(rw, now.Add(time.Duration(rw.waitUS)*time.Microsecond))
			continue
		}
		batch = append(batch, rw)
	}
	return batch
}

// block keeps rw's key out of the reads until until.
func (st *loopState) block(rw *row, until time.Time) {
	if b, ok := st.blocked[rw.key]; ok && (b.dead || b.until.After(until)) {
		return
	}
	st.blocked[rw.key] = blockedKey{part: rw.part, until: until}
}

// read appends to buf up to BatchSize pending rows of parts, oldest first,
// leaving out the blocked keys and the rows in exclude (a batch still being
// recorded). The loop passes an earlier round's rows as buf: reusing them
// saves a fifth of the relay's allocations.
//
// The query runs as an unnamed statement with a cached description
// (QueryExecModeCacheDescribe), whatever the pool's default mode: Postgres
// plans it with the actual arrays, so the key filter is a hash lookup however
// many keys are blocked, and the results come in the binary format that
// decodeRow reads.
func (r *Relay) read(ctx context.Context, buf []row, parts []int16, blocked []string, exclude []int64) ([]row, error) {
	if blocked == nil {
		blocked = []string{}
	}
	if exclude == nil {
		exclude = []int64{}
	}
	rows, err := r.pool.Query(ctx, r.q.read, pgx.QueryExecModeCacheDescribe, parts, r.cfg.BatchSize, blocked, exclude)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	out := buf
	var in interner
	for rows.Next() {
		out = append(out, row{})
		if err := decodeRow(&out[len(out)-1], rows.RawValues(), &in); err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return out, nil
}

// deliver hands the batch to the sink in one Send and sorts the events by
// its answer.
func (r *Relay) deliver(ctx context.Context, batch []*row) outcome {
	if !r.sinkPause.wait(ctx) {
		return outcome{unsent: batch}
	}
	events := make([]*outbox.Event, len(batch))
	topic := batch[0].ev.Topic
	for i, rw := range batch {
		events[i] = &rw.ev
		if rw.ev.Topic != topic {
			topic = ""
		}
	}
	ctx, span := r.startSend(ctx, topic, batch)
	err := recovered(func() error { return r.sink.Send(ctx, events) })
	endSpan(span, err)
	out := sorted(batch, err, r.cfg)
	for _, f := range out.failed {
		if d, ok := RetryAfterOf(f.err); ok {
			r.sinkPause.extend(time.Now().Add(d))
		}
	}
	return out
}

// sinkPause is when the sink may be sent to again: the latest time a
// RetryAfter asked for, whichever sender received it. Every sender of a
// relay (the table's loop, and ModeMessages' stream) waits for it before
// each Send, so a rate-limited sink gets from the relay the requests it
// asked for, not one round per sender.
type sinkPause struct {
	until atomic.Int64 // unix nanoseconds; 0: not paused
}

// extend pauses the sink until t, unless it already is until later.
func (p *sinkPause) extend(t time.Time) {
	n := t.UnixNano()
	for {
		cur := p.until.Load()
		if cur >= n || p.until.CompareAndSwap(cur, n) {
			return
		}
	}
}

// wait returns once the pause is over, reporting false when ctx ended
// before.
func (p *sinkPause) wait(ctx context.Context) bool {
	for {
		d := time.Until(time.Unix(0, p.until.Load()))
		if d <= 0 {
			return true
		}
		if !sleepCtx(ctx, d) {
			return false
		}
	}
}

// sorted reads err, the sink's answer to a Send of rows, as the rows'
// outcome: nil delivers them all; a *BatchError names by id those that
// failed or were not sent; ErrNotSent sends none; any other error fails
// them all.
func sorted(rows []*row, err error, cfg *Config) outcome {
	var out outcome
	add := func(rw *row, err error) {
		switch {
		case err == nil:
			out.delivered = append(out.delivered, rw)
		case errors.Is(err, ErrNotSent):
			out.unsent = append(out.unsent, rw)
		default:
			out.failed = append(out.failed, failure{row: rw, err: err, wait: cfg.retryDelay(int(rw.attempts)+1, err)})
		}
	}
	var be *BatchError
	if !errors.As(err, &be) {
		for _, rw := range rows {
			add(rw, err)
		}
		return out
	}
	for _, rw := range rows {
		ferr, ok := be.Failed[rw.ev.ID.String()]
		if ok && ferr == nil {
			ferr = err
		}
		add(rw, ferr)
	}
	return out
}

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// recovered calls the sink, turning a panic into an error: a sink bug
// fails the batch, it does not stop the relay.
func recovered(call func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("sink panicked: %v", p)
		}
	}()
	return call()
}

// record writes the outcome in one round trip and one transaction: delivered
// rows are deleted (or marked delivered when Retention is set), failed ones
// get their attempt, error and next attempt time, or are dead-lettered.
//
// The transaction commits with synchronous_commit off, which saves a WAL
// flush per batch (a fifth of the relay's time with a local disk). A
// database crash can lose the last few hundred milliseconds of outcomes;
// their rows are then pending again and delivered once more, which
// at-least-once delivery allows.
func (r *Relay) record(ctx context.Context, st *loopState, out outcome) (BatchStats, error) {
	stats := BatchStats{Delivered: len(out.delivered)}
	if len(out.delivered) == 0 && len(out.failed) == 0 {
		return stats, nil
	}
	now := time.Now()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue("SET LOCAL synchronous_commit TO off")
	if len(out.delivered) > 0 {
		seqs := make([]int64, len(out.delivered))
		for i, rw := range out.delivered {
			seqs[i] = rw.seq
		}
		q := r.q.deleteDelivered
		if r.cfg.Retention > 0 {
			q = r.q.markDelivered
		}
		b.Queue(q, seqs)
	}
	var deadOnes, retried []failure
	if len(out.failed) > 0 {
		n := len(out.failed)
		seqs, waits, errs, perm := make([]int64, n), make([]int64, n), make([]string, n), make([]bool, n)
		bySeq := make(map[int64]failure, n)
		for i, f := range out.failed {
			seqs[i], waits[i], errs[i], perm[i] = f.row.seq, f.wait.Microseconds(), f.err.Error(), IsPermanent(f.err)
			bySeq[f.row.seq] = f
			// Until the outcome is known, the key waits as if it were
			// recorded: a failed record must not turn into a hot retry.
			if f.wait > 0 {
				st.block(f.row, now.Add(f.wait))
			}
		}
		b.Queue(r.q.recordFailed, seqs, waits, errs, perm, r.cfg.ID, r.cfg.MaxAttempts).Query(func(rows pgx.Rows) error {
			var seq int64
			var dead bool
			var attempts int32
			_, err := pgx.ForEachRow(rows, []any{&seq, &dead, &attempts}, func() error {
				f := bySeq[seq]
				f.row.attempts = attempts
				if dead {
					deadOnes = append(deadOnes, f)
				} else {
					retried = append(retried, f)
				}
				return nil
			})
			return err
		})
	}
	b.Queue("COMMIT")
	if err := r.pool.SendBatch(ctx, b).Close(); err != nil {
		return BatchStats{}, fmt.Errorf("record outcome: %w", err)
	}
	stats.Failed, stats.Dead = len(retried), len(deadOnes)
	r.logFailed(ctx, retried)
	for _, f := range deadOnes {
		r.deadLettered(ctx, st, f)
	}
	return stats, nil
}

// logFailed logs the failures to be retried, one line per distinct error:
// the events of one failed request share its error, so a request that
// failed is one line, however many events it carried, naming the first
// event and the count.
func (r *Relay) logFailed(ctx context.Context, failed []failure) {
	if len(failed) == 0 || !r.log.Enabled(ctx, slog.LevelWarn) {
		return
	}
	for i := 0; i < len(failed); {
		f, n := failed[i], 1
		for i+n < len(failed) && sameErr(failed[i+n].err, f.err) {
			n++
		}
		i += n
		r.log.LogAttrs(ctx, slog.LevelWarn, "event delivery failed",
			append(f.logAttrs(), slog.Int("events", n), slog.Duration("retry_in", f.wait))...)
	}
}

// sameErr reports whether a and b are the same failure: one error value,
// or two with the same text.
func sameErr(a, b error) bool {
	return a == b || a.Error() == b.Error()
}

// deadLettered reports an event just dead-lettered and, when its topic's
// policy is PoisonBlock, keeps its key blocked.
func (r *Relay) deadLettered(ctx context.Context, st *loopState, f failure) {
	blocking := r.cfg.poisonPolicy(f.row.ev.Topic) == PoisonBlock
	if blocking {
		st.blocked[f.row.key] = blockedKey{part: f.row.part, dead: true}
	} else {
		delete(st.blocked, f.row.key)
	}
	r.reportDead(ctx, f, blocking)
}

// reportDead logs and reports (Hooks.DeadFunc) an event dead-lettered.
func (r *Relay) reportDead(ctx context.Context, f failure, blocking bool) {
	r.log.LogAttrs(ctx, slog.LevelError, "event dead-lettered", append(f.logAttrs(), slog.Bool("key_blocked", blocking))...)
	if r.cfg.Hooks.DeadFunc != nil {
		r.cfg.Hooks.DeadFunc(DeadEvent{
			ID: f.row.ev.ID, Topic: f.row.ev.Topic, Key: f.row.key,
			Attempts: int(f.row.attempts), Err: f.err, Blocking: blocking,
		})
	}
}

// eventStats lists the batch's events for Hooks.BatchFunc, in *buf, which
// the next batch reuses. With recorded, a failed row is dead once record
// has dead-lettered it: failed permanently, or reached MaxAttempts.
func (r *Relay) eventStats(buf *[]EventStats, out outcome, recorded bool) []EventStats {
	evs := (*buf)[:0]
	for _, rw := range out.delivered {
		evs = append(evs, EventStats{Topic: rw.ev.Topic, PublishedAt: rw.ev.Time, Delivered: true})
	}
	for _, f := range out.failed {
		dead := recorded && (IsPermanent(f.err) || int(f.row.attempts) >= r.cfg.MaxAttempts)
		evs = append(evs, EventStats{Topic: f.row.ev.Topic, PublishedAt: f.row.ev.Time, Dead: dead})
	}
	*buf = evs
	return evs
}
