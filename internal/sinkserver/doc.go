// Package sinkserver is a local events API for development, tests and the
// demo: it accepts what the relay's HTTP sink sends, in both wire formats,
// checks it against topic_definitions.yaml, keeps it, and shows it live.
//
//	reg, _ := topics.Load("topic_definitions.yaml")
//	srv, _ := sinkserver.New(&sinkserver.Config{Registry: reg})
//	defer srv.Close()
//	http.ListenAndServe("127.0.0.1:8642", srv)
//
// Routes:
//
//	POST /events            one bc-events body (201 {"eventId","jobId"})
//	POST /events/bulk/      a JSON array of up to 250 (201 {"failedRecords","records"})
//	POST / , /cloudevents   application/cloudevents-batch+json (202) or
//	                        application/cloudevents+json, one event (201)
//	GET  /                  a live page of arriving events and rejections
//	GET  /stream            the events as server-sent events (?after=SEQ),
//	                        and the rejections as "rejected" ones
//	GET  /api/events        the events held, as JSON (?after=SEQ&limit=N&topic=T)
//	GET  /api/stats         counts and publish→receipt latency, as JSON
//	GET  /healthz           200 once the server can take events
//
// The ingest routes, their checks and their answers are internal/ingest's,
// which the events API (package eventsapi) serves too. It answers as
// DESIGN's events API does: malformed JSON or a body of the
// wrong shape is 400; an unknown topic or data failing its schema is 422
// (permanent). A bc-events body is held to the rules of the bc-events
// EVENT_SCHEMA, with or without a Registry: category ^[a-z]+$, entity
// ^([A-Z][a-z]+)+$, action ^[A-Z][a-z]+$, data a non-empty object, actor
// {id of 5 characters or more, type user|service|third-party, other fields
// allowed}, no other field; a value breaking them is 422 "ValidationError".
// Topic names are matched exactly, never looked up in another spelling.
//
// A bc-events bulk post whose records break EVENT_SCHEMA is refused as a
// whole (400 or 422) naming each such record's index; otherwise it is
// checked against the Registry record by record and answers 201 with the
// failed records marked "ValidationError" and explained, by index, in
// "errors". A CloudEvents batch is all or nothing, 422 for the whole batch.
// The relay's sink narrows a refused batch down by resending the events one
// by one.
//
// Every rejection, a post answered 400, 413 or 415 or an event failing
// validation, is shown as accepted events are: on the live page, in
// [Server.Rejections], and logged at level Warn to [Config.Logger].
//
// Duplicates are recognised by event id (the CloudEvents id; for bc-events
// the Idempotency-Key of a single post or the X-Txoutbox-Event-Ids of a bulk
// post) among the last [Config.DedupeWindow] ids. A single event seen before
// is answered 409 Conflict, which senders read as "delivered"; duplicates in
// a batch are answered like the others (2xx, "Success") and not stored again.
// Stats counts them.
//
// For fault tests, [Server.FailNext] makes the next requests fail with a
// chosen status, and [Server.FailNextRecords] makes records of the next bulk
// posts fail with a bc-events error code.
package sinkserver
