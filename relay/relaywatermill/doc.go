// Package relaywatermill delivers the relay's events to any watermill
// publisher: NATS JetStream, AMQP, Kafka, Redis Streams, or a publisher of
// your own. It is how a relay feeds a broker that consumers subscribe to.
//
//	pub, err := nats.NewPublisher(natsConfig, logger) // any message.Publisher
//	sink, err := relaywatermill.New(pub, nil)
//	r, err := relay.New(pool, sink, nil)
//
// Each event becomes a watermill message (see Message): UUID = the event
// id, payload = its data, metadata = its envelope under the Meta* keys, so
// a watermill subscriber on the other side of the broker sees them all. The
// events of a batch go out in one Publish call per run of the same topic
// (Config.TopicFunc), without reordering any key.
package relaywatermill
