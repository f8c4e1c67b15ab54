// Package inbox is the consumer's side of at-least-once delivery: it
// records which events a consumer has processed, in the consumer's own
// PostgreSQL transaction, so that an event delivered again is recognised
// and skipped, and an event whose processing failed is processed again.
//
// The relay delivers every event at least once: a batch it retries, a
// broker's redelivery after a lost ack, or a replay can bring an event a
// second time. A consumer whose effects are not idempotent by nature
// (adding to a balance, sending a mail, calling another service) records
// the event's id with its effects:
//
//	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
//		first, err := ib.Once(ctx, tx, "balances", eventID)
//		if err != nil || !first {
//			return err // a duplicate: acknowledge it, change nothing
//		}
//		return credit(ctx, tx, event) // the effects, in the same transaction
//	})
//
// Once inserts (consumer, event id) into the inbox table. Commit, and the
// id and the effects are kept together; roll back (the handler failed, the
// process died), and neither is, so the redelivery runs the handler again.
// Two deliveries of one event racing each other serialize on the table's
// primary key: the second waits at Once until the first transaction ends,
// then skips the event if it committed, or processes it if it rolled back.
// Every effect that must happen once goes in the transaction: the id is
// what says whether it happened.
//
// # Consumers
//
// The consumer name says who processed the event. Several consumers in one
// database (a projection, a mailer) each process every event once, apart.
// Keep a name stable: a renamed consumer processes again what the inbox
// remembers under the old one.
//
// # The table
//
// Migrate creates the table (txoutbox_inbox, in Config.Schema or on the
// search_path), and records its progress in its own table, so the inbox
// may share a schema with the outbox's tables; `txoutbox migrate --inbox`
// does the same from the command line, and Migrations returns the SQL
// files for goose, atlas or golang-migrate.
//
// # Retention
//
// The inbox grows by one row per event and consumer. Prune deletes the ids
// recorded more than a given age ago, in bounded batches; run it
// periodically. An id pruned is forgotten, so keep ids for longer than a
// copy can still arrive: the relay's retries, the broker's redelivery, and
// any replay you may run (a week is a common choice).
//
// # Watermill
//
// Package inbox/inboxwatermill does all of this for a watermill router: it
// begins the transaction, skips duplicates, hands the handler the
// transaction and commits after it.
package inbox
