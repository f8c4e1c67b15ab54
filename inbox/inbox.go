package inbox

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txoutbox/txoutbox/internal/inboxsql"
	"github.com/txoutbox/txoutbox/internal/outboxsql"
)

// Table is the inbox table's name, in Config.Schema.
const Table = inboxsql.Table

// MaxIDBytes is the longest consumer name and event id Once accepts.
const MaxIDBytes = 256

// PruneBatch is how many ids one statement of Prune deletes at most, so that
// no statement holds its locks for long.
const PruneBatch = 10_000

var (
	// ErrInvalidConfig is wrapped by New's and Migrate's errors about the
	// Config.
	ErrInvalidConfig = errors.New("invalid inbox config")
	// ErrInvalidID is wrapped by Once's error for an empty consumer name or
	// event id, one longer than MaxIDBytes, or one that is not UTF-8: a
	// message that can never be processed, which retrying will not fix.
	ErrInvalidID = errors.New("invalid id")
)

// Config configures an Inbox. The zero value (or nil) uses the table on the
// connection's search_path.
type Config struct {
	// Schema holding the inbox table, as given to Migrate. Defaults to the
	// connection's search_path.
	Schema string
}

// Inbox records which events each consumer has processed, in the table
// Migrate creates. It holds only its queries: one Inbox serves every
// consumer and goroutine.
type Inbox struct {
	q inboxsql.Queries
}

// New returns the Inbox for cfg's schema.
func New(cfg *Config) (*Inbox, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if err := outboxsql.CheckSchema(c.Schema); err != nil {
		return nil, fmt.Errorf("inbox: Config.Schema: %w: %w", ErrInvalidConfig, err)
	}
	return &Inbox{q: inboxsql.New(c.Schema)}, nil
}

// Once records in tx that consumer processed the event eventID, and reports
// whether this is the first time: true means apply the event's effects in
// tx and commit; false means the event was processed before, by a
// transaction that committed, and is to be acknowledged without running
// again.
//
// Call it first in the transaction, before the effects. A concurrent
// delivery of the same event waits at Once until the first transaction
// ends: when it commits, the second gets false; when it rolls back, the id
// goes with it and the second gets true and processes the event. Under
// PostgreSQL's default isolation (read committed) that is all; under
// repeatable read or serializable the second fails with a serialization
// error instead of false, and its redelivery gets false.
//
// A rolled-back transaction records nothing, so a handler that fails is
// run again on redelivery. consumer names who processes: different
// consumers in one database each process an event once.
func (ib *Inbox) Once(ctx context.Context, tx pgx.Tx, consumer, eventID string) (first bool, err error) {
	if err := checkID("consumer", consumer); err != nil {
		return false, err
	}
	if err := checkID("event id", eventID); err != nil {
		return false, err
	}
	tag, err := tx.Exec(ctx, ib.q.Insert, consumer, eventID)
	if err != nil {
		return false, fmt.Errorf("inbox: record event %q of %s: %w", eventID, consumer, err)
	}
	return tag.RowsAffected() == 1, nil
}

func checkID(what, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("inbox: %w: the %s is empty", ErrInvalidID, what)
	case len(v) > MaxIDBytes:
		return fmt.Errorf("inbox: %w: the %s is %d bytes; at most %d are accepted", ErrInvalidID, what, len(v), MaxIDBytes)
	case !utf8.ValidString(v) || containsNUL(v):
		return fmt.Errorf("inbox: %w: the %s is not UTF-8 text", ErrInvalidID, what)
	}
	return nil
}

func containsNUL(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return true
		}
	}
	return false
}

// Execer runs a statement; *pgxpool.Pool, *pgx.Conn and pgx.Tx satisfy it.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Prune deletes the ids of every consumer recorded more than olderThan
// ago, by the database's clock, and returns how many it deleted. It
// deletes in statements of at most PruneBatch rows; on a pool each commits
// on its own, so a long prune never holds many locks.
//
// An id pruned is forgotten: an event delivered again after that is
// processed again. Keep ids longer than the longest time a copy can still
// arrive — the relay's retries, the broker's redelivery and the replays
// you may run — a week is a common choice. Run it periodically, from a
// ticker or a cron job.
func (ib *Inbox) Prune(ctx context.Context, db Execer, olderThan time.Duration) (int64, error) {
	if olderThan <= 0 {
		return 0, fmt.Errorf("inbox: prune: olderThan is %v; it must be positive", olderThan)
	}
	var total int64
	for {
		tag, err := db.Exec(ctx, ib.q.Prune, olderThan.Seconds(), PruneBatch)
		if err != nil {
			return total, fmt.Errorf("inbox: prune: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < PruneBatch {
			return total, nil
		}
	}
}
