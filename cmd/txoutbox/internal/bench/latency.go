package bench

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
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

// pipeline is producers and an embedded relay on one outbox, woken
// in-process as an application embedding it does.
type pipeline struct {
	s      *schema
	pool   *pgxpool.Pool
	client *outbox.Client
	lat    *latencies
	sink   *counter
	relays *relays
	stops  []func()
}

// pipelineConfig says what a pipeline runs.
type pipelineConfig struct {
	purpose string
	workers int  // producing connections
	http    bool // a local HTTP sink, else a no-op sink
	mode    relay.Mode
	storage outbox.Storage
	wake    pipelineWake
}

// pipelineWake is what wakes a pipeline's relay.
type pipelineWake int

const (
	wakeOnCommit pipelineWake = iota // the client's OnCommit hook, run when a producer's COMMIT returns
	wakeByStream                     // nothing: the WAL modes' stream tells the relay of each commit
)

// startPipeline starts a relay in pc.mode delivering to a no-op sink or to
// a local HTTP sink, in a schema of its own.
func startPipeline(ctx context.Context, e *env, pc pipelineConfig) (pl *pipeline, err error) {
	pl = &pipeline{lat: newLatencies()}
	defer func() {
		if err != nil {
			pl.close()
		}
	}()
	if pl.s, err = e.newSchema(ctx, pc.purpose); err != nil {
		return nil, err
	}
	pl.stops = append(pl.stops, pl.s.drop)
	if pc.storage == outbox.StorageMessages {
		if err := pl.s.createMessageSlot(ctx); err != nil {
			return nil, err
		}
	}
	if pl.pool, err = pl.s.pool(ctx, pc.workers+4); err != nil {
		return nil, err
	}
	pl.stops = append(pl.stops, pl.pool.Close)
	if pl.client, err = outbox.New(pl.pool, e.reg, &outbox.Config{Source: "billing-api", Schema: pl.s.name, Storage: pc.storage}); err != nil {
		return nil, err
	}
	rpool, err := pl.s.pool(ctx, 4)
	if err != nil {
		return nil, err
	}
	pl.stops = append(pl.stops, rpool.Close)
	pl.sink = newCounter(0, pl.lat)
	var sink relay.Sink = noopSink{pl.sink}
	if pc.http {
		h, err := startHTTPSink(pl.sink)
		if err != nil {
			return nil, err
		}
		pl.stops = append(pl.stops, h.close)
		sink = h
	}
	if pl.relays, err = startRelays(ctx, e, pl.s, rpool, sink, 1, cmp.Or(pc.mode, relay.ModePoll)); err != nil {
		return nil, err
	}
	pl.stops = append(pl.stops, func() {
		if err := pl.relays.stop(); err != nil {
			e.log.Warn("relay", "err", err)
		}
	})
	if pc.mode != "" && pc.mode != relay.ModePoll {
		if err := pl.relays.streaming(ctx); err != nil {
			return nil, err
		}
	}
	if pc.wake == wakeOnCommit {
		pl.stops = append(pl.stops, pl.client.OnCommit(pl.relays.wake))
	}
	return pl, nil
}

// producer returns a producer of events events per transaction whose
// commits the pipeline's latencies record; its Session.Committed runs the
// client's OnCommit hooks after each COMMIT.
func (pl *pipeline) producer(events int) *producer {
	p := newProducer(pl.pool, pl.client, viaFlush, events, wakeNone)
	p.committed = pl.lat.commit
	return p
}

// close stops what startPipeline started, in reverse order; a second call
// does nothing.
func (pl *pipeline) close() {
	for i := len(pl.stops) - 1; i >= 0; i-- {
		pl.stops[i]()
	}
	pl.stops = nil
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
	l := startLoad(ctx, pacedWorkers, rate, pl.producer(1).tx)
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
	pl, err := startPipeline(ctx, e, pipelineConfig{purpose: "latency", workers: pacedWorkers})
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
	rec.note("latency: %d connections produce one event per transaction at a fixed rate while one relay in the same process, woken after each COMMIT (client.OnCommit), "+
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
		recordSustained(rec, fmt.Sprintf("latency run %d", run+1), "lat/sustained", "lat/sustained/p99", best, limit)
	}
	return nil
}

// recordSustained records what a ramp found under rateKey and p99Key, and
// notes what limited it.
func recordSustained(rec *recorder, label, rateKey, p99Key string, best, limit paceResult) {
	rec.add(rateKey, best.offered)
	if best.offered == 0 {
		rec.note("%s: no rate sustained; at %.0f/s %s", label, limit.offered, limitedBy(limit))
		return
	}
	rec.add(p99Key, best.p99)
	rec.note("%s: %.0f/s sustained (p99 %.1f ms); at %.0f/s %s", label, best.offered, best.p99, limit.offered, limitedBy(limit))
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
	pl, err := startPipeline(ctx, e, pipelineConfig{purpose: "e2e", workers: producers, http: true})
	if err != nil {
		return err
	}
	defer pl.close()
	rec.define("e2e/delivered", fmt.Sprintf("%d producers + relay → local HTTP sink, delivered", producers), "", "events/s",
		atLeast(10_000, "≥ 10,000/s"))
	rec.define("e2e/produced", "  committed by the producers", "", "events/s", goal{})
	rec.define("e2e/growth", "  backlog growth over the window", "", "events/s", goal{})
	rec.note("e2e: %d connections run request-like transactions (business INSERT, Flush of one event, COMMIT) back to back; "+
		"one relay in the same process, woken after each COMMIT (client.OnCommit), posts CloudEvents batches to a server on 127.0.0.1 in the same process", producers)

	for run := range e.cfg.Runs {
		e.log.Info("e2e", "run", run+1)
		res, err := pl.flatOut(ctx, e, producers)
		if err != nil {
			return err
		}
		rec.add("e2e/delivered", res.delivered)
		rec.add("e2e/produced", res.produced)
		rec.add("e2e/growth", res.growth)
	}
	return nil
}

// flatOutResult is one closed-loop measurement of a pipeline, in events
// per second over the window.
type flatOutResult struct {
	delivered, produced, growth float64
}

// flatOut runs producers of one event per transaction back to back for a
// warm-up and a window, then waits until everything committed arrived.
func (pl *pipeline) flatOut(ctx context.Context, e *env, producers int) (flatOutResult, error) {
	pl.lat.reset()
	l := startLoad(ctx, producers, 0, pl.producer(1).tx)
	if !sleep(ctx, warmup(e.cfg)) {
		_ = l.stop()
		return flatOutResult{}, ctx.Err()
	}
	t0, d0, p0, b0 := time.Now(), pl.sink.n.Load(), l.done.Load(), pl.lat.pending()
	ok := sleep(ctx, e.cfg.Duration)
	t1, d1, p1, b1 := time.Now(), pl.sink.n.Load(), l.done.Load(), pl.lat.pending()
	if err := l.stop(); err != nil {
		return flatOutResult{}, err
	}
	if !ok {
		return flatOutResult{}, ctx.Err()
	}
	secs := t1.Sub(t0).Seconds()
	res := flatOutResult{
		delivered: float64(d1-d0) / secs,
		produced:  float64(p1-p0) / secs,
		growth:    float64(b1-b0) / secs,
	}
	return res, drained(ctx, pl.lat)
}
