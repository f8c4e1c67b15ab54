// Package eventsapi is the events API: the server the relay delivers to and
// consumers subscribe to. It stores what it ingests, gives every event a
// stream position, and serves the events back: a query API, live
// subscriptions over server-sent events and WebSocket that resume where a
// dropped connection left off, per-tenant access, and a live page.
//
// It is an http.Handler, to mount in a service or run with
// "txoutbox serve":
//
//	store, _ := eventsapi.NewMemoryStore(nil) // or a PostgresStore
//	srv, _ := eventsapi.New(&eventsapi.Config{Store: store, Registry: reg})
//	defer srv.Close()
//	http.ListenAndServe("127.0.0.1:8642", srv)
//
// The routes, the query parameters, the SSE stream and the WebSocket
// protocol are documented in one place, PROTOCOL.md beside this file.
//
// GET / is a live page: the events as they arrive, filtered as its URL
// says (/?topic=billing.*&tenant=acme), and the rejections (posts or
// events the ingest routes refused) as red rows. "txoutbox sink" runs the
// server on a MemoryStore in development mode, with that page, for
// development and the demo.
//
// # Positions
//
// Every stored event gets a position, and a subscriber resumes from the
// last position it handled. That is only safe if positions become visible
// in order: a reader that has seen position P must never later find an
// event below P. A sequence alone does not give that: two concurrent
// transactions take 7 and 8, the one with 8 commits first, a reader passes
// 8, and 7 appears behind it.
//
// MemoryStore numbers and stores events under one mutex. PostgresStore
// takes positions from a sequence only while holding a transaction-scoped
// advisory lock, which every append transaction takes and which PostgreSQL
// releases only once the commit is visible: the next transaction's positions
// are larger and become visible later. Several server instances may share
// one PostgresStore's tables; the lock is the database's, so the rule holds
// across them. Each instance appends the calls that wait for the lock
// together, in one transaction.
//
// The store tests prove the rule: eight goroutines append concurrently
// (through eight PostgresStores on one database) while a reader tails with
// Read(After: last); the reader sees every event, once, in order.
//
// # PostgreSQL
//
// Migrate once (it is idempotent and safe to run from every instance),
// then open the store on a pool:
//
//	if err := eventsapi.MigratePostgres(ctx, pool, nil); err != nil {
//		return err
//	}
//	store, err := eventsapi.NewPostgresStore(ctx, pool, nil)
//	if err != nil {
//		return err
//	}
//	defer store.Close()
package eventsapi
