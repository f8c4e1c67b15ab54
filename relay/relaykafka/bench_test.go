package relaykafka_test

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/txoutbox/txoutbox/relay/relaykafka"
	"github.com/txoutbox/txoutbox/relay/relaytest"
)

// BenchmarkSend produces batches of 500 events (the relay's default batch
// size) to an in-process Kafka cluster on 127.0.0.1 and waits for the
// acknowledgements, in one topic of 8 partitions; keys/N is how many keys
// the batch's events spread over (one wave a batch either way). The broker
// runs in the same process, on the same cores: the figure bounds the sink's
// own cost, not a real cluster's.
func BenchmarkSend(b *testing.B) {
	for _, keys := range []int{1, 50, 500} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			brokers := newCluster(b, kfake.SeedTopics(8, "events"))
			sink := newSink(b, relaykafka.Config{Brokers: brokers, TopicTemplate: "events"})
			const n = 500
			evs := relaytest.Events(n, keys)
			for b.Loop() {
				if err := sink.Send(b.Context(), evs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
