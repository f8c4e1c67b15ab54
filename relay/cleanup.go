package relay

import (
	"context"
	"fmt"
)

// cleanupLoop removes expired delivered rows every CleanupInterval until ctx
// is cancelled. Every relay runs it; they skip each other's locked rows.
func (r *Relay) cleanupLoop(ctx context.Context) {
	every(ctx, r.cfg.CleanupInterval, func() {
		n, err := r.cleanup(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.log.Warn("remove delivered events", "err", err, "removed", n)
		case n > 0:
			r.log.Debug("removed delivered events", "removed", n)
		}
	})
}

// cleanup deletes delivered rows older than Retention, CleanupBatchSize rows
// per statement, each its own short transaction, until none are left.
func (r *Relay) cleanup(ctx context.Context) (int64, error) {
	var total int64
	for ctx.Err() == nil {
		tag, err := r.pool.Exec(ctx, r.q.cleanup, r.cfg.Retention.Microseconds(), r.cfg.CleanupBatchSize)
		if err != nil {
			return total, fmt.Errorf("delete delivered events: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(r.cfg.CleanupBatchSize) {
			break
		}
	}
	return total, nil
}
