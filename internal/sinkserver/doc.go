// Package sinkserver is the events API (package eventsapi) in development
// mode, as "txoutbox sink", the demo and the tests run it: an
// eventsapi.Server on a bounded eventsapi.MemoryStore, without keys (it
// answers requests from this machine only), plus what development needs
// beside the API:
//
//   - [Server.Stats] and GET /api/stats: counts by outcome and topic, and
//     publish→receipt latency;
//   - [Config.JSONL]: every stored event as one JSON line;
//   - [Config.OnEventFunc]: every stored event, in position order, as it
//     is stored (txoutbox sink prints a line per event with it);
//   - fault injection for the relay's tests: [Server.FailNext] makes the
//     next posts fail with a chosen status, [Server.FailNextRecords] makes
//     records of the next bc-events bulk posts fail with a bc-events error
//     code.
//
// Usage:
//
//	reg, _ := topics.Load("topic_definitions.yaml")
//	srv, _ := sinkserver.New(&sinkserver.Config{Registry: reg})
//	defer srv.Close()
//	http.ListenAndServe("127.0.0.1:8642", srv)
//
// Everything else is the events API's, as eventsapi/PROTOCOL.md describes
// it: the ingest routes the relay posts to (POST /events, /events/bulk/,
// / and /cloudevents), their checks and answers; the query API (GET
// /api/events); the streams (GET /api/stream, /api/ws); the live page (GET
// /), which shows the events as they arrive and the rejections as red rows.
// Every rejection is also logged at level Warn to [Config.Logger] and kept
// among the last eventsapi.RejectionsHeld ([Server.Rejections]).
//
// Duplicates are recognised by event id, and by tenant and dedupe key,
// among the last [Config.DedupeWindow] events. A single event seen before
// is answered 409 Conflict, which senders read as "delivered"; duplicates
// in a batch are answered like the others (2xx, "Success") and not stored
// again. Stats counts them.
package sinkserver
