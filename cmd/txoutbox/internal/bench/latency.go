package bench

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
)

// latencyRates are the fixed producing rates of the latency scenario, with
// the p99 each must stay under.
var latencyRates = []struct {
	rate  float64
	p99ms float64
}{{1000, 10}, {5000, 20}}

// Ramp of the sustained-rate search: from rampStart, rampFactor times more
// each step, for at most rampSteps steps.
const (
	rampStart  = 1000
	rampFactor = 1.5
	rampSteps  = 12
)

// pacedWorkers is how many connections produce at a fixed rate: enough that
// commit latency never caps the rate asked for.
const pacedWorkers = 32

// pipeline is producers and an embedded relay on one outbox: the relay is
// woken in-process by every Flush, as an application embedding it does.
type pipeline struct {
	s      *schema
	pool   *pgxpool.Pool
	client *outbox.Client
	lat    *latencies
	sink   *counter
	relays *relays
	stops  []func()
}

// startPipeline starts a relay delivering to a no-op sink (http false) or
// to a local HTTP sink.
func startPipeline(ctx context.Context, e *env, purpose string, workers int, http bool) (pl *pipeline, err error) {
	pl = &pipeline{lat: newLatencies()}
	defer func() {
		if err != nil {
			pl.close()
		}
	}()
	if pl.s, err = e.newSchema(ctx, purpose); err != nil {
		return nil, err
	}
	pl.stops = append(pl.stops, pl.s.drop)
	if pl.pool, err = pl.s.pool(ctx, workers+4); err != nil {
		return nil, err
	}
	pl.stops = append(pl.stops, pl.pool.Close)
	if pl.client, err = outbox.New(pl.pool, e.reg, &outbox.Config{Source: "billing-api", Schema: pl.s.name}); err != nil {
		return nil, err
	}
	rpool, err := pl.s.pool(ctx, 4)
	if err != nil {
		return nil, err
	}
	pl.stops = append(pl.stops, rpool.Close)
	pl.sink = newCounter(0, pl.lat)
	if http {
		h, err := startHTTPSink(pl.sink)
		if err != nil {
			return nil, err
		}
		pl.stops = append(pl.stops, h.close)
		pl.relays, err = startRelays(ctx, e, pl.s, rpool, h, 1)
		if err != nil {
			return nil, err
		}
	} else {
		pl.relays, err = startRelays(ctx, e, pl.s, rpool, noopSink{pl.sink}, 1)
		if err != nil {
			return nil, err
		}
	}
	pl.stops = append(pl.stops, func() {
		if err := pl.relays.stop(); err != nil {
			e.log.Warn("relay", "err", err)
		}
	})
	pl.stops = append(pl.stops, pl.client.OnFlush(pl.relays.wake))
	return pl, nil
}

// close stops what startPipeline started, in reverse order.
func (pl *pipeline) close() {
	for i := len(pl.stops) - 1; i >= 0; i-- {
		pl.stops[i]()
	}
}

// paceResult is one fixed-rate measurement.
type paceResult struct {
	offered, achieved float64
	p50, p99, max     float64 // milliseconds
	backlog           int     // committed events not yet at the sink when the window closed
	missing           int     // events of the window that never arrived
	cpu               float64 // share of the machine's CPU time busy in the window; -1 when unknown
}

// pace produces one event per transaction at rate for a warm-up and a
// window, waits until everything arrived, and returns what the window saw.
func (pl *pipeline) pace(ctx context.Context, e *env, rate float64, window time.Duration) (paceResult, error) {
	pl.lat.reset()
	p := newProducer(pl.pool, pl.client, viaFlush, 1, wakeNone)
	p.committed = pl.lat.commit
	l := startLoad(ctx, pacedWorkers, rate, p.tx)
	if !sleep(ctx, warmup(e.cfg)) {
		_ = l.stop()
		return paceResult{}, ctx.Err()
	}
	from, n0, cpu0 := time.Now(), l.done.Load(), readCPUTimes()
	ok := sleep(ctx, window)
	to, n1, cpu1 := time.Now(), l.done.Load(), readCPUTimes()
	backlog := pl.lat.pending()
	if err := l.stop(); err != nil {
		return paceResult{}, err
	}
	if !ok {
		return paceResult{}, ctx.Err()
	}
	if err := drained(ctx, pl.lat); err != nil {
		return paceResult{}, err
	}
	lat, missing := pl.lat.window(from, to)
	res := paceResult{
		offered:  rate,
		achieved: float64(n1-n0) / to.Sub(from).Seconds(),
		p50:      percentile(lat, 0.50),
		p99:      percentile(lat, 0.99),
		max:      percentile(lat, 1),
		backlog:  backlog,
		missing:  missing,
		cpu:      cpu1.busySince(cpu0),
	}
	return res, nil
}

// sustained reports whether the pipeline kept up with the rate asked for:
// the producers reached it and the sink was less than a tenth of a second
// behind when the window closed.
func (r paceResult) sustained() bool {
	return r.achieved >= 0.95*r.offered && float64(r.backlog) <= max(100, 0.1*r.offered)
}

// runLatency produces at fixed rates and measures commit→sink latency, then
// searches for the highest rate sustained with a flat backlog.
func runLatency(ctx context.Context, e *env, rec *recorder) error {
	pl, err := startPipeline(ctx, e, "latency", pacedWorkers, false)
	if err != nil {
		return err
	}
	defer pl.close()

	// The producers' rate and the machine's load tell whether a point
	// measured the relay at the rate asked for or a machine short of CPU.
	cpuKnown := readCPUTimes().ok
	for _, lr := range latencyRates {
		k := fmt.Sprintf("lat/%g", lr.rate)
		rec.define(k+"/p50", fmt.Sprintf("commit→sink p50 at %g events/s", lr.rate), "", "ms", goal{})
		rec.define(k+"/p99", fmt.Sprintf("commit→sink p99 at %g events/s", lr.rate), "", "ms", atMost(lr.p99ms, fmt.Sprintf("≤ %g ms", lr.p99ms)))
		rec.define(k+"/max", fmt.Sprintf("commit→sink max at %g events/s", lr.rate), "", "ms", goal{})
		rec.define(k+"/produced", "  committed by the producers", "", "events/s", goal{})
		if cpuKnown {
			rec.define(k+"/cpu", "  machine's CPUs busy", "", "%", goal{})
		}
	}
	rec.define("lat/sustained", "highest rate sustained with a flat backlog", "", "events/s", goal{})
	rec.define("lat/sustained/p99", "  commit→sink p99 at that rate", "", "ms", goal{})
	rec.note("latency: %d connections produce one event per transaction at a fixed rate while one relay in the same process, woken by Flush, "+
		"delivers to a no-op sink; latency runs from the return of COMMIT to the sink's Publish; "+
		"a rate is sustained when the producers reach 95%% of it and the sink is at most 0.1 s behind at the end of the window; "+
		"the CPU row is the whole machine's busy time during the window, other jobs included", pacedWorkers)

	for run := range e.cfg.Runs {
		for _, lr := range latencyRates {
			e.log.Info("latency", "run", run+1, "rate", lr.rate)
			res, err := pl.pace(ctx, e, lr.rate, e.cfg.Duration)
			if err != nil {
				return fmt.Errorf("latency at %g/s: %w", lr.rate, err)
			}
			k := fmt.Sprintf("lat/%g", lr.rate)
			rec.add(k+"/p50", res.p50)
			rec.add(k+"/p99", res.p99)
			rec.add(k+"/max", res.max)
			rec.add(k+"/produced", res.achieved)
			if cpuKnown {
				rec.add(k+"/cpu", 100*max(res.cpu, 0))
			}
			if !res.sustained() {
				rec.note("latency run %d: %g/s not sustained: %s, %d events behind at the end", run+1, lr.rate, producedWith(res), res.backlog)
			}
		}
		best, limit, err := ramp(ctx, e, pl)
		if err != nil {
			return err
		}
		rec.add("lat/sustained", best.offered)
		if best.offered == 0 {
			rec.note("latency run %d: no rate sustained; at %.0f/s %s", run+1, limit.offered, limitedBy(limit))
			continue
		}
		rec.add("lat/sustained/p99", best.p99)
		rec.note("latency run %d: %.0f/s sustained (p99 %.1f ms); at %.0f/s %s", run+1, best.offered, best.p99, limit.offered, limitedBy(limit))
	}
	return nil
}

// ramp raises the rate until the pipeline falls behind and returns the last
// rate it sustained and the first it did not.
func ramp(ctx context.Context, e *env, pl *pipeline) (best, limit paceResult, err error) {
	rate := float64(rampStart)
	for range rampSteps {
		e.log.Info("latency ramp", "rate", math.Round(rate))
		res, err := pl.pace(ctx, e, math.Round(rate), e.cfg.Duration)
		if err != nil {
			return best, limit, fmt.Errorf("ramp at %.0f/s: %w", rate, err)
		}
		if !res.sustained() {
			return best, res, nil
		}
		best = res
		rate *= rampFactor
	}
	return best, paceResult{offered: rate}, nil
}

func limitedBy(r paceResult) string {
	switch {
	case r.achieved == 0 && r.backlog == 0:
		return "the ramp ended"
	case r.achieved < 0.95*r.offered && r.cpu >= cpuSaturated:
		return producedWith(r) + ": the machine is the limit"
	case r.achieved < 0.95*r.offered:
		return producedWith(r) + ": the database's commits are the limit"
	default:
		return fmt.Sprintf("the relay fell %d events behind", r.backlog)
	}
}

// cpuSaturated is the share of busy CPU time above which a rate the
// producers did not reach counts as limited by the machine: the producers,
// the relay and PostgreSQL share its CPUs, with whatever else runs there.
const cpuSaturated = 0.9

// producedWith says what rate the producers reached and, when known, how
// busy the machine's CPUs were meanwhile.
func producedWith(r paceResult) string {
	if r.cpu < 0 {
		return fmt.Sprintf("the producers reached %.0f/s", r.achieved)
	}
	return fmt.Sprintf("the producers reached %.0f/s with the CPUs %.0f%% busy", r.achieved, 100*r.cpu)
}

// runE2E runs 16 producers of one event per transaction, back to back, and a
// relay delivering to a local HTTP sink, all on this machine, and measures
// the events delivered per second.
func runE2E(ctx context.Context, e *env, rec *recorder) error {
	const producers = 16
	pl, err := startPipeline(ctx, e, "e2e", producers, true)
	if err != nil {
		return err
	}
	defer pl.close()
	rec.define("e2e/delivered", fmt.Sprintf("%d producers + relay → local HTTP sink, delivered", producers), "", "events/s",
		atLeast(10_000, "≥ 10,000/s"))
	rec.define("e2e/produced", "  committed by the producers", "", "events/s", goal{})
	rec.define("e2e/growth", "  backlog growth over the window", "", "events/s", goal{})
	rec.note("e2e: %d connections run request-like transactions (business INSERT, Flush of one event, COMMIT) back to back; "+
		"one relay in the same process, woken by Flush, posts CloudEvents batches to a server on 127.0.0.1 in the same process", producers)

	for run := range e.cfg.Runs {
		e.log.Info("e2e", "run", run+1)
		pl.lat.reset()
		p := newProducer(pl.pool, pl.client, viaFlush, 1, wakeNone)
		p.committed = pl.lat.commit
		l := startLoad(ctx, producers, 0, p.tx)
		if !sleep(ctx, warmup(e.cfg)) {
			_ = l.stop()
			return ctx.Err()
		}
		t0, d0, p0, b0 := time.Now(), pl.sink.n.Load(), l.done.Load(), pl.lat.pending()
		ok := sleep(ctx, e.cfg.Duration)
		t1, d1, p1, b1 := time.Now(), pl.sink.n.Load(), l.done.Load(), pl.lat.pending()
		if err := l.stop(); err != nil {
			return err
		}
		if !ok {
			return ctx.Err()
		}
		secs := t1.Sub(t0).Seconds()
		rec.add("e2e/delivered", float64(d1-d0)/secs)
		rec.add("e2e/produced", float64(p1-p0)/secs)
		rec.add("e2e/growth", float64(b1-b0)/secs)
		if err := drained(ctx, pl.lat); err != nil {
			return err
		}
	}
	return nil
}
