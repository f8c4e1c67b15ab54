package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// Defaults of Config.
const (
	RunsDefault     = 3
	EventsDefault   = 100_000
	BacklogDefault  = 1_000_000
	DurationDefault = time.Second
	// SubscribersDefault is the most subscribers of the events scenario's
	// fan-out.
	SubscribersDefault = 1000
	// CatchUpDefault is how far behind the events scenario's catch-up
	// subscriber resumes.
	CatchUpDefault = 100_000
)

// Scenario names, in the order Run runs them.
const (
	ScenarioPublish = "publish"
	ScenarioRelay   = "relay"
	ScenarioLatency = "latency"
	ScenarioE2E     = "e2e"
	ScenarioModes   = "modes"
	ScenarioBacklog = "backlog"
	ScenarioEvents  = "events"
)

// Scenarios lists every scenario, in the order Run runs them.
var Scenarios = []string{ScenarioPublish, ScenarioRelay, ScenarioLatency, ScenarioE2E, ScenarioModes, ScenarioBacklog, ScenarioEvents}

// Config configures a benchmark run. A nil *Config runs everything with the
// defaults.
type Config struct {
	// DatabaseURL is the PostgreSQL server to measure. Each scenario works in
	// a schema of its own, dropped afterwards. Defaults to a throwaway
	// cluster with PostgreSQL's durability settings on (fsync,
	// synchronous_commit), started for the run and removed after it.
	DatabaseURL string

	// Scenarios to run, by name (see Scenarios). Defaults to all of them.
	Scenarios []string

	// Runs is how many times each measurement is taken; the report gives the
	// median and the spread. Defaults to RunsDefault.
	Runs int

	// Events is how many committed events each relay drain moves (scenarios
	// relay and backlog). Defaults to EventsDefault.
	Events int

	// WatermillEvents is how many events the watermill-sql baseline drains.
	// Defaults to Events, so that both drain the same backlog. A smaller
	// one makes a quicker run but flatters the baseline, whose stock query
	// reads the whole backlog on every poll.
	WatermillEvents int

	// Backlog is how many rows are pending while the backlog scenario
	// measures the relay. Defaults to BacklogDefault.
	Backlog int

	// Duration is the measuring window of each rate measurement (publish,
	// latency, e2e, modes); each is preceded by a warm-up of a quarter of it.
	// Defaults to DurationDefault.
	Duration time.Duration

	// Subscribers is how many subscribers the events scenario fans out to;
	// it also fans out to a tenth of them, and measures latency with that
	// tenth. Defaults to SubscribersDefault.
	Subscribers int

	// CatchUp is how many events behind the newest the events scenario's
	// catch-up subscriber resumes. Defaults to CatchUpDefault.
	CatchUp int

	// Logger receives progress and the warnings of the relays under test.
	// Defaults to discarding them.
	Logger *slog.Logger
}

func (c *Config) withDefaults() *Config {
	out := Config{}
	if c != nil {
		out = *c
	}
	if len(out.Scenarios) == 0 {
		out.Scenarios = Scenarios
	}
	out.Runs = cmp.Or(out.Runs, RunsDefault)
	out.Events = cmp.Or(out.Events, EventsDefault)
	out.WatermillEvents = cmp.Or(out.WatermillEvents, out.Events)
	out.Backlog = cmp.Or(out.Backlog, BacklogDefault)
	out.Duration = cmp.Or(out.Duration, DurationDefault)
	out.Subscribers = cmp.Or(out.Subscribers, SubscribersDefault)
	out.CatchUp = cmp.Or(out.CatchUp, CatchUpDefault)
	out.Logger = cmp.Or(out.Logger, slog.New(slog.DiscardHandler))
	return &out
}

func (c *Config) validate() error {
	for _, s := range c.Scenarios {
		if !slices.Contains(Scenarios, s) {
			return fmt.Errorf("Config.Scenarios: unknown scenario %q (want one of %s)", s, strings.Join(Scenarios, ", "))
		}
	}
	switch {
	case c.Runs < 0:
		return fmt.Errorf("Config.Runs: %d is negative", c.Runs)
	case c.Events < 0:
		return fmt.Errorf("Config.Events: %d is negative", c.Events)
	case c.WatermillEvents < 0:
		return fmt.Errorf("Config.WatermillEvents: %d is negative", c.WatermillEvents)
	case c.Backlog < 0:
		return fmt.Errorf("Config.Backlog: %d is negative", c.Backlog)
	case c.Backlog > 0 && c.Backlog < c.Events:
		return fmt.Errorf("Config.Backlog: %d is less than Config.Events (%d), the rows each run drains from it", c.Backlog, c.Events)
	case c.Duration < 0:
		return fmt.Errorf("Config.Duration: %s is negative", c.Duration)
	case c.Subscribers < 0:
		return fmt.Errorf("Config.Subscribers: %d is negative", c.Subscribers)
	case c.CatchUp < 0:
		return fmt.Errorf("Config.CatchUp: %d is negative", c.CatchUp)
	}
	return nil
}

// ErrInvalidConfig is wrapped by the error Run returns for a bad Config.
var ErrInvalidConfig = errors.New("invalid bench config")

// Run runs the configured scenarios and returns their results. The
// measurements of a scenario are interleaved run by run, so a change in the
// machine's load touches a measurement and its baseline alike.
func Run(ctx context.Context, cfg *Config) (*Report, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	env, err := openEnv(ctx, c)
	if err != nil {
		return nil, err
	}
	defer env.close()

	started := time.Now()
	rep := &Report{
		Started:  started.UTC().Format(time.RFC3339),
		Machine:  describeMachine(),
		Postgres: env.describePostgres(ctx),
		Command: Settings{
			Scenarios: c.Scenarios, Runs: c.Runs, Events: c.Events,
			WatermillEvents: c.WatermillEvents, Backlog: c.Backlog,
			DurationMs: c.Duration.Milliseconds(), Subscribers: c.Subscribers, CatchUp: c.CatchUp,
			OwnCluster: c.DatabaseURL == "",
		},
	}
	for _, name := range Scenarios {
		if !slices.Contains(c.Scenarios, name) {
			continue
		}
		began := time.Now()
		c.Logger.Info("scenario", "name", name)
		rec := newRecorder(name)
		if err := scenarios[name](ctx, env, rec); err != nil {
			return nil, fmt.Errorf("scenario %s: %w", name, err)
		}
		rep.Results = append(rep.Results, rec.results()...)
		rep.Notes = append(rep.Notes, rec.notes...)
		c.Logger.Info("scenario done", "name", name, "took", time.Since(began).Round(time.Millisecond))
	}
	rep.Elapsed = time.Since(started).Round(time.Millisecond).String()
	return rep, nil
}

var scenarios = map[string]func(context.Context, *env, *recorder) error{
	ScenarioPublish: runPublish,
	ScenarioRelay:   runRelay,
	ScenarioLatency: runLatency,
	ScenarioE2E:     runE2E,
	ScenarioModes:   runModes,
	ScenarioBacklog: runBacklog,
	ScenarioEvents:  runEvents,
}

// Write prints r as the table of the README's Performance section.
func (r *Report) Write(w io.Writer) error {
	return r.writeTable(w)
}
