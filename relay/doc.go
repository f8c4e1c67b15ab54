// Package relay delivers the events committed to the outbox table to a
// [Sink]: an events API over HTTP (package relay/relayhttp), Kafka (package
// relay/relaykafka), MQTT (package relay/relaymqtt), any watermill publisher
// such as NATS JetStream or AMQP (package relay/relaywatermill), or a sink
// of your own, which is a type with one method:
//
//	type Sink interface {
//		Send(ctx context.Context, events []*outbox.Event) error
//	}
//
// Send gets each batch whole, oldest first, and answers for each event:
// nil delivers them all, a [*BatchError] names by id those that failed, and
// [Permanent], [RetryAfter] and [ErrNotSent] say how each failed. A sink
// that sends a batch in several parts uses [Outcome] to keep each key's
// order across them. Package relay/relaytest is the conformance suite every
// sink passes; Example_sink is a complete sink in 20 lines.
//
// Run one in the txoutbox daemon (txoutbox relay), or embed it in the
// application that publishes, as River's client is embedded:
//
//	r, err := relay.New(pool, sink, &relay.Config{Logger: logger})
//	if err != nil {
//		return err
//	}
//	defer client.OnCommit(r.Wake)() // deliver this process's events right after their commit
//	go func() { errc <- r.Run(ctx) }()
//
// OnCommit hooks run when a session learns that its transaction committed:
// outbox.InTx and the middleware packages tell it, code that calls Flush
// and Commit itself calls sess.Committed() after the commit. A wake that
// comes before the commit finds nothing to deliver.
//
// Run blocks until ctx is cancelled; it owns every goroutine it starts and
// waits for them before it returns. The tables it needs come with the outbox
// migrations (outbox.Migrate, or txoutbox migrate).
//
// # How it works
//
// The outbox is split into 64 partitions by the hash of each event's ordering
// key (the part column). Relays lease partitions in txoutbox_partitions: each
// relay heartbeats in txoutbox_relays, holds at most its fair share
// (64 / live relays, rounded up), takes free or expired partitions and gives
// back extras, renewing its leases every LeaseTTL/3; after a round in which
// the live relays or its own share changed it runs the next one 50 ms later,
// doubling back to LeaseTTL/3 (or to 500 ms while it holds less than its
// share), so relays started together settle on their shares within a few
// hundred milliseconds. Renewals and heartbeats run on a goroutine of their
// own that never waits for a delivery. A partition to give back while a
// batch reads it is released as soon as that batch is recorded: partitions
// change hands between batches, never in the middle of one. Because a
// partition has one owner, the relay reads its pending rows with a plain SELECT, oldest
// first, delivers them outside any transaction, and records the outcome in
// one short transaction: delivered rows are deleted (or marked delivered and
// kept for Config.Retention), failed ones get their attempt, error and next
// attempt time. Nothing waits for other transactions to finish: a long
// transaction elsewhere, even in another database of the cluster, delays
// nothing. While rows keep coming the relay polls again at once; when idle
// it backs off to PollInterval; Wake cuts the wait short.
//
// # Delivery modes
//
// Config.Mode says how the relay learns of committed events. ModePoll, the
// default, polls the table and needs nothing of the server. ModeWAL reads
// the table too, but a temporary logical replication slot tells it of each
// commit at once, whichever process published: choose it for commit→sink
// latency in single milliseconds, at the price of wal_level=logical and a
// slot and WAL sender per relay. ModeMessages, with producers on
// outbox.StorageMessages, delivers straight from a durable slot: the
// cheapest flush, but the slot keeps the WAL while no relay confirms it,
// so bound it with max_slot_wal_keep_size; a slot that goes past it is
// lost (see ModeMessages for how to recover).
//
// WALStatus reports the stream (open, its slot, the last LSN received,
// wakes, restarts, and in ModeMessages a lost slot);
// outboxprom.Metrics.RegisterWAL exports it as txoutbox_relay_wal_*, and
// RegisterReplication exports each slot's retained WAL, active and lost as
// txoutbox_replication_slot_*. txoutbox status and the operator console
// show the same slots, warn when max_slot_wal_keep_size is unbounded while
// the durable slot exists, and report a lost slot with how to recover
// (status exits 1).
//
// # Guarantees
//
// At least once. An event is deleted or marked delivered only after the sink
// accepted it (Send returned nil, or a *BatchError that
// does not name it).
// Every committed event is delivered, or dead-lettered and kept. Events of
// transactions that rolled back never existed for the relay.
//
// Stable id. outbox.Event.ID is the event's id, assigned at Publish and the same on every attempt and every
// relay; consumers dedupe by it.
//
// Order per key. Events with the same key are handed to the sink in the order
// their rows became visible, which is commit order for transactions
// serialized on the entity (both update its row, as handlers do). A key's
// event is not handed over while an earlier event of the key is pending: in
// retry, in flight, or, under PoisonBlock, dead. Several events of one key
// may go in one call to the sink, in order; a sink must then not deliver a
// later one after failing an earlier one (Outcome holds the later ones
// back, as relayhttp and relaywatermill do).
//
// Duplicates, and only in these windows: a relay that stops without
// recording (crash, SIGKILL, lost connection, a ShutdownTimeout that ran
// out) leaves its batch pending, and it is delivered again by whichever
// relay holds the partition next, after LeaseTTL for a dead relay (each
// such stop leaves one batch at most, but the next relay sends those oldest
// rows first: if it too stops before recording them, they come a third
// time); a database crash can lose the last outcomes recorded (they commit
// without waiting for the WAL flush), making those rows pending again; a
// sink that fails a call it in fact carried out (a timeout) gets the events
// again. A relay that cannot renew its leases (the database unreachable,
// the process frozen) stops sending a batch once a lease of it has less
// than LeaseTTL/3 left, and starts none; a request already in flight then
// finishes, so with a sink timeout above LeaseTTL/3 its answer can come
// after the lease ended and another relay took over: duplicates of those
// events may then arrive after their key's later events. Otherwise a
// duplicate comes as a repeat of the key's events from the first one whose
// delivery went unrecorded, in order: a consumer may see 1 2 3 2 3 4, never
// 1 3 2.
//
// Steady state, meaning every relay renews its leases in time, whether
// relays are joining, leaving (Run's context cancelled) or neither: no event
// is delivered by two relays. A relay that joins gets its share when the
// relays holding it finish their batches in flight; one that leaves
// finishes its batch and releases its partitions.
//
// Failures. An event the sink fails (answered with an error, or in a
// request that failed) counts an attempt and is retried after a backoff
// with full jitter, RetryBase doubling per attempt up to RetryMax, or after
// the sink's RetryAfter if longer; meanwhile its key waits and other keys go
// on. An event the sink did not send at all (ErrNotSent: held back behind
// a failed event of its key, after a request that stopped the batch, or when
// the relay cut the batch short) stays pending as it was, with no attempt
// and no wait. When a round delivers nothing and fails retryably, the loop
// backs off, RetryBase doubling up to 4 s (or RetryMax when lower), or the
// sink's RetryAfter if longer, so a sink that is down is not asked again for
// every key of the backlog. That round's events count their attempt; when
// the next round fails the same way, the sink is taken to be down: until it
// delivers again each round sends it a single event as a probe (the first
// of a key, another key each round, so that one event the sink keeps
// failing cannot pass for an outage) and counts no attempt. So delivery resumes within about 4 s of the sink's recovery,
// and an outage does not pile attempts on the backlog, nor dead-letters it.
//
// Dead letters. An event that fails with a Permanent error (HTTP 4xx other
// than 408, 409 and 429) is dead at once, and one that keeps failing
// retryably is dead after MaxAttempts attempts: status 'dead', attempts and
// last_error kept, the row left in the table to inspect. Under PoisonBlock (the
// default) its key's later events stay pending until it is replayed: order
// over progress, with an error log and Hooks.DeadFunc to alert someone.
// Under PoisonSkip the key's later events go on and the dead one waits
// aside. The policy can differ per topic: Config.PoisonPolicyFunc picks it
// from the dead event's topic, and PoisonPolicyFromTopics reads it from the
// Poison key of the topic definitions, so an audit trail can skip while
// invoices keep their order:
//
//	reg, err := topics.Load("topic_definitions.yaml")
//	r, err := relay.New(pool, sink, &relay.Config{PoisonPolicyFunc: relay.PoisonPolicyFromTopics(reg)})
//
// Replay makes dead events pending again with attempts reset; they
// are delivered within LeaseTTL/3.
//
// Crashes and shutdown. A relay that dies holds its partitions until their
// leases expire (LeaseTTL), then the other relays take them over and
// deliver what it left pending. Cancelling Run's context finishes the batch
// in flight, bounded by ShutdownTimeout: when that runs out, the request in
// flight is cancelled, what the sink had accepted is recorded, and the rest
// stays pending for the next owner, with a warning that counts it. Then it
// releases the partitions so the other relays take them at their next lease
// round, and returns nil. Database outages are ridden out: the loop logs,
// backs off and goes on when the pool reconnects.
//
// # Observing it
//
// Logs go to Config.Logger (log/slog). Failed attempts are logged at warn,
// one line per failure: the events of a failed request share one line, with
// their count in the field events. A dead letter is logged at error. Both
// carry the fields event_id, topic, key, attempt and err (of the first
// event, for a request); an event's data is never logged, since it may hold
// personal details. While the sink is down, each failed probe is one warn
// line. Hooks feed metrics (package outboxprom implements them).
//
// Traces: each call to the sink is a span of kind Producer, named
// "send {topic}" ("send" for a batch of several topics), with
// the messaging.* attributes of the OpenTelemetry semantic conventions; an
// sink gets the span in its context. It is linked to the trace context each event was
// published with (the traceparent stored with the event) and, when the call's
// events all come from one trace, is a child of it, so the delivery shows in
// the publishing request's trace. Config.TracerProvider defaults to the
// global provider; until the application installs an SDK nothing is
// recorded, and the relay does not parse the events' traceparents to link
// them.
package relay
