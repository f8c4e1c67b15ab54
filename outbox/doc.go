// Package outbox publishes domain events through the transactional outbox:
// events are written into a Postgres table inside the caller's transaction,
// so they become visible exactly when the business rows do, and the relay
// (package relay) delivers them afterwards, at least once.
//
// Build one Client at start-up, then open a Session per unit of work:
//
//	reg, err := topics.Load("topic_definitions.yaml")
//	client, err := outbox.New(pool, reg, &outbox.Config{Source: "billing-api"})
//
//	// per request (the middleware packages do this for you):
//	sess := client.UserSession(userID, jobID)
//	tx, err := pool.Begin(ctx)
//	defer tx.Rollback(ctx)
//	// ... business writes in tx ...
//	err = sess.Publish(ctx, "Created", "Invoice", invoice) // validated, buffered
//	err = sess.Flush(ctx, tx)                             // one INSERT, in tx
//	err = tx.Commit(ctx)                                  // events commit with the invoice
//	sess.Committed()                                      // wake an embedded relay (OnCommit)
//
// Committed runs the client's OnCommit hooks once the transaction has
// committed; a relay running in the same process registers its Wake there
// (client.OnCommit(r.Wake)) and delivers the events at once instead of at
// its next poll. InTx and the middleware packages call it for you.
//
// Publish refuses an unknown topic (*topics.UnknownTopicError) or data that
// fails the topic's JSON Schema (*topics.ValidationError) before anything is
// buffered. Flush writes all buffered events in one round trip and never
// commits or rolls back the caller's transaction. A session in
// PublishImmediately mode writes each event at once instead, for code with
// no transaction; those events are not atomic with anything else.
//
// Publish also checks the session's envelope as the events API will: an
// actor id it refuses (shorter than five characters, or not UTF-8) fails
// with ErrInvalidActor, a traceparent that is not W3C trace context with
// ErrInvalidTraceparent.
//
// An event may be scoped to a place with WithTarget: a collection, a
// project of a collection, or a layout of a project. The target travels
// with the event to the events API (package eventsapi), whose subscribers
// receive the events of the places they follow, and of the places above
// and below them:
//
//	err = sess.Publish(ctx, "Paid", "Invoice", paid,
//		outbox.WithTarget(outbox.Target{Collection: "acme", Project: "q4-close"}))
//
// A target names its levels from the top; one that skips a level fails
// Publish with a *TargetError (ErrInvalidTarget).
//
// In a web service the middleware (packages outboxecho and outboxhttp)
// opens each request's session and stores it in the request's context;
// the handler, or code it calls, takes it back with FromContext:
//
//	sess, ok := outbox.FromContext(ctx)
//	if !ok {
//		return outbox.ErrNoSession // the route is not behind the middleware
//	}
//
// The table is created by Migrate (or by your migration tool, from
// Migrations or GooseMigrations). Rows are written through watermill-sql's
// Publisher with an outbox-specific SchemaAdapter, one column per envelope
// field. The relay (package relay) reads them back as Event values and
// hands them to a sink.
//
// # Message storage
//
// A client configured with Storage: StorageMessages writes no row: Flush
// emits the buffered events as one transactional logical decoding message
// (pg_logical_emit_message) in the caller's transaction, which the
// write-ahead log carries to a relay in relay.ModeMessages in commit order
// once, and only if, the transaction commits. It costs the producer less than
// a table row (no heap tuple, no index entries, nothing for the relay to
// delete or vacuum to clean), and the relay records only the events it could
// not deliver, as rows, so dead letters, inspect and replay keep working.
//
// The messages are kept for the relay by a durable replication slot, which
// Migrate creates with MigrateConfig.Messages (or CreateMessageSlot); Flush
// fails with ErrNoSlot while the slot is missing or lost, so that no event is
// emitted that nobody would read. The mode needs wal_level=logical and a role
// with the REPLICATION attribute; see the README's "Delivery modes" for what
// a slot retains while its relay is down, and the setting that bounds it.
package outbox
