package outbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// InTx runs fn in a transaction begun on db, then flushes sess into that
// transaction, commits it and calls sess.Committed: the opt-in shape for
// teams that would rather not write Begin, Flush, Commit and Committed in
// every handler.
//
// When fn returns an error or panics, or Flush or Commit fails, the
// transaction is rolled back and the events sess holds are dropped
// (sess.Rollback, including any it held before InTx was called); fn's error
// is returned as it is, and a panic goes on after the rollback. fn must
// publish through sess and write through tx only, and must not commit or
// roll back tx itself.
//
//	err := outbox.InTx(ctx, pool, sess, func(ctx context.Context, tx pgx.Tx) error {
//		if _, err := tx.Exec(ctx, "INSERT INTO invoices ...", ...); err != nil {
//			return err
//		}
//		return sess.Publish(ctx, "Created", "Invoice", invoice)
//	})
func InTx(ctx context.Context, db Beginner, sess *Session, fn func(ctx context.Context, tx pgx.Tx) error) error {
	if sess == nil {
		return errors.New("outbox: in tx: session is nil")
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("outbox: begin: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			sess.Rollback()
			// With ctx cancelled pgx closes the connection, which rolls back too.
			_ = tx.Rollback(ctx)
		}
	}()
	if err := fn(ctx, tx); err != nil {
		return err
	}
	if err := sess.Flush(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("outbox: commit: %w", err)
	}
	committed = true
	sess.Committed()
	return nil
}
