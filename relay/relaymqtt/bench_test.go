package relaymqtt_test

import (
	"testing"

	"github.com/txoutbox/txoutbox/relay/relaymqtt"
	"github.com/txoutbox/txoutbox/relay/relaytest"
)

// BenchmarkSend publishes batches of 500 events of 50 keys to Mosquitto,
// QoS 1: ten waves of 50 a batch, each waiting for its PUBACKs.
func BenchmarkSend(b *testing.B) {
	if testing.Short() {
		b.Skip("needs Mosquitto")
	}
	sink, err := relaymqtt.New(&relaymqtt.Config{Broker: broker, TopicTemplate: prefix() + "/" + relaymqtt.TopicTemplateDefault})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	const n = 500
	evs := relaytest.Events(n, 50)
	b.ResetTimer()
	for b.Loop() {
		if err := sink.Send(b.Context(), evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}
