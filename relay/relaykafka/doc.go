// Package relaykafka delivers the relay's events to Apache Kafka, one record
// per event, with franz-go's idempotent producer and acks=all.
//
//	sink, err := relaykafka.New(&relaykafka.Config{
//		Brokers:       []string{"kafka-1:9092", "kafka-2:9092"},
//		TopicTemplate: "events.{category}", // default: {topic}, e.g. billing.InvoiceCreated
//	})
//	if err != nil {
//		return err
//	}
//	defer sink.Close()
//	r, err := relay.New(pool, sink, &relay.Config{MessagingSystem: "kafka"})
//
// A record's key is the event's ordering key, so the default partitioner
// puts each key's events in one partition, where Kafka keeps their order.
// The value is the event as one CloudEvent in JSON (structured mode of the
// CloudEvents Kafka binding) or, with FormatBriteEvents, the bc-events body.
// Headers carry the event id, its topic, job id, tenant, traceparent and
// dedupe key (Header*), so a consumer can route and dedupe without reading
// the value.
//
// # Guarantees
//
// At least once, in order per key. A record counts as delivered when every
// in-sync replica has it (acks=all). The idempotent producer makes the
// client's own retries write nothing twice and keeps each partition's
// records in the order produced, failing the ones after a failed record.
// The sink sends the events of a key that go to one Kafka topic in one
// wave, a key whose events switch topics in one wave per switch, and after
// a failure it sends none of the key's later events in that call
// (relay.ErrNotSent). Consumers see duplicates only in the relay's windows
// (a relay that dies between the broker's acknowledgement and recording
// it, a timeout on a produce Kafka in fact wrote): the repeat of a key's
// events from the first unrecorded one, in order. They dedupe by the id
// header.
//
// A key's order holds within one Kafka topic. With a template that sends
// one key's events to several topics (the default {topic} sends
// InvoiceCreated and InvoicePaid to two), each topic has the key's events
// in order, and the relay still hands them over in order, but a consumer
// of both topics may read them interleaved differently. Use one topic per
// entity ("events.{category}") when consumers need the whole sequence.
//
// Franz-go is used rather than a watermill-kafka publisher because its
// producer is idempotent, which watermill-kafka's client (sarama) does not
// turn on: without it a retried request can write a batch twice, after the
// key's later events.
package relaykafka
