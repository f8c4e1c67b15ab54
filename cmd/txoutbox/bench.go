package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/txoutbox/txoutbox/cmd/txoutbox/internal/bench"
)

const benchUsage = `
Measure the publish path, the relay and the events API, each beside a
baseline measured in the same run, and print a table of medians with their
spread (min–max) and the ratio to the baseline (--runs N takes each N times;
--duration sets each rate and latency point's window, so a CI run can be
short):

  publish  request-like transactions (business INSERT, Flush of 0, 1, 10
           events, COMMIT) at 1, 4, 16 clients, beside a hand-written INSERT
           of the same rows; and what waking the relay costs the producers
           (in-process Wake vs a NOTIFY per transaction vs a debounced one)
  relay    --events committed events drained by 1 and 4 relays to a no-op sink
           and to a local HTTP sink, beside watermill-sql's subscriber and
           forwarder draining the same events to the same no-op sink
  latency  commit→sink latency while producing 1,000 and 5,000 events/s, and
           the highest rate sustained with a flat backlog
  e2e      16 producers and a relay on this machine: events delivered per second
  modes    the delivery modes side by side (table + polling, table + WAL,
           message only; each relay in the producing process, the polling
           one woken when COMMIT returns, the WAL ones told of each commit
           by their stream): the producers' tx/s at 16 clients beside a
           business INSERT alone, commit→sink p50/p99 at 1,000 and 5,000
           events/s and at the highest rate sustained, and e2e events/s to a
           local HTTP sink, with each mode's ratio to table + polling and its
           goals; needs wal_level=logical and a role with REPLICATION, and
           drops the publication and replication slot it creates
  backlog  the relay draining --events while --backlog rows are pending, beside
           the same drain from a table holding only those rows
  events   the events API (txoutbox serve) on 127.0.0.1, with keys and the
           topic catalog: ingest into its Postgres store over HTTP, CloudEvents
           batches and bc-events bulk posts as the relay sends them, at 1, 4
           and 16 clients, beside appending to the store directly and posting
           to a memory store; enrolment (POST /api/enroll) by 8 workers over
           the events ingested, in claims/s; fan-out to --subscribers SSE and
           gRPC (EventService) streams and to a tenth of them over SSE and
           WebSocket, in deliveries/s, posting as fast as the slowest allows;
           ingest→subscriber latency at 1,000 events/s to a tenth of
           --subscribers over SSE, WebSocket and gRPC; a subscriber resuming
           --catch-up events behind, beside reading them from the store
           directly. Subscribers are lean readers in this process.

Without --database-url it starts a throwaway PostgreSQL with fsync and
synchronous_commit on, and removes it afterwards; with one, each scenario
works in a schema of its own, dropped afterwards. The defaults finish in
about six minutes on 2 cores. Other load on the machine shows in the
numbers: check it is idle first.`

const benchExamples = `  txoutbox bench
  txoutbox bench --scenario publish --runs 5 --duration 3s
  txoutbox bench --scenario modes --duration 200ms
  txoutbox bench --scenario events --subscribers 1000 --catch-up 100000
  txoutbox bench --database-url postgres://postgres@127.0.0.1:5432/bench --json bench.json`

type benchFlags struct {
	databaseURL     string
	scenario        string
	runs            int
	events          int
	watermillEvents int
	backlog         int
	duration        time.Duration
	subscribers     int
	catchUp         int
	json            string
	verbose         bool
}

func (f *benchFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.databaseURL, "database-url", "", "PostgreSQL `URL` to measure; empty starts a throwaway durable server")
	fs.StringVar(&f.scenario, "scenario", "", "run only these scenarios, comma-separated: "+strings.Join(bench.Scenarios, ", "))
	fs.IntVar(&f.runs, "runs", bench.RunsDefault, "times each measurement is taken")
	fs.IntVar(&f.events, "events", bench.EventsDefault, "events each relay drain moves")
	fs.IntVar(&f.watermillEvents, "watermill-events", 0, "events the watermill-sql baseline drains; 0 is the same as --events")
	fs.IntVar(&f.backlog, "backlog", bench.BacklogDefault, "rows pending during the backlog scenario")
	fs.DurationVar(&f.duration, "duration", bench.DurationDefault, "measuring `window` of each rate and latency point")
	fs.IntVar(&f.subscribers, "subscribers", bench.SubscribersDefault, "subscribers of the events scenario's largest fan-out; the others use a tenth")
	fs.IntVar(&f.catchUp, "catch-up", bench.CatchUpDefault, "events behind the newest the events scenario's catch-up subscriber resumes")
	fs.StringVar(&f.json, "json", "", "also write the results as JSON to this `file`")
	fs.BoolVar(&f.verbose, "v", false, "log progress to stderr")
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f benchFlags
	fset := newFlagSet("bench", benchUsage, benchExamples)
	f.register(fset)
	if err := parseFlags(fset, args, stdout); err != nil {
		return err
	}
	cfg, err := f.config(stderr)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := rep.Write(stdout); err != nil {
		return fmt.Errorf("bench: write table: %w", err)
	}
	if f.json == "" {
		return nil
	}
	out, err := os.Create(f.json)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := rep.WriteJSON(out); err != nil {
		_ = out.Close()
		return fmt.Errorf("bench: write %s: %w", f.json, err)
	}
	return out.Close()
}

func (f *benchFlags) config(stderr io.Writer) (*bench.Config, error) {
	if f.runs < 1 {
		return nil, fmt.Errorf("--runs: %d, want at least 1", f.runs)
	}
	level := slog.LevelWarn
	if f.verbose {
		level = slog.LevelInfo
	}
	cfg := &bench.Config{
		DatabaseURL:     f.databaseURL,
		Runs:            f.runs,
		Events:          f.events,
		WatermillEvents: f.watermillEvents,
		Backlog:         f.backlog,
		Duration:        f.duration,
		Subscribers:     f.subscribers,
		CatchUp:         f.catchUp,
		Logger:          slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	}
	for s := range strings.SplitSeq(f.scenario, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.Scenarios = append(cfg.Scenarios, s)
		}
	}
	return cfg, nil
}
