package relay

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// leaseSet is the partitions this relay holds, each with the local time its
// lease ends. The lease goroutine writes it; the loop reads it. Its lock is
// held only for bookkeeping, never across a query or a delivery, so that
// renewing the leases never waits for a batch.
//
// While a batch is read, delivered and recorded, the partitions it reads are
// busy: a partition to give back that is busy is only marked, and the loop
// releases it when the batch is done. That is how a partition changes hands
// between two batches of its owner, never in the middle of one.
type leaseSet struct {
	mu       sync.Mutex
	deadline map[int16]time.Time
	version  uint64 // changes whenever the set of partitions does
	busy     uint64 // bit p: partition p is in the batch in flight
	giveBack uint64 // bit p: release partition p once it is not busy

	// cut stops the delivery of the batch in flight from sending more when
	// the lease of a busy partition gets within margin of its end, or is
	// lost; nil between deliveries. cutTimer fires it and follows the
	// renewals.
	cut      *cutSignal
	cutTimer *time.Timer
	margin   time.Duration
}

// Causes of a delivery cut short (context.Cause of the delivery context).
var (
	errLeaseEnding = errors.New("partition lease about to end: delivery stopped")
	errLeaseLost   = errors.New("partition lease lost: delivery stopped")
)

// set replaces the held partitions: parts all lease until deadline.
func (l *leaseSet) set(parts []int16, deadline time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	changed := len(parts) != len(l.deadline)
	next := make(map[int16]time.Time, len(parts))
	var mask uint64
	for _, p := range parts {
		if _, ok := l.deadline[p]; !ok {
			changed = true
		}
		next[p] = deadline
		mask |= 1 << uint(p)
	}
	l.deadline = next
	l.giveBack &= mask
	if changed {
		l.version++
	}
	if l.cut != nil {
		if l.busy&^mask != 0 {
			l.cut.fire(errLeaseLost)
			return
		}
		l.resetCut(time.Now())
	}
}

// resetCut sets the cut timer to the earliest end of a busy partition's
// lease, less the margin. l.mu is held.
func (l *leaseSet) resetCut(now time.Time) {
	var earliest time.Time
	for p, d := range l.deadline {
		if l.busy&(1<<uint(p)) != 0 && (earliest.IsZero() || d.Before(earliest)) {
			earliest = d
		}
	}
	if earliest.IsZero() {
		return
	}
	l.cutTimer.Reset(max(earliest.Sub(now)-l.margin, 0))
}

// held returns the partitions held, in order.
func (l *leaseSet) held() []int16 {
	l.mu.Lock()
	defer l.mu.Unlock()
	parts := make([]int16, 0, len(l.deadline))
	for p := range l.deadline {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	return parts
}

// mask returns the partitions held as a bit set: bit p for partition p.
func (l *leaseSet) mask() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var m uint64
	for p := range l.deadline {
		m |= 1 << uint(p)
	}
	return m
}

// begin returns the version of the set and, in order, the partitions a batch
// may read now, and marks them busy until end: those with at least margin of
// lease left (enough to deliver a batch and record it before another relay
// may take the partition over) and not marked to give back.
func (l *leaseSet) begin(now time.Time, margin time.Duration) (version uint64, parts []int16) {
	l.mu.Lock()
	defer l.mu.Unlock()
	parts = make([]int16, 0, len(l.deadline))
	l.busy = 0
	for p, d := range l.deadline {
		if d.Sub(now) >= margin && l.giveBack&(1<<uint(p)) == 0 {
			parts = append(parts, p)
			l.busy |= 1 << uint(p)
		}
	}
	l.margin = margin
	slices.Sort(parts)
	return l.version, parts
}

// deliverContext returns the context a batch is delivered under: parent,
// carrying a signal that tells the sink to send nothing more once the lease
// of a busy partition comes within the margin given to begin of its end
// (renewals push that back) or is lost (see SendCut). stop must be called
// when the delivery is over.
func (l *leaseSet) deliverContext(parent context.Context) (ctx context.Context, stop func()) {
	sig := &cutSignal{}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = sig
	l.cutTimer = time.AfterFunc(time.Hour, func() { sig.fire(errLeaseEnding) })
	l.resetCut(time.Now())
	return context.WithValue(parent, cutKey{}, sig), func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.cutTimer.Stop()
		l.cut, l.cutTimer = nil, nil
	}
}

// cutSignal tells a delivery to send nothing more (see SendCut).
type cutSignal struct {
	mu    sync.Mutex
	cause error
}

func (c *cutSignal) fire(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cause == nil {
		c.cause = cause
	}
}

type cutKey struct{}

// SendCut returns why the relay wants the Send under ctx to send nothing
// more, or nil: the batch's partition leases are about to end or were lost,
// or ctx is done. A sink that sends a batch in parts checks it before each
// and reports the events it then leaves with [ErrNotSent]
// (Outcome.NotSent). Unlike a cancelled context it leaves the part in
// flight alone: that was sent while the lease held, and cancelling it
// would only leave its events in doubt.
func SendCut(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	if c, ok := ctx.Value(cutKey{}).(*cutSignal); ok {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.cause
	}
	return nil
}

// end marks the batch done. It reports whether partitions were marked to
// give back while the batch ran: the lease goroutine releases them at its
// next round, which the loop then asks for at once.
func (l *leaseSet) end() (giveBack bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.busy = 0
	return l.giveBack != 0
}

// giveBackParts marks parts to give back and returns those not busy,
// forgotten now, for the caller to release; the others wait for the batch in
// flight to end. Only the lease goroutine calls it, so that no renewal
// brings a released partition back into the set.
func (l *leaseSet) giveBackParts(parts []int16) (release []int16) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range parts {
		if _, ok := l.deadline[p]; ok {
			l.giveBack |= 1 << uint(p)
		}
	}
	return l.takeGiveBack()
}

// takeGiveBack removes the partitions to give back that are not busy from
// the set and returns them. l.mu is held.
func (l *leaseSet) takeGiveBack() []int16 {
	free := l.giveBack &^ l.busy
	if free == 0 {
		return nil
	}
	var parts []int16
	for p := range int16(partitions) {
		if free&(1<<uint(p)) != 0 {
			parts = append(parts, p)
			delete(l.deadline, p)
		}
	}
	l.giveBack &^= free
	l.version++
	return parts
}

// marked returns the partitions marked to give back.
func (l *leaseSet) marked() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.giveBack
}

// leaseQuick is the lease loop's first wait after the number of live relays
// or the partitions this relay holds changed: relays starting together, or one
// joining or leaving, settle on their fair shares within a few quick rounds
// instead of a LeaseTTL/3 apart. The wait doubles from there back to
// LeaseTTL/3 while nothing changes, so a steady fleet renews no more often
// than that.
const leaseQuick = 50 * time.Millisecond

// leaseRound is what one lease round saw and did.
type leaseRound struct {
	live     int // live relays, this one included
	acquired int
	released int
	short    bool // holds fewer than its share: waiting for partitions to come free
}

// leaseShortMax is the longest wait between lease rounds while the relay
// holds fewer partitions than its share. The partitions it waits for come
// free when their owner finishes its batch in flight; polling for them this
// often costs one small query and gets the joiner its share within this
// long of their release.
const leaseShortMax = 500 * time.Millisecond

// leaseLoop renews, takes and gives back partitions until ctx is cancelled:
// every LeaseTTL/3 in a steady fleet, sooner after a change. first is the
// round Run did before starting it.
func (r *Relay) leaseLoop(ctx context.Context, first leaseRound) {
	steady := r.cfg.LeaseTTL / 3
	quick := min(leaseQuick, steady)
	wait, last := quick, first
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.leaseKick:
			t.Stop()
		case <-t.C:
		}
		start := time.Now()
		round, err := r.tickLeases(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("lease partitions", "err", err)
			}
			round.live = last.live
		}
		if round.acquired > 0 {
			r.Wake() // the loop may be idling, unaware of the new partitions' rows
		}
		wait = nextLeaseWait(wait, quick, steady, last, round)
		last = round
		t.Reset(max(wait-time.Since(start), 0))
	}
}

// nextLeaseWait returns the wait before the lease round after round: quick
// when the live relays or the held partitions just changed, since the other
// relays are then moving too, else twice the last wait, up to steady, or up
// to leaseShortMax while the relay holds less than its share.
func nextLeaseWait(wait, quick, steady time.Duration, last, round leaseRound) time.Duration {
	if round.live != last.live || round.acquired > 0 || round.released > 0 {
		return quick
	}
	if round.short {
		return min(2*wait, max(min(leaseShortMax, steady), quick))
	}
	return min(2*wait, steady)
}

// every calls fn every interval until ctx is cancelled.
func every(ctx context.Context, interval time.Duration, fn func()) {
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			start := time.Now()
			fn()
			t.Reset(max(interval-time.Since(start), 0))
		}
	}
}

// tickLeases heartbeats, renews the partitions this relay owns, and moves it
// towards its fair share, ceil(partitions / live relays): it takes free or
// expired partitions while under it and gives back the ones over it.
func (r *Relay) tickLeases(ctx context.Context) (leaseRound, error) {
	ttl := r.cfg.LeaseTTL.Microseconds()
	start := time.Now()

	b := &pgx.Batch{}
	b.Queue(r.q.heartbeat, r.cfg.ID, r.host, os.Getpid())
	b.Queue(r.q.renew, r.cfg.ID, ttl)
	b.Queue(r.q.liveRelays, ttl)
	b.Queue(r.q.pruneRelays, ttl)
	br := r.pool.SendBatch(ctx, b)
	_, err := br.Exec()
	var owned []int16
	if err == nil {
		owned, err = collectParts(br)
	}
	var live int
	if err == nil {
		err = br.QueryRow().Scan(&live)
	}
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return leaseRound{}, fmt.Errorf("renew leases: %w", err)
	}
	r.warnLost(owned)
	round := leaseRound{live: live}

	share := (partitions + max(live, 1) - 1) / max(live, 1)
	if n := share - len(owned); n > 0 {
		rows, err := r.pool.Query(ctx, r.q.acquire, r.cfg.ID, ttl, n)
		if err != nil {
			r.leases.set(owned, start.Add(r.cfg.LeaseTTL))
			return round, fmt.Errorf("acquire partitions: %w", err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[int16])
		owned = append(owned, got...)
		r.leases.set(owned, start.Add(r.cfg.LeaseTTL))
		round.acquired = len(got)
		round.short = len(owned) < share
		if err != nil {
			return round, fmt.Errorf("acquire partitions: %w", err)
		}
		if len(got) > 0 {
			r.log.Debug("acquired partitions", "parts", got, "share", share, "relays", live)
		}
		return round, nil
	}
	r.leases.set(owned, start.Add(r.cfg.LeaseTTL))
	if extra := len(owned) - share; extra > 0 {
		rel := r.leases.giveBackParts(extraParts(owned, extra, r.leases.marked()))
		round.released = len(rel)
		return round, r.release(ctx, rel)
	}
	return round, nil
}

// extraParts picks the n partitions of owned to give back: those already
// marked (bit p of marked) first, since their owner is done with them once
// its batch is, then the highest.
func extraParts(owned []int16, n int, marked uint64) []int16 {
	owned = slices.Clone(owned)
	slices.SortFunc(owned, func(a, b int16) int {
		ma, mb := marked&(1<<uint(a)) != 0, marked&(1<<uint(b)) != 0
		if ma != mb {
			if ma {
				return -1
			}
			return 1
		}
		return int(b) - int(a)
	})
	return owned[:n]
}

// warnLost logs the partitions another relay took over from this one: this
// relay failed to renew them in time, so events it had in flight may be
// delivered twice.
func (r *Relay) warnLost(owned []int16) {
	var lost []int16
	for _, p := range r.leases.held() {
		if !slices.Contains(owned, p) {
			lost = append(lost, p)
		}
	}
	if len(lost) > 0 {
		r.log.Warn("lost partition leases", "parts", lost)
	}
}

// release gives back parts, which no batch is reading: the lease set
// handed them out only once they were not busy.
func (r *Relay) release(ctx context.Context, parts []int16) error {
	if len(parts) == 0 {
		return nil
	}
	if _, err := r.pool.Exec(ctx, r.q.release, r.cfg.ID, parts); err != nil {
		return fmt.Errorf("release partitions: %w", err)
	}
	r.log.Debug("released partitions", "parts", parts)
	return nil
}

// releaseAll gives back every partition and removes the relay's heartbeat,
// so that the other relays count one relay fewer and take the partitions
// over at their next lease round.
func (r *Relay) releaseAll(ctx context.Context) error {
	b := &pgx.Batch{}
	b.Queue(r.q.releaseAll, r.cfg.ID)
	b.Queue(r.q.deregister, r.cfg.ID)
	if err := r.pool.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	r.leases.set(nil, time.Time{})
	return nil
}

func collectParts(br pgx.BatchResults) ([]int16, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int16])
}
