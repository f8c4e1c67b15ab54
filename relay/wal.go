package relay

import (
	"cmp"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/internal/walmsg"
)

// Mode says how a relay learns that events were committed.
type Mode string

const (
	// ModePoll polls the outbox table: at once while rows keep coming,
	// then after a wait that doubles from 1ms up to Config.PollInterval
	// while polls come back empty. Wake cuts the wait short. It needs
	// nothing of the server.
	ModePoll Mode = "poll"

	// ModeWAL streams the write-ahead log through a temporary logical
	// replication slot (pgoutput, the publication txoutbox_{schema} that
	// migration 008 creates) and polls as soon as a transaction that
	// inserted events into a partition this relay holds has committed:
	// no commit→poll gap, whichever process published. The events are
	// still read from the table, so status, dead letters, replay and the
	// console work as in ModePoll, and a slot lost or a stream broken
	// loses nothing: the relay polls every Config.PollInterval (1s by
	// default in this mode) until the stream is back.
	//
	// It needs wal_level=logical, a free replication slot and WAL sender
	// per relay (max_replication_slots, max_wal_senders), and a role with
	// the REPLICATION attribute. The slot is temporary: the server drops
	// it when the relay's connection ends, so a relay that is down holds
	// back no WAL. Run refuses to start when the server cannot stream.
	ModeWAL Mode = "wal"
)

// PollIntervalWALDefault is Config.PollInterval's default in ModeWAL, where
// polling only backs up the stream.
const PollIntervalWALDefault = time.Second

// ErrWALUnavailable is wrapped by Run's error when Config.Mode is ModeWAL
// and the server cannot stream the outbox's inserts: wal_level is not
// logical, or the publication is missing. The error says what to change.
var ErrWALUnavailable = errors.New("relay: WAL mode unavailable")

// Bounds of the wait before the WAL stream is opened again after it broke.
const (
	walRetryBase = 100 * time.Millisecond
	walRetryMax  = 5 * time.Second
)

// walState is what the WAL stream reports of itself, for WALStatus.
type walState struct {
	streaming atomic.Bool
	lost      atomic.Bool  // ModeMessages: the slot is missing or lost
	recreated atomic.Int64 // ModeMessages: the slot was found created again
	slot      atomic.Pointer[string]
	received  atomic.Uint64 // LSN of the last commit received
	woken     atomic.Uint64 // partitions woken for since the loop's last round, a bit each
	wakes     atomic.Int64  // commits that woke the loop
	restarts  atomic.Int64  // streams that ended in an error
}

// WALStatus describes the stream of a relay in ModeWAL or ModeMessages;
// outboxprom.Metrics.RegisterWAL exports it.
type WALStatus struct {
	// Streaming reports whether the stream is open now: in ModeMessages,
	// whether this relay holds the slot. While it is not, the relay polls
	// every Config.PollInterval.
	Streaming bool
	// Slot is the name of the stream's replication slot, as in
	// pg_replication_slots: in ModeWAL the temporary slot of the current
	// stream (empty before the first opened), in ModeMessages the outbox's
	// durable slot.
	Slot string
	// ReceivedLSN is the end LSN of the last transaction received (in
	// ModeMessages, once its events are delivered or in the table).
	ReceivedLSN string
	// Wakes counts the commits that woke the relay: in ModeWAL those that
	// inserted events into a partition it holds, in ModeMessages those
	// that carried events. Restarts counts the streams that broke and were
	// opened again.
	Wakes, Restarts int64
	// Lost reports, in ModeMessages, that the relay found the outbox's
	// slot missing or invalidated (see ModeMessages); false again once it
	// holds the slot.
	Lost bool
	// Recreated counts, in ModeMessages, the times the relay found that
	// the slot had been created again since it last opened it (its record
	// from txoutbox migrate --messages --recreate-lost-slot is newer): the
	// events committed after the relay's position, up to the new slot's
	// creation, were not delivered. The relay logs each as an error
	// wrapping ErrSlotLost, and goes on with the new slot.
	Recreated int64
}

// WALStatus returns the state of the relay's WAL stream; the zero value
// in ModePoll.
func (r *Relay) WALStatus() WALStatus {
	s := WALStatus{
		Streaming: r.wal.streaming.Load(),
		Lost:      r.wal.lost.Load(),
		Recreated: r.wal.recreated.Load(),
		Wakes:     r.wal.wakes.Load(),
		Restarts:  r.wal.restarts.Load(),
	}
	if p := r.wal.slot.Load(); p != nil {
		s.Slot = *p
	}
	if lsn := r.wal.received.Load(); lsn != 0 {
		s.ReceivedLSN = pglogrepl.LSN(lsn).String()
	}
	return s
}

// walPrepare checks that the server can stream what the mode reads and
// returns the publication to stream, ModeMessages' slot and the outbox's
// schema, resolved.
func (r *Relay) walPrepare(ctx context.Context) (pub, slot, schema string, err error) {
	var level, database string
	if err := r.pool.QueryRow(ctx, "SELECT current_setting('wal_level'), current_database(), current_schema()").Scan(&level, &database, &schema); err != nil {
		return "", "", "", fmt.Errorf("relay: %s mode: %w", r.cfg.Mode, err)
	}
	schema = cmp.Or(r.cfg.Schema, schema)
	slot = walmsg.Slot(database, schema)
	if level != "logical" {
		return "", "", "", fmt.Errorf("%w: the server's wal_level is %s: set wal_level = logical (ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL, or use ModePoll", ErrWALUnavailable, level)
	}
	err = r.pool.QueryRow(ctx, r.q.walPublication, outboxsql.Table(r.cfg.Schema, outboxsql.TableEvents)).Scan(&pub)
	if err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return "", "", "", fmt.Errorf("%w: no publication holds the outbox table: run txoutbox migrate (migration 008 creates it)", ErrWALUnavailable)
		}
		return "", "", "", fmt.Errorf("relay: %s mode: find the publication: %w", r.cfg.Mode, err)
	}
	if r.cfg.Mode == ModeMessages {
		if err := r.checkSlot(ctx, slot); err != nil {
			return "", "", "", fmt.Errorf("%w: %w: run txoutbox migrate --messages", ErrWALUnavailable, err)
		}
		if _, err := outboxsql.ReadMessageSlotRecord(ctx, r.pool, r.cfg.Schema, slot); err != nil {
			return "", "", "", fmt.Errorf("%w: %w: run txoutbox migrate (migration 009 records the slot)", ErrWALUnavailable, err)
		}
	}
	return pub, slot, schema, nil
}

// walLoop keeps a WAL stream open until ctx is cancelled, opening it again
// after it breaks. While it is down the loop polls.
func (r *Relay) walLoop(ctx context.Context, pub string) {
	failures := 0
	for {
		began := time.Now()
		err := r.streamWAL(ctx, pub)
		r.wal.streaming.Store(false)
		if ctx.Err() != nil {
			return
		}
		r.wal.restarts.Add(1)
		if time.Since(began) > walRetryMax {
			failures = 0
		}
		failures++
		wait := equalJitter(walRetryBase, walRetryMax, failures)
		r.log.Warn("WAL stream ended; polling until it is open again", "err", err, "retry_in", wait.Round(time.Millisecond))
		// What committed while the stream was down is found by polls: one
		// now, then every PollInterval.
		r.Wake()
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}

// streamWAL opens a replication connection with a temporary slot and wakes
// the loop for each commit that inserted events into a held partition,
// until ctx is cancelled or the stream fails.
func (r *Relay) streamWAL(ctx context.Context, pub string) error {
	c, err := dialReplication(ctx, r.pool)
	if err != nil {
		return err
	}
	defer c.close(ctx)

	slot := walSlotName()
	res, err := pglogrepl.CreateReplicationSlot(ctx, c.conn, slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		Temporary: true, SnapshotAction: "NOEXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication,
	})
	if err != nil {
		return fmt.Errorf("create replication slot: %w", err)
	}
	start, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return fmt.Errorf("create replication slot: %w", err)
	}
	if err := c.start(ctx, slot, start, pub); err != nil {
		return err
	}
	r.wal.slot.Store(&slot)
	r.wal.streaming.Store(true)
	r.log.Debug("WAL stream open", "slot", slot, "publication", pub, "lsn", start)
	// Rows committed before the slot existed are found by this poll.
	r.Wake()

	d := walDecoder{keyCol: -1}
	for {
		m, _, err := c.receive(ctx, time.Time{})
		if err != nil {
			return err
		}
		lsn, parts := d.decode(m)
		c.settled = d.open == 0
		if lsn != 0 {
			// The table holds what the transaction committed: nothing
			// needs the slot to keep it.
			c.confirm(lsn)
			r.wal.received.Store(uint64(lsn))
		}
		if held := parts & r.leases.mask(); held != 0 {
			r.wal.wakes.Add(1)
			r.wal.woken.Or(held)
			r.Wake()
		}
	}
}

// walDecoder follows the pgoutput messages of the stream.
type walDecoder struct {
	rel    uint32 // the outbox table's relation id; 0 before its Relation message
	keyCol int    // index of its key column
	parts  uint64 // partitions the open transaction inserted into
	open   int    // 1 between Begin and Commit
}

// decode follows one pgoutput message. At a Commit it returns the
// commit's end LSN and the partitions the transaction inserted events into.
func (d *walDecoder) decode(m pglogrepl.Message) (pglogrepl.LSN, uint64) {
	switch m := m.(type) {
	case *pglogrepl.BeginMessage:
		d.open, d.parts = 1, 0
	case *pglogrepl.RelationMessage:
		if m.RelationName == outboxsql.TableEvents {
			d.rel, d.keyCol = m.RelationID, -1
			for i, c := range m.Columns {
				if c.Name == "key" {
					d.keyCol = i
				}
			}
		}
	case *pglogrepl.InsertMessage:
		if m.RelationID != d.rel {
			return 0, 0
		}
		if d.keyCol < 0 || d.keyCol >= len(m.Tuple.Columns) {
			d.parts = ^uint64(0) // no key to hash: every partition may have rows
			return 0, 0
		}
		d.parts |= 1 << uint(partitionOf(m.Tuple.Columns[d.keyCol].Data))
	case *pglogrepl.CommitMessage:
		parts := d.parts
		d.open, d.parts = 0, 0
		return m.TransactionEndLSN, parts
	}
	return 0, 0
}

// partitionOf is the outbox table's part column for key: the low six bits
// of the first four bytes of its MD5, as migration 001 computes it.
func partitionOf(key []byte) int16 {
	sum := md5.Sum(key)
	return int16(sum[3] & (partitions - 1))
}

// walSlotName returns a name for a temporary slot, unique per stream:
// a relay's slot is gone with its connection, but the server may not have
// noticed yet that a relay which restarts under the same ID lost it.
func walSlotName() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return outboxsql.RelaySlotPrefix + hex.EncodeToString(b[:])
}
