// Package relaymqtt publishes the relay's events to an MQTT broker, so that
// any MQTT client can listen to them, per organisation: devices, services,
// and browsers over MQTT-over-WebSocket.
//
//	sink, err := relaymqtt.New(&relaymqtt.Config{
//		Broker:   "tcp://mqtt.internal:1883",
//		Username: "relay", Password: os.Getenv("MQTT_PASSWORD"),
//		// default: {tenant}/{category}/{entity}/{action}, e.g. acme/billing/Invoice/Created
//	})
//	if err != nil {
//		return err
//	}
//	defer sink.Close()
//	r, err := relay.New(pool, sink, &relay.Config{MessagingSystem: "mqtt"})
//
// Each event is one message, QoS 1, not retained, on the topic
// Config.TopicTemplate builds; its payload is the event as a CloudEvent in
// JSON, envelope included. A client subscribes to acme/# for one
// organisation's events, or to +/billing/Invoice/Created for one kind of
// event everywhere; the broker's ACLs can hold each organisation's
// clients to its own tree. Events without a tenant go under
// Config.NoTenant, "_" by default (_/billing/Invoice/Created). A tenant,
// category, entity or action holding '/', '+', '#' or NUL cannot become a
// topic level, and its event is dead-lettered rather than published where
// another organisation's clients might read it.
//
// # Guarantees
//
// At least once: an event counts as delivered once the broker sent its
// PUBACK, and one whose PUBACK was lost is published again; consumers
// dedupe by the CloudEvent id. In order per key: a key's next event is
// published only after the broker acknowledged the previous one, so this
// does not rest on MQTT's ordered-topic rule (which covers one topic only,
// while a key's events usually go to several: Created, Paid). A broker
// forwards a message to its subscribers as it receives it, and delivers a
// client's QoS 1 subscription in that order: a subscriber that keeps its
// session sees each key's events in order, repeats included (1 2 3 2 3 4,
// never 1 3 2). A subscriber that is not connected misses what was
// published meanwhile unless it keeps a persistent session (clean session
// off, QoS 1 subscription); for a replayable history use the events API
// or Kafka.
//
// Throughput. Events of different keys go out side by side, in waves of one
// event per key, each wave waiting for its PUBACKs. Mosquitto sends its
// PUBACKs with Nagle's algorithm unless set_tcp_nodelay is true, which
// costs each wave of more than one event a TCP delayed acknowledgement
// (about 40 ms on Linux): set it on a broker the relay publishes to.
//
// The client is github.com/eclipse/paho.mqtt.golang (MQTT 3.1.1), the
// Eclipse Paho Go client that has stable releases; Paho's MQTT 5 client
// (github.com/eclipse/paho.golang) would add user properties, so the
// envelope could travel outside the payload, but has no release that this
// project takes yet. MQTT 3.1.1 is all the guarantees above need.
package relaymqtt
