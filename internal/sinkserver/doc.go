// Package sinkserver is a local events API for development, tests and the
// demo: it accepts what the relay's HTTP sink sends, in both wire formats,
// checks it against topic_definitions.yaml, keeps it, and shows it live.
//
//	reg, _ := topics.Load("topic_definitions.yaml")
//	srv, _ := sinkserver.New(&sinkserver.Config{Registry: reg})
//	defer srv.Close()
//	http.ListenAndServe("127.0.0.1:8080", srv)
//
// Routes:
//
//	POST /events            one bc-events body (201 {"eventId","jobId"})
//	POST /events/bulk/      a JSON array of up to 250 (201 {"failedRecords","records"})
//	POST / , /cloudevents   application/cloudevents-batch+json (202) or
//	                        application/cloudevents+json, one event (201)
//	GET  /                  a live page of arriving events
//	GET  /stream            the events as server-sent events (?after=SEQ)
//	GET  /api/events        the events held, as JSON (?after=SEQ&limit=N&topic=T)
//	GET  /api/stats         counts and publish→receipt latency, as JSON
//	GET  /healthz           200 once the server can take events
//
// It answers as DESIGN's events API does: malformed JSON or a body of the
// wrong shape is 400; an unknown topic or data failing its schema is 422
// (permanent). A bc-events bulk post is checked record by record and answers
// 201 with the failed records marked "ValidationError"; a CloudEvents batch
// is all or nothing, 422 for the whole batch, which the relay's sink narrows
// down by resending the events one by one.
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
