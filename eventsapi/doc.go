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
// # Positions
//
// Every stored event gets a position, and a subscriber resumes from the
// last position it handled. That is only safe if positions become visible
// in order: a reader that has seen position P must never later find an
// event below P. See Store for how each store keeps that rule.
package eventsapi
