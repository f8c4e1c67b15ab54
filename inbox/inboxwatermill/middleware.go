package inboxwatermill

import (
	"context"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/inbox"
)

// ErrNoTx is Tx's error for a message the middleware did not handle.
var ErrNoTx = errors.New("inboxwatermill: no transaction: the handler does not run behind the inbox middleware")

// ErrNoConsumer is the middleware's error for a message whose context names
// no handler while Config.Consumer is empty: a handler run outside a
// watermill router.
var ErrNoConsumer = errors.New("inboxwatermill: no consumer: Config.Consumer is empty and the message names no router handler")

// DB begins the transactions; *pgxpool.Pool satisfies it.
type DB interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Config configures the middleware; nil is the zero value.
type Config struct {
	// Consumer is the consumer name the inbox records the messages under.
	// Defaults to the name of the router handler the message is for, so a
	// middleware added to the whole router keeps each handler's events
	// apart; set it to keep the name when a handler is renamed.
	Consumer string

	// EventIDFunc returns the message's event id. Defaults to the message's
	// UUID, which the relay's watermill sink (relaywatermill) sets to the
	// outbox event's id.
	EventIDFunc func(msg *message.Message) string

	// TxOptions are the options of the transaction the middleware begins.
	// Defaults to PostgreSQL's default isolation, read committed, under
	// which a duplicate racing the first delivery waits and is skipped; see
	// inbox.Inbox.Once for the stricter levels.
	TxOptions pgx.TxOptions
}

type txKey struct{}

// Tx returns the transaction the middleware began for msg, in which the
// handler writes its effects. Outside the middleware it returns ErrNoTx.
// The handler must not commit or roll it back: the middleware commits it
// when the handler returns nil, and rolls it back otherwise.
func Tx(msg *message.Message) (pgx.Tx, error) {
	if tx, ok := msg.Context().Value(txKey{}).(pgx.Tx); ok {
		return tx, nil
	}
	return nil, ErrNoTx
}

// NewMiddleware returns a watermill handler middleware that runs each
// message's handler at most once per consumer: it begins a transaction on
// db, records the message's event id in it with ib.Once, runs the handler
// with the transaction (Tx) and commits. A duplicate is acknowledged
// without running the handler; a handler error, or a failed commit, rolls
// everything back, id included, and the error goes on to the router, which
// nacks the message so that its redelivery runs the handler again.
//
// Messages the handler returns are published by the router after the
// commit; if that publish fails, the redelivery is a duplicate and they are
// not produced again. Publish a handler's own events through the outbox in
// the same transaction instead (outbox.Session.Flush(ctx, tx)), and they
// commit with its effects.
func NewMiddleware(db DB, ib *inbox.Inbox, cfg *Config) (message.HandlerMiddleware, error) {
	if db == nil {
		return nil, fmt.Errorf("inboxwatermill: %w: db is nil", inbox.ErrInvalidConfig)
	}
	if ib == nil {
		return nil, fmt.Errorf("inboxwatermill: %w: inbox is nil", inbox.ErrInvalidConfig)
	}
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if c.EventIDFunc == nil {
		c.EventIDFunc = func(msg *message.Message) string { return msg.UUID }
	}
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			return c.handle(db, ib, h, msg)
		}
	}, nil
}

func (c *Config) handle(db DB, ib *inbox.Inbox, h message.HandlerFunc, msg *message.Message) ([]*message.Message, error) {
	ctx := msg.Context()
	consumer := c.Consumer
	if consumer == "" {
		if consumer = message.HandlerNameFromCtx(ctx); consumer == "" {
			return nil, ErrNoConsumer
		}
	}
	tx, err := db.BeginTx(ctx, c.TxOptions)
	if err != nil {
		return nil, fmt.Errorf("inboxwatermill: begin: %w", err)
	}
	// After a commit a no-op; after an error or a panic, the id and the
	// effects go. Not cancelled with ctx, so the connection is released clean.
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // the error that matters is the handler's
	first, err := ib.Once(ctx, tx, consumer, c.EventIDFunc(msg))
	if err != nil {
		return nil, err
	}
	if !first {
		return nil, nil // a duplicate: acknowledged, nothing to keep
	}
	msg.SetContext(context.WithValue(ctx, txKey{}, tx))
	defer msg.SetContext(ctx) // a retry middleware runs the handler again on the same message
	out, err := h(msg)
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("inboxwatermill: commit: %w", err)
	}
	return out, nil
}
