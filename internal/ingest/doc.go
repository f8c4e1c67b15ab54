// Package ingest serves the routes an events API takes events on, in the
// two wire formats the relay's HTTP sink speaks, with the checks and the
// answers of the bc-events API. The events API (package eventsapi) serves
// them through a [Handler], with its storage ([Config.StoreFunc]) and its
// access control, as a wrapper around the routes ([Handler.Register]). The
// development sink (internal/sinkserver), which is that events API, wraps
// the same routes ([Patterns]) to count posts and fail them on purpose
// ([WithRecordFaults]).
//
// Routes:
//
//	POST /events            one bc-events body (201 {"eventId","jobId"})
//	POST /events/bulk/      a JSON array of up to 250 (201 {"failedRecords","records"});
//	                        also without the trailing slash
//	POST / , /cloudevents   application/cloudevents-batch+json (202) or
//	                        application/cloudevents+json, one event (201)
//
// What is checked, in order:
//
//   - the body: at most [Config.MaxBodyBytes] (413), JSON of the format's
//     shape (400). A bc-events body is decoded strictly: exactly category,
//     entity, action, data and actor.
//   - the headers of a bc-events post, which carry what its body has no
//     field for (see internal/wire): the event id (Idempotency-Key, or
//     X-Txoutbox-Event-Ids for a bulk post, one per record), the job id, the
//     tenant, the traceparent and the dedupe keys. A malformed header is 400.
//     An event without an id is given a new UUIDv7.
//   - the rules of the bc-events EVENT_SCHEMA on a bc-events body's values,
//     with or without a registry: category ^[a-z]+$, entity ^([A-Z][a-z]+)+$,
//     action ^[A-Z][a-z]+$, data a non-empty object, actor {id of 5
//     characters or more, type user|service|third-party}. A single post
//     breaking them is 422 ValidationError; a bulk post with such records is
//     refused as a whole, 422, naming each record's index. Names are matched
//     exactly, never looked up in another spelling.
//   - the envelope limits ([MaxIDBytes], [MaxTenantBytes], [MaxKeyBytes]) and,
//     with a [Config.Registry], the topic (it must exist, named exactly) and
//     the data (it must match the topic's schema). A single event or a
//     CloudEvents batch failing them is 422 (the batch all or nothing, every
//     failed event named by index); a bc-events bulk post answers 201 with
//     the failed records marked ValidationError and explained by index.
//
// Then the events that passed go to [Config.StoreFunc] in one call, which
// answers for each whether it was a duplicate. A single event that was is
// answered 409 Conflict, which senders read as delivered; duplicates in a
// bulk post or batch are answered like the others and counted.
//
// Every error answer carries the events API's error object, and the fields
// bc-events clients read:
//
//	{"error": {"code": "ValidationError", "message": "…"},
//	 "errorType": "ValidationError", "errorMessage": "…"}
package ingest
