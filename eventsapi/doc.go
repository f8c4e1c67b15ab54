// Package eventsapi is the events API: the server the relay delivers to and
// consumers subscribe to. It stores what it ingests, gives every event a
// stream position, and serves the events back: a query API, live
// subscriptions over server-sent events and WebSocket that resume where a
// dropped connection left off, and per-tenant access.
//
// The routes, the query parameters, the SSE stream and the WebSocket
// protocol are specified in one place, PROTOCOL.md beside this file. This
// doc is the tutorial.
//
// # Serve
//
// A Server is an http.Handler over a Store. For development, the zero
// Config is enough: events in memory, no topic catalog, and development
// access — every right, but only for requests from this machine:
//
//	srv, err := eventsapi.New(nil)
//	if err != nil {
//		return err
//	}
//	defer srv.Close() // ends the open streams; do it before http.Server.Shutdown
//	return http.ListenAndServe("127.0.0.1:8642", srv)
//
// In production, keep events in Postgres (see the PostgreSQL section),
// check them against the topic catalog, and give callers keys:
//
//	keys, err := eventsapi.LoadKeys("keys.yaml")
//	...
//	srv, err := eventsapi.New(&eventsapi.Config{
//		Store:    store,    // a *PostgresStore
//		Registry: registry, // topics.Load("topic_definitions.yaml")
//		Keys:     keys,
//		MaxAge:   7 * 24 * time.Hour,
//	})
//
// "txoutbox serve" is this, as a command.
//
// # Ingest
//
// Point the relay at the server: "txoutbox relay --sink
// http://host:8642 --format cloudevents" (or briteevents) with a key that
// holds the ingest right (--bearer-token-file). The server takes exactly
// what the relay sends in either format, refuses what the topic catalog
// refuses (422: the relay dead-letters it), and stores an event once
// however often it is sent: by event id, and by tenant and dedupe key.
//
// # Query
//
// GET /api/events returns stored events, filtered and paged by position:
//
//	GET /api/events?topic=billing.*&key=inv-1&order=desc&limit=50
//	→ {"events": [...], "next": "1234"}   (pass next back as before=)
//
// # Subscribe
//
// A browser subscribes with EventSource, which resumes by itself after a
// dropped connection (it sends Last-Event-ID, the last position it got):
//
//	const es = new EventSource("/api/stream?topic=billing.*");
//	es.onmessage = (m) => show(JSON.parse(m.data));
//
// With keys configured, the page first trades its key for a one-stream
// ticket (POST /api/tickets) and opens /api/stream?ticket=…; keys never go
// in URLs.
//
// A Go service uses package listener, which reconnects with backoff and
// resumes after the last event its handler finished. Other clients use the
// WebSocket protocol: a session that resumes, subscriptions made of include
// and exclude filters, and a state request — the latest event of every key,
// then the live stream from exactly that position.
//
// Filters are Filter values (Compile checks them): include and exclude
// Selectors over topic, category, entity, action, key, actor, job id and
// causation, with "*" wildcards. A key bound to a tenant only ever sees that
// tenant's events; the server narrows every filter it is given.
//
// # Targets
//
// An event may carry a Target, the place it is about: a collection, a
// project of it, or a layout of that project (the outbox sets it with
// outbox.WithTarget). A selector with a target matches the events at its
// place and at the places above and below it — a subscriber following
// project p1 of collection c1 gets the events of c1 itself, of p1 and of
// p1's layouts, not those of a sibling project:
//
//	f := eventsapi.Filter{Include: []eventsapi.Selector{{
//		Target: eventsapi.Target{Collection: "c1", Project: "p1"},
//	}}}
//
// The query API and the stream take it as ?collection=c1&project=p1, a
// WebSocket selector as "target": {...}. Targets name their levels from the
// top. A server that knows the hierarchy can be given a TargetResolver
// (Config.TargetResolver): publishers may then name a layout alone, the
// server fills in its project and collection, and refuses events whose
// levels contradict it. PROTOCOL.md has the full rule, as a table.
//
// A subscriber that cannot keep up is told so (a slow_consumer notice) and
// disconnected; it resumes from the store. The server encodes each event
// once for every subscriber and keeps a bounded window of recent events in
// memory, so its memory is bounded whatever the clients do.
//
// GET / is a live page: the events as they arrive, filtered as its URL
// says (/?topic=billing.*&tenant=acme), and the rejections (posts or
// events the ingest routes refused) as red rows. "txoutbox sink" runs the
// server on a MemoryStore in development mode, with that page, for
// development and the demo.
//
// # gRPC
//
// The Server also serves the EventService of
// proto/txoutbox/events/v1/events.proto over gRPC, gRPC-Web and Connect
// (connect-go), on its own address: serve it over HTTP/1.1 and unencrypted
// HTTP/2 (or TLS) and gRPC clients dial it directly:
//
//	hs := &http.Server{Addr: "127.0.0.1:8642", Handler: srv, Protocols: new(http.Protocols)}
//	hs.Protocols.SetHTTP1(true)
//	hs.Protocols.SetUnencryptedHTTP2(true)
//
// Package eventsv1 holds the messages and eventsv1connect a client and the
// handler interface. StreamEvents is one bidirectional stream: subscribe
// and unsubscribe by name and Target, publish, ping, resume after a
// position; each answer echoes its request's correlation id, and a bad
// request is answered with an error without ending the stream. Before
// stopping an instance, call Drain: its streams are told to reconnect
// (elsewhere) at a random moment within the window — ReconnectDelay picks
// it — and resume; instances sharing a PostgresStore serve the same
// positions, so a rolling restart loses nothing for a resuming client.
// See Example_eventService.
//
// # Jobs
//
// A worker turns one event into tracked work. It enrolls (POST
// /api/enroll, with the jobs right) for the oldest event of a source topic,
// optionally selected by values in its data, that has no job yet, and gets
// a job: a new event of a target topic, depending on the source, in state
// pending. Every source event gets exactly one job, however many workers
// enroll from however many processes. The worker moves the job on (PATCH
// /api/events/{id}: in_progress, then finished, failed or aborted) and
// reports progress (POST /api/events/{id}/progress), which live
// subscribers receive and nobody stores. Each change moves the job to a new
// position, so subscribers see it happen; a job left alone for
// Config.JobStaleAfter is restarted and enrolled again, up to
// Config.JobMaxRetries. Stores keep jobs by implementing JobStore;
// MemoryStore and PostgresStore do. PROTOCOL.md has the lifecycle.
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
