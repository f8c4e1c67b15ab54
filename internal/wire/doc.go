// Package wire encodes outbox events for the events API and decodes them on
// the receiving side, in the two wire formats the relay's HTTP sink speaks.
//
// The relay reads an event from the outbox as an outbox.Event; [FromOutbox]
// turns it into an [Event], which the encoders write and the decoders read:
//
//	ev, err := wire.FromOutbox(e)
//	body, err := wire.AppendCloudEventBatch(nil, []wire.Event{ev})
//
// The two formats:
//
//   - [FormatBriteEvents], the bc-events API contract. The body is exactly
//     {category, entity, action, data, actor: {id, type}} because the API
//     rejects any other field; everything else rides in headers: the job id
//     in x-britecore-job-id (so one request carries one job's events), the
//     event id in Idempotency-Key for a single event, and for a bulk request
//     a digest of the ids in Idempotency-Key plus the ids themselves, in body
//     order, in X-Txoutbox-Event-Ids; the dedupe keys of the events that have
//     one in X-Txoutbox-Dedupe-Keys; the events' target in X-Txoutbox-Target
//     (so one request carries one target's events). See [BriteHeaders].
//   - [FormatCloudEvents], CloudEvents 1.0 in the JSON event format, batched
//     as application/cloudevents-batch+json. type is the topic name, subject
//     the ordering key, and the envelope fields the CloudEvents core has no
//     name for travel as extension attributes (actorid, actortype, jobid,
//     partitionkey, traceparent, tenant, causationid, dedupekey, and the
//     target's targetcollection, targetproject and targetlayout).
//
// The CloudEvents envelope is written by hand: it is a dozen string fields,
// and the official SDK would pull in a logging stack for no gain here.
package wire
