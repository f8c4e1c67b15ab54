package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/internal/walmsg"
	"github.com/txoutbox/txoutbox/outbox"
)

// ModeMessages delivers the events of outbox.StorageMessages: each Flush
// emitted them as a logical decoding message, and the relay streams them
// from the outbox's durable replication slot (txoutbox migrate --messages
// creates it), in commit order, straight to the sink. No row is written
// for an event that is delivered. The events committed back to back go
// to the sink as one batch, sent once the stream has been quiet for 200µs
// and at most a millisecond after the batch's first event arrived. Nothing
// needs to wake a relay in this mode (Wake only polls the table).
//
// One relay at a time holds the slot; the others stand by, try again every
// second, and take over within about a second of its end (its connection
// closing ends its hold). Every relay also runs the table's loop, which
// delivers what the stream could not: an event the sink failed is written
// into the table, pending with its attempt counted, and so is every later
// event of its key until the table has none of the key's events left, so
// a key keeps its order. The relay that holds the key's partition tries
// the event again from the table and dead-letters it there, as in the
// other modes (an event failed for good is thus sent twice). Inspect,
// replay, the console and the dead-letter rules work on those rows as in
// the other modes.
//
// The slot's position is confirmed only once the sink accepted every event
// before it or the table holds them: a relay that dies leaves the rest of
// the stream to the next, which sends again at most what was in flight.
// While no relay confirms (all down, or the sink down), PostgreSQL keeps
// the WAL from the slot's position on; max_slot_wal_keep_size bounds it,
// and a slot that went past it is lost: its events can no longer be read.
// A relay that finds the slot lost or missing logs an error saying how to
// recover, and Flush refuses to emit (outbox.ErrNoSlot) until the slot is
// back. txoutbox migrate --messages records the slot it creates, and
// refuses to create a lost one again without --recreate-lost-slot; a relay
// that finds the slot's record newer than the one it read when it last
// opened the slot reports that it was created again (WALStatus.Recreated,
// an error log wrapping ErrSlotLost) and goes on with the new slot.
const ModeMessages Mode = "messages"

// Stand-by and failure waits of the message stream.
const (
	// msgStandby is how often a relay that does not hold the slot tries to.
	msgStandby = time.Second
	// msgIdle is how long the stream may be quiet before the events
	// received are sent: a batch collects what arrives back to back.
	msgIdle = 200 * time.Microsecond
	// msgMaxWait bounds how long the first event of a batch waits for
	// more: a stream that is never quiet for msgIdle still sends.
	msgMaxWait = time.Millisecond
)

// ErrSlotLost is logged (and reported by WALStatus) when ModeMessages
// finds the outbox's replication slot missing or invalidated.
var ErrSlotLost = errors.New("relay: the replication slot of message storage is missing or lost")

// streamEvent is an event of the stream: the row the delivery path takes,
// and the event as it was emitted, for writing it into the table.
type streamEvent struct {
	row row
	msg walmsg.Event
}

// messagesLoop holds the slot whenever it can and delivers its events until
// ctx is cancelled.
func (r *Relay) messagesLoop(ctx, workCtx context.Context, pub, slot, prefix string) {
	r.wal.slot.Store(&slot)
	failures := 0
	var st msgStream
	for {
		began := time.Now()
		err := r.consume(ctx, workCtx, slot, prefix, pub, &st)
		r.wal.streaming.Store(false)
		if ctx.Err() != nil {
			return
		}
		wait := msgStandby
		var pgErr *pgconn.PgError
		switch {
		case errors.As(err, &pgErr) && pgErr.Code == "55006":
			// Another relay holds the slot: stand by.
			r.log.Debug("replication slot held by another relay; standing by", "slot", slot)
			failures = 0
		case errors.Is(err, ErrSlotLost):
			r.wal.lost.Store(true)
			r.log.Error("replication slot of message storage missing or lost: "+walmsg.LostRecovery, "slot", slot, "err", err)
			wait = walRetryMax
		default:
			r.wal.restarts.Add(1)
			if time.Since(began) > walRetryMax {
				failures = 0
			}
			failures++
			wait = equalJitter(walRetryBase, walRetryMax, failures)
			r.log.Warn("message stream ended; opening it again", "slot", slot, "err", err, "retry_in", wait.Round(time.Millisecond))
		}
		if !sleepCtx(ctx, wait) {
			return
		}
	}
}

// msgStream is what a relay remembers of the slot between its streams.
type msgStream struct {
	// resume is the stream's position this relay is done with.
	// PostgreSQL before 17 keeps a slot's confirmed position on disk only
	// now and then, so after a restart it may start the slot well before
	// what was confirmed; the relay asks for its own position, and the
	// server takes the later of the two.
	resume pglogrepl.LSN
	// record is the slot's record (migration 009) when this relay last
	// opened it: a different one means the slot was created again since.
	record *outboxsql.MessageSlotRecord
	// unrecorded: the relay warned that the slot has no record.
	unrecorded bool
}

// consume streams the slot from its confirmed position or st.resume,
// whichever is later, delivering each run of committed events as a batch
// once the stream goes quiet or the batch is full, and confirming it once
// it is delivered or in the table. It leaves in st.resume the position it
// is done with.
func (r *Relay) consume(ctx, workCtx context.Context, slot, prefix, pub string, st *msgStream) error {
	if err := r.checkSlot(ctx, slot); err != nil {
		return err
	}
	if err := r.checkSlotRecord(ctx, slot, st); err != nil {
		return err
	}
	c, err := dialReplication(ctx, r.pool)
	if err != nil {
		return err
	}
	defer c.close(ctx)
	if err := c.start(ctx, slot, st.resume, pub); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "42704" || pgErr.Code == "55000") {
			return fmt.Errorf("%w: %w", ErrSlotLost, err)
		}
		return err
	}
	spilled, err := r.loadSpilled(ctx)
	if err != nil {
		return err
	}
	defer func() { st.resume = max(st.resume, c.confirmed) }()
	r.wal.lost.Store(false)
	r.wal.streaming.Store(true)
	r.log.Debug("message stream open", "slot", slot)

	var (
		pending []streamEvent // committed, not yet delivered
		txn     []streamEvent // of the open transaction
		end     pglogrepl.LSN // end of the last transaction in pending
		open    bool
		first   time.Time // when pending's first event was received
	)
	for {
		var until time.Time
		if len(pending) > 0 {
			until = batchDeadline(time.Now(), first)
		}
		m, _, err := c.receive(ctx, until)
		if errors.Is(err, errNoMessage) || (err == nil && len(pending) >= r.cfg.BatchSize && !open) {
			if derr := r.deliverStream(workCtx, c, pending, spilled); derr != nil {
				return derr
			}
			c.confirm(end)
			r.wal.received.Store(uint64(end))
			if ferr := c.flush(ctx); ferr != nil {
				return ferr
			}
			pending = pending[:0]
			c.settled = !open
			if err != nil {
				continue
			}
		}
		if err != nil {
			return err
		}
		switch m := m.(type) {
		case *pglogrepl.BeginMessage:
			open, txn = true, txn[:0]
		case *pglogrepl.LogicalDecodingMessage:
			if m.Prefix != prefix || !m.Transactional {
				continue
			}
			evs, err := walmsg.Decode(m.Content)
			if err != nil {
				// Not ours to read: a newer producer's version. Stop
				// rather than skip it.
				return fmt.Errorf("message at %s: %w", m.LSN, err)
			}
			for _, e := range evs {
				se, err := toStreamEvent(e)
				if err != nil {
					return fmt.Errorf("message at %s: %w", m.LSN, err)
				}
				txn = append(txn, se)
			}
		case *pglogrepl.CommitMessage:
			open = false
			if len(txn) == 0 && len(pending) == 0 {
				c.confirm(m.TransactionEndLSN)
				r.wal.received.Store(uint64(m.TransactionEndLSN))
			} else {
				if len(pending) == 0 {
					first = time.Now()
				}
				if len(txn) > 0 {
					r.wal.wakes.Add(1)
				}
				pending = append(pending, txn...)
				end = m.TransactionEndLSN
				txn = txn[:0]
			}
		}
		c.settled = !open && len(pending) == 0
	}
}

// batchDeadline is when a batch whose first event arrived at first is sent
// if nothing more arrives: after msgIdle of quiet, and no later than
// msgMaxWait after its first event.
func batchDeadline(now, first time.Time) time.Time {
	idle, last := now.Add(msgIdle), first.Add(msgMaxWait)
	if last.Before(idle) {
		return last
	}
	return idle
}

// checkSlot reports ErrSlotLost when the slot is missing or invalidated.
func (r *Relay) checkSlot(ctx context.Context, slot string) error {
	state, err := outboxsql.ReadMessageSlotState(ctx, r.pool, slot)
	switch {
	case err != nil:
		return err
	case !state.Exists:
		return fmt.Errorf("%w: no slot %s", ErrSlotLost, slot)
	case state.Lost:
		return fmt.Errorf("%w: slot %s is lost (its WAL went past max_slot_wal_keep_size)", ErrSlotLost, slot)
	}
	return nil
}

// checkSlotRecord compares the slot's record with the one this relay read
// when it last opened the slot. A new record means the slot was created
// again since (txoutbox migrate --messages --recreate-lost-slot): the
// events committed after this relay's position, up to the new slot's
// creation, were never delivered. The relay reports it (WALStatus
// Recreated, and an error log) and goes on with the new slot.
func (r *Relay) checkSlotRecord(ctx context.Context, slot string, st *msgStream) error {
	rec, err := outboxsql.ReadMessageSlotRecord(ctx, r.pool, r.cfg.Schema, slot)
	if err != nil {
		return err
	}
	switch {
	case rec == nil && !st.unrecorded:
		st.unrecorded = true
		r.log.Warn("replication slot of message storage has no record: run txoutbox migrate --messages to record it, "+
			"or a lost slot created again under its name goes unnoticed", "slot", slot)
	case rec != nil && st.record != nil && rec.CreatedLSN != st.record.CreatedLSN:
		r.wal.recreated.Add(1)
		err := fmt.Errorf("%w: slot %s was created again at %s on %s; this relay had read the one created at %s up to %s",
			ErrSlotLost, slot, rec.CreatedLSN, rec.CreatedAt.UTC().Format(time.RFC3339), st.record.CreatedLSN, st.resume)
		r.log.Error("replication slot of message storage was created again: the events committed after this relay's position, "+
			"up to the new slot's creation, were not delivered; compare the producers' records with the consumers' for the gap",
			"slot", slot, "err", err)
		st.resume = 0 // the old slot's position means nothing to the new one
	}
	st.record = rec
	return nil
}

// toStreamEvent turns an emitted event into the row the delivery path
// takes.
func toStreamEvent(e walmsg.Event) (streamEvent, error) {
	id, err := uuid.Parse(e.ID)
	if err != nil {
		return streamEvent{}, fmt.Errorf("event id %q: %w", e.ID, err)
	}
	return streamEvent{
		msg: e,
		row: row{
			part: partitionOf([]byte(e.Key)),
			key:  e.Key,
			ev: outbox.Event{
				ID: id, Topic: e.Topic, Category: e.Category, Entity: e.Entity, Action: e.Action,
				Data: e.Data, ActorID: e.ActorID, ActorType: e.ActorType, JobID: e.JobID, Source: e.Source,
				Key: e.Key, Traceparent: e.Traceparent, Tenant: e.Tenant, CausationID: e.CausationID,
				DedupeKey: e.DedupeKey, Time: e.Time,
				Target: outbox.Target{Collection: e.Collection, Project: e.Project, Layout: e.Layout},
			},
		},
	}, nil
}

// loadSpilled returns the keys that have events in the table: their next
// events from the stream go there too.
func (r *Relay) loadSpilled(ctx context.Context) (map[string]bool, error) {
	rows, err := r.pool.Query(ctx, r.q.tableKeys)
	if err != nil {
		return nil, fmt.Errorf("load keys with events in the table: %w", err)
	}
	keys, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("load keys with events in the table: %w", err)
	}
	spilled := make(map[string]bool, len(keys))
	for _, k := range keys {
		spilled[k] = true
	}
	return spilled, nil
}

// deliverStream delivers events in batches of BatchSize. It returns once
// each event is delivered or written into the table, or with an error when
// it could not write them (or ctx ended), leaving the batch unconfirmed.
func (r *Relay) deliverStream(ctx context.Context, c *replConn, events []streamEvent, spilled map[string]bool) error {
	for len(events) > 0 {
		n := min(len(events), r.cfg.BatchSize)
		if err := r.deliverStreamBatch(ctx, c, events[:n], spilled); err != nil {
			return err
		}
		events = events[n:]
	}
	return nil
}

func (r *Relay) deliverStreamBatch(ctx context.Context, c *replConn, events []streamEvent, spilled map[string]bool) error {
	start := time.Now()
	if err := r.refreshSpilled(ctx, events, spilled); err != nil {
		return err
	}
	// toTable[i] is set for the events that go into the table, which
	// keeps them in the stream's order.
	toTable := make([]*walmsg.Spilled, len(events))
	var send []*row
	index := make(map[*row]int, len(events))
	for i := range events {
		se := &events[i]
		if spilled[se.row.key] {
			toTable[i] = &walmsg.Spilled{Event: se.msg}
			continue
		}
		send = append(send, &se.row)
		index[&se.row] = i
	}
	var out outcome
	for attempt := 1; len(send) > 0; attempt++ {
		out = r.deliver(ctx, send)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !out.sinkFailed() && (len(out.delivered) > 0 || len(out.failed) > 0) {
			break
		}
		// The sink is down (it failed everything retryably, or sent
		// nothing): try the batch again, spending no attempt, as the
		// table's loop does; the stream waits.
		wait := equalJitter(r.cfg.RetryBase, min(r.cfg.RetryMax, sinkRetryMax), attempt)
		if len(out.failed) > 0 {
			if d, ok := RetryAfterOf(out.failed[0].err); ok {
				wait = max(wait, d)
			}
			r.log.Warn("sink failed; the message stream waits", "err", out.failed[0].err, "events", len(send), "retry_in", wait.Round(time.Millisecond))
		}
		if err := c.status(ctx); err != nil { // keep the server's walsender content
			return err
		}
		if !sleepCtx(ctx, wait) {
			return ctx.Err()
		}
	}
	// A failed event goes into the table pending, its attempt counted, even
	// when it failed for good: the relay that holds its partition tries it
	// again and dead-letters it there, so that a key is blocked by the one
	// relay that delivers the key's rows from the table.
	for _, f := range out.failed {
		i := index[f.row]
		wait := f.wait
		if IsPermanent(f.err) {
			wait = 0
		}
		toTable[i] = &walmsg.Spilled{Event: events[i].msg, Attempts: 1, WaitUS: wait.Microseconds(), Error: f.err.Error()}
		spilled[f.row.key] = true
	}
	for _, rw := range out.unsent {
		toTable[index[rw]] = &walmsg.Spilled{Event: events[index[rw]].msg}
		spilled[rw.key] = true
	}
	var spill []*walmsg.Spilled
	for _, s := range toTable {
		if s != nil {
			spill = append(spill, s)
		}
	}
	if len(spill) > 0 {
		body, err := json.Marshal(spill)
		if err != nil {
			return fmt.Errorf("write undelivered events into the table: %w", err)
		}
		if _, err := r.pool.Exec(ctx, r.q.spill, body); err != nil {
			return fmt.Errorf("write undelivered events into the table: %w", err)
		}
		r.Wake() // the table's loop delivers them
	}
	for _, f := range out.failed {
		f.row.attempts = 1
	}
	r.logFailed(ctx, out.failed)
	if r.cfg.Hooks.BatchFunc != nil {
		stats := BatchStats{Read: len(events), Delivered: len(out.delivered), Failed: len(out.failed), Elapsed: time.Since(start)}
		stats.Events = r.eventStats(&r.msgStatsBuf, out, false)
		r.cfg.Hooks.BatchFunc(stats)
	}
	return nil
}

// refreshSpilled forgets the keys of events whose table rows are all
// delivered now: their events go to the sink again.
func (r *Relay) refreshSpilled(ctx context.Context, events []streamEvent, spilled map[string]bool) error {
	var keys []string
	seen := make(map[string]bool)
	for i := range events {
		k := events[i].row.key
		if spilled[k] && !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	rows, err := r.pool.Query(ctx, r.q.spilledKeys, keys)
	if err != nil {
		return fmt.Errorf("read keys with events in the table: %w", err)
	}
	still := make(map[string]bool, len(keys))
	var key, status, topic string
	_, err = pgx.ForEachRow(rows, []any{&key, &status, &topic}, func() error {
		if status == "pending" || r.cfg.poisonPolicy(topic) == PoisonBlock {
			still[key] = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read keys with events in the table: %w", err)
	}
	for _, k := range keys {
		if !still[k] {
			delete(spilled, k)
		}
	}
	return nil
}
