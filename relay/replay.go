package relay

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
)

// ErrReplayNoFilter is returned by Replay when the filter selects nothing in
// particular: replaying every dead event must be asked for with All.
var ErrReplayNoFilter = errors.New("relay: replay needs IDs, a topic, a key, or All")

// Executor runs statements with pgx's Exec, Query and QueryRow.
// *pgxpool.Pool, *pgxpool.Conn, *pgx.Conn and pgx.Tx satisfy it, so Replay
// can run inside the caller's transaction. It is the one executor interface
// of the outbox's SQL layer, also named outboxtest.Querier.
type Executor = outboxsql.DB

// ReplayFilter selects the dead events Replay returns to the relay. The
// conditions that are set must all match.
type ReplayFilter struct {
	// Schema holds the outbox tables. Defaults to the search_path.
	Schema string
	// IDs selects events by id.
	IDs []uuid.UUID
	// Topic selects the events of one topic, e.g. billing.InvoiceCreated.
	Topic string
	// Key selects the events of one ordering key.
	Key string
	// All must be set to replay every dead event when no other condition
	// is.
	All bool
}

// Replay makes dead events pending again with their attempts reset, and
// returns how many it found. The relay owning their partition delivers them
// within LeaseTTL/3 (the interval at which it reloads dead keys), in seq
// order with the rest of their key: under PoisonBlock, before the events
// that waited behind them.
//
// Fix the cause first (the sink's validation, the event's consumer): a
// replayed event that fails permanently again is dead-lettered again at
// once.
func Replay(ctx context.Context, db Executor, f ReplayFilter) (int64, error) {
	if len(f.IDs) == 0 && f.Topic == "" && f.Key == "" && !f.All {
		return 0, ErrReplayNoFilter
	}
	ids := f.IDs
	if ids == nil {
		ids = []uuid.UUID{}
	}
	tag, err := db.Exec(ctx, newQueries(f.Schema).replay, ids, f.Topic, f.Key)
	if err != nil {
		return 0, fmt.Errorf("replay dead events: %w", err)
	}
	return tag.RowsAffected(), nil
}
