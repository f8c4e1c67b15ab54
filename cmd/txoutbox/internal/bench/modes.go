package bench

import (
	"context"
	"fmt"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// deliveryModes are the modes the modes scenario compares, table + polling
// first: the others are divided by it.
var deliveryModes = []struct {
	key, name string
	mode      relay.Mode
	storage   outbox.Storage
	// txGoal is the producers' goal, as a ratio to table + polling.
	txGoal goal
	// p99ms is the commit→sink p99 goal at the lowest fixed rate.
	p99ms float64
}{
	{"poll", "table + polling", relay.ModePoll, outbox.StorageTable, goal{}, 10},
	{"wal", "table + WAL", relay.ModeWAL, outbox.StorageTable, ratioAtLeast(1.0, "≥ 1.0× table + polling"), 5},
	{"messages", "message only", relay.ModeMessages, outbox.StorageMessages, ratioAtLeast(1.15, "≥ 1.15× table + polling"), 5},
}

// modesClients is how many producers run back to back in the modes
// scenario's throughput points.
const modesClients = 16

// Goals of the modes scenario besides each mode's own.
const (
	modesSustainedP99ms = 20 // commit→sink p99 at the highest rate sustained
)

// Keys of the modes scenario's metrics.
func modesKey(measure, mode string) string { return "modes/" + measure + "/" + mode }

// runModes compares the delivery modes, each with one relay in the
// producing process, woken when a producer's COMMIT returns in table +
// polling and by its stream in the WAL modes: the producers'
// throughput beside a business INSERT alone, commit→sink latency at fixed
// rates and at the highest rate sustained, and events delivered per second
// to a local HTTP sink.
func runModes(ctx context.Context, e *env, rec *recorder) error {
	base, err := e.newSchema(ctx, "modes_none")
	if err != nil {
		return err
	}
	defer base.drop()
	pool, err := base.pool(ctx, modesClients+4)
	if err != nil {
		return err
	}
	defer pool.Close()

	defineModes(rec)
	rec.note("modes: each mode runs one relay in the producing process, woken when a producer's COMMIT returns in table + polling, told of each commit by its stream in the WAL modes; "+
		"tx/s is %d connections running BEGIN, a business INSERT, Flush of one event, COMMIT back to back while the relay delivers to a no-op sink; "+
		"no outbox is the same transactions without the Flush and without a relay; "+
		"latency is %d connections producing one event per transaction at a fixed rate, from the return of COMMIT to the sink's Send, "+
		"and the highest rate sustained is searched as in the latency scenario; e2e is %d producers and the relay posting to a local HTTP sink; "+
		"every mode measures in a schema of its own, made for the run (message only with its replication slot), and the modes take turns first from run to run",
		modesClients, pacedWorkers, modesClients)

	for run := range e.cfg.Runs {
		e.log.Info("modes", "run", run+1, "mode", "no outbox")
		if err := truncate(ctx, base); err != nil {
			return err
		}
		p := newProducer(pool, nil, viaHandwritten, 0, wakeNone)
		rate, err := closedLoop(ctx, modesClients, warmup(e.cfg), e.cfg.Duration, p.tx)
		if err != nil {
			return fmt.Errorf("no outbox: %w", err)
		}
		rec.add(modesKey("tx", "none"), rate)
		for i := range deliveryModes {
			m := deliveryModes[(i+run)%len(deliveryModes)]
			e.log.Info("modes", "run", run+1, "mode", m.name)
			if err := measureMode(ctx, e, rec, run, m.key, m.mode, m.storage); err != nil {
				return fmt.Errorf("%s: %w", m.name, err)
			}
		}
	}
	return nil
}

// defineModes declares the scenario's metrics, grouped by measurement so
// that the modes stand side by side.
func defineModes(rec *recorder) {
	const poll = "poll"
	// others are the baselines of a mode's metric: table + polling's,
	// for all but table + polling itself.
	others := func(measure, mode string) []string {
		if mode == poll {
			return nil
		}
		return []string{modesKey(measure, poll)}
	}
	rec.define(modesKey("tx", "none"), fmt.Sprintf("tx/s, %d clients: no outbox (business INSERT only)", modesClients), "no outbox", "tx/s", goal{})
	for _, m := range deliveryModes {
		g, bases := m.txGoal, append(others("tx", m.key), modesKey("tx", "none"))
		rec.define(modesKey("tx", m.key), fmt.Sprintf("tx/s, %d clients: %s", modesClients, m.name), m.name, "tx/s", g, bases...)
	}
	for _, lr := range latencyRates {
		p50, p99, produced := fmt.Sprintf("lat/%g/p50", lr.rate), fmt.Sprintf("lat/%g/p99", lr.rate), fmt.Sprintf("lat/%g/produced", lr.rate)
		for _, m := range deliveryModes {
			rec.define(modesKey(p50, m.key), fmt.Sprintf("commit→sink p50 at %s events/s: %s", formatValue(lr.rate), m.name), m.name, "ms",
				goal{}, others(p50, m.key)...)
		}
		for _, m := range deliveryModes {
			limit := lr.p99ms
			if lr == latencyRates[0] {
				limit = m.p99ms
			}
			rec.define(modesKey(p99, m.key), fmt.Sprintf("commit→sink p99 at %s events/s: %s", formatValue(lr.rate), m.name), m.name, "ms",
				atMost(limit, fmt.Sprintf("≤ %g ms", limit)), others(p99, m.key)...)
			if lr != latencyRates[0] {
				rec.define(modesKey(produced, m.key), "  committed by the producers", m.name, "events/s", goal{})
			}
		}
	}
	for _, m := range deliveryModes {
		rec.define(modesKey("sustained", m.key), "highest rate sustained with a flat backlog: "+m.name, m.name, "events/s",
			goal{}, others("sustained", m.key)...)
		rec.define(modesKey("sustained/p99", m.key), "  commit→sink p99 at that rate", m.name, "ms",
			atMost(modesSustainedP99ms, fmt.Sprintf("≤ %d ms", modesSustainedP99ms)), others("sustained/p99", m.key)...)
	}
	for _, m := range deliveryModes {
		rec.define(modesKey("e2e", m.key), fmt.Sprintf("e2e, %d producers + relay → local HTTP sink, delivered: %s", modesClients, m.name), m.name, "events/s",
			goal{}, others("e2e", m.key)...)
	}
}

// measureMode takes one run's measurements of a mode: its latency, then its
// producers' throughput, with a no-op sink, then the events delivered to a
// local HTTP sink, each pipeline in a schema of its own.
func measureMode(ctx context.Context, e *env, rec *recorder, run int, key string, mode relay.Mode, storage outbox.Storage) error {
	pc := pipelineConfig{purpose: "modes_" + key, workers: pacedWorkers, mode: mode, storage: storage, wake: wakeOnCommit}
	if mode != relay.ModePoll {
		// The stream tells the relay of each commit, as it would a relay
		// in another process; a wake from the producers as well would
		// only poll the table a second time (with message storage, a
		// table that holds nothing but undelivered events).
		pc.wake = wakeByStream
	}
	pl, err := startPipeline(ctx, e, pc)
	if err != nil {
		return err
	}
	defer pl.close()
	// The paced points first, on a fresh table, each after a checkpoint:
	// neither the flat-out run's dead rows nor its dirty pages are written
	// out during them.
	for _, lr := range latencyRates {
		if err := e.checkpoint(ctx); err != nil {
			return err
		}
		res, err := pl.pace(ctx, e, lr.rate, e.cfg.Duration)
		if err != nil {
			return fmt.Errorf("latency at %g/s: %w", lr.rate, err)
		}
		rec.add(modesKey(fmt.Sprintf("lat/%g/p50", lr.rate), key), res.p50)
		rec.add(modesKey(fmt.Sprintf("lat/%g/p99", lr.rate), key), res.p99)
		if lr != latencyRates[0] {
			rec.add(modesKey(fmt.Sprintf("lat/%g/produced", lr.rate), key), res.achieved)
		}
		if !res.sustained() {
			rec.note("modes run %d, %s: %g/s not sustained: %s, %d events behind at the end", run+1, key, lr.rate, producedWith(res), res.backlog)
		}
	}
	best, limit, err := ramp(ctx, e, pl)
	if err != nil {
		return err
	}
	recordSustained(rec, fmt.Sprintf("modes run %d, %s", run+1, key), modesKey("sustained", key), modesKey("sustained/p99", key), best, limit)
	if err := e.checkpoint(ctx); err != nil {
		return err
	}
	res, err := pl.flatOut(ctx, e, modesClients)
	if err != nil {
		return fmt.Errorf("tx/s: %w", err)
	}
	rec.add(modesKey("tx", key), res.produced)
	pl.close()

	pc.purpose, pc.workers, pc.http = "modes_e2e_"+key, modesClients, true
	h, err := startPipeline(ctx, e, pc)
	if err != nil {
		return err
	}
	defer h.close()
	res, err = h.flatOut(ctx, e, modesClients)
	if err != nil {
		return fmt.Errorf("e2e: %w", err)
	}
	rec.add(modesKey("e2e", key), res.delivered)
	return nil
}
