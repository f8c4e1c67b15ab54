package bench

import (
	"context"
	"fmt"
	"time"
)

// runBacklog measures the relay draining Events rows while Backlog rows are
// pending, beside the same drain from a table holding only those Events
// rows.
func runBacklog(ctx context.Context, e *env, rec *recorder) error {
	n, big := e.cfg.Events, e.cfg.Backlog
	small, err := e.newSchema(ctx, "backlog_small")
	if err != nil {
		return err
	}
	defer small.drop()
	large, err := e.newSchema(ctx, "backlog_large")
	if err != nil {
		return err
	}
	defer large.drop()

	rec.define("backlog/small", fmt.Sprintf("relay → no-op sink, %d of %d pending", n, n), "small backlog", "events/s", goal{})
	rec.define("backlog/large", fmt.Sprintf("relay → no-op sink, %d of %d pending", n, big), "", "events/s",
		ratioAtLeast(0.5, "≥ 0.5× small backlog"), "backlog/small")

	e.log.Info("backlog: loading", "rows", big)
	began := time.Now()
	if err := large.insertEvents(ctx, big); err != nil {
		return err
	}
	rec.note("backlog: %d rows loaded with INSERT … SELECT generate_series and vacuumed in %s; "+
		"each run drains %d of them with one relay, then tops the backlog up with %d new rows (analyzed, not vacuumed: "+
		"the dead rows of earlier drains stay for autovacuum, as in production)", big, time.Since(began).Round(time.Second), n, n)

	for run := range e.cfg.Runs {
		e.log.Info("backlog", "run", run+1)
		if err := small.insertEvents(ctx, n); err != nil {
			return err
		}
		rate, err := drain(ctx, e, small, sinkNoop, 1, n)
		if err != nil {
			return fmt.Errorf("small backlog: %w", err)
		}
		rec.add("backlog/small", rate)

		rate, err = drain(ctx, e, large, sinkNoop, 1, n)
		if err != nil {
			return fmt.Errorf("large backlog: %w", err)
		}
		rec.add("backlog/large", rate)
		if run+1 < e.cfg.Runs {
			if err := large.topUp(ctx, n); err != nil {
				return err
			}
		}
	}
	return nil
}
