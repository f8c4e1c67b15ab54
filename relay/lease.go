package relay

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// leaseSet is the partitions this relay holds, each with the local time its
// lease ends. The lease goroutine writes it; the loop reads it.
type leaseSet struct {
	mu       sync.Mutex
	deadline map[int16]time.Time
	version  uint64 // changes whenever the set of partitions does
}

// set replaces the held partitions: parts all lease until deadline.
func (l *leaseSet) set(parts []int16, deadline time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	changed := len(parts) != len(l.deadline)
	next := make(map[int16]time.Time, len(parts))
	for _, p := range parts {
		if _, ok := l.deadline[p]; !ok {
			changed = true
		}
		next[p] = deadline
	}
	l.deadline = next
	if changed {
		l.version++
	}
}

// drop forgets parts.
func (l *leaseSet) drop(parts []int16) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range parts {
		delete(l.deadline, p)
	}
	l.version++
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

// usable returns the version of the set and, in order, the partitions whose
// lease has at least margin left: enough to deliver a batch and record it
// before another relay may take the partition over.
func (l *leaseSet) usable(now time.Time, margin time.Duration) (version uint64, parts []int16) {
	l.mu.Lock()
	defer l.mu.Unlock()
	parts = make([]int16, 0, len(l.deadline))
	for p, d := range l.deadline {
		if d.Sub(now) >= margin {
			parts = append(parts, p)
		}
	}
	slices.Sort(parts)
	return l.version, parts
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
}

// leaseLoop renews, takes and gives back partitions until ctx is cancelled:
// every LeaseTTL/3 in a steady fleet, sooner after a change. first is the
// round Run did before starting it.
func (r *Relay) leaseLoop(ctx context.Context, first leaseRound) {
	steady := r.cfg.LeaseTTL / 3
	quick := min(leaseQuick, steady)
	wait, last := quick, first
	repeat(ctx, wait, func() time.Duration {
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
		return wait - time.Since(start)
	})
}

// nextLeaseWait returns the wait before the lease round after round: quick
// when the live relays or the held partitions just changed, since the other
// relays are then moving too, else twice the last wait, up to steady.
func nextLeaseWait(wait, quick, steady time.Duration, last, round leaseRound) time.Duration {
	if round.live != last.live || round.acquired > 0 || round.released > 0 {
		return quick
	}
	return min(2*wait, steady)
}

// every calls fn every interval until ctx is cancelled.
func every(ctx context.Context, interval time.Duration, fn func()) {
	repeat(ctx, interval, func() time.Duration {
		start := time.Now()
		fn()
		return interval - time.Since(start)
	})
}

// repeat calls fn after wait, then again after each wait fn returns (at once
// when it is not positive), until ctx is cancelled.
func repeat(ctx context.Context, wait time.Duration, fn func() time.Duration) {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			t.Reset(max(fn(), 0))
		}
	}
}

// tickLeases heartbeats, renews the partitions this relay owns, and moves it
// towards its fair share, ceil(Partitions / live relays): it takes free or
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

	share := (Partitions + max(live, 1) - 1) / max(live, 1)
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
		slices.Sort(owned)
		round.released = extra
		return round, r.release(ctx, owned[len(owned)-extra:], share, live)
	}
	return round, nil
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

// release gives back parts between two batches, so that the relay taking
// them over never reads a row this one has in flight.
func (r *Relay) release(ctx context.Context, parts []int16, share, live int) error {
	r.batchMu.Lock()
	defer r.batchMu.Unlock()
	r.leases.drop(parts)
	if _, err := r.pool.Exec(ctx, r.q.release, r.cfg.ID, parts); err != nil {
		return fmt.Errorf("release partitions: %w", err)
	}
	r.log.Debug("released partitions", "parts", parts, "share", share, "relays", live)
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
