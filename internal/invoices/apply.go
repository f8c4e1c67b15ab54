package invoices

import (
	"context"
	"errors"
	"net/http"

	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/outbox"
)

// Change is one state change: Create, Pay or Cancel bound to its input.
type Change func(ctx context.Context, tx pgx.Tx) (Invoice, Event, error)

// Apply runs one state change in a transaction of db: the business write,
// its event published through sess and flushed into the same transaction,
// and the commit that makes both visible at once. The services' handlers
// call it with the session their middleware opened, whatever their
// framework.
func Apply(ctx context.Context, db outbox.Beginner, sess *outbox.Session, change Change) (Invoice, error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return Invoice{}, err
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit, a no-op
	inv, ev, err := change(ctx, tx)
	if err != nil {
		return Invoice{}, err
	}
	if err := sess.Publish(ctx, ev.Action, Entity, ev.Data); err != nil {
		return Invoice{}, err // the data does not match the topic's schema: a bug, so a 500
	}
	if err := sess.Flush(ctx, tx); err != nil {
		return Invoice{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Invoice{}, err
	}
	sess.Committed() // an embedded relay delivers the event now, before the answer is written
	return inv, nil
}

// Status is the HTTP status of a business error: 400 for an *InputError,
// 404 for ErrNotFound, 409 for ErrState, and 0 for every other error,
// which the services answer with 500.
func Status(err error) int {
	var input *InputError
	switch {
	case errors.As(err, &input):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrState):
		return http.StatusConflict
	}
	return 0
}
