// Package relaytest is the conformance suite of relay sinks: the tests
// every [relay.Sink] must pass, whichever destination it delivers to. The
// sinks of this module run it (relayhttp against an events API, relaywatermill
// against NATS JetStream and RabbitMQ, relaykafka against an in-process Kafka
// broker, relaymqtt against Mosquitto, a no-op sink), and a sink of your own
// runs it the same way, as watermill's pub/sub implementations run
// watermill's tests:
//
//	func TestConformance(t *testing.T) {
//		relaytest.Run(t, relaytest.Suite{
//			NewSink: func(t *testing.T) (relay.Sink, func() []relaytest.Received) {
//				dest := newTestDestination(t)
//				return mysink.New(dest.URL), dest.Received
//			},
//			Pool: newTestDatabase, // a *pgxpool.Pool on a database with the outbox tables
//		})
//	}
//
// What it checks: a batch is delivered whole, each key's events in order,
// with their ids and data; an empty batch is fine; a sink keeps no event
// after Send returns (the relay reuses them); Send is safe for concurrent
// use; a nil error means delivered, even when the context was cancelled;
// and a relay running on the sink drains an outbox of committed events.
package relaytest
