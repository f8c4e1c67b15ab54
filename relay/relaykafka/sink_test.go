package relaykafka_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relaykafka"
	"github.com/txoutbox/txoutbox/relay/relaytest"
)

// TestConformance runs the sink conformance suite against an in-process
// Kafka cluster, in both value formats, reading the records back with a
// franz-go consumer.
func TestConformance(t *testing.T) {
	t.Parallel()
	for _, format := range []relaykafka.Format{relaykafka.FormatCloudEvents, relaykafka.FormatBriteEvents} {
		t.Run(string(format), func(t *testing.T) {
			t.Parallel()
			relaytest.Run(t, relaytest.Suite{
				Pool: newPool,
				NewSink: func(t *testing.T) (relay.Sink, func() []relaytest.Received) {
					brokers := newCluster(t, kfake.SeedTopics(4, "events"))
					sink := newSink(t, relaykafka.Config{Brokers: brokers, TopicTemplate: "events", Format: format})
					return sink, consume(t, brokers, format, "events").received
				},
			})
		})
	}
}

// TestRelayOrderPerKey relays 3,000 events of 40 keys from a real outbox
// through the Kafka sink, two relays side by side, and consumes them back:
// every event arrives once, each key's in the order published, in one
// partition, with its envelope in the headers.
func TestRelayOrderPerKey(t *testing.T) {
	t.Parallel()
	const n, keys = 3000, 40
	brokers := newCluster(t, kfake.SeedTopics(8, "events.billing"))
	pool := newPool(t)
	ids := publish(t, pool, n, keys, "acme")
	c := consume(t, brokers, relaykafka.FormatCloudEvents, "events.billing")
	sink := newSink(t, relaykafka.Config{Brokers: brokers, TopicTemplate: "events.{category}"})
	for range 2 {
		relaytest.Start(t, pool, sink, &relay.Config{PollInterval: 10 * time.Millisecond})
	}
	waitDrained(t, pool, 30*time.Second)
	got := c.waitDistinct(t, n, 10*time.Second)
	if len(got) != n {
		t.Errorf("%d records for %d events: duplicates without a failure", len(got), n)
	}
	checkOrder(t, got)
	partitionOf := make(map[string]int32)
	for _, r := range got {
		if !ids[r.ID] {
			t.Fatalf("unknown event %q", r.ID)
		}
		if p, ok := partitionOf[r.Key]; ok && p != r.Partition {
			t.Fatalf("key %s in partitions %d and %d", r.Key, p, r.Partition)
		}
		partitionOf[r.Key] = r.Partition
		h := r.Headers
		if h[relaykafka.HeaderTopic] == "" || h[relaykafka.HeaderJobID] != "job-kafka" || h[relaykafka.HeaderTenant] != "acme" ||
			h[relaykafka.HeaderContentType] != "application/cloudevents+json" {
			t.Fatalf("record %s headers %v", r.ID, h)
		}
	}
}

// checkOrder checks that each key's first arrivals carry increasing n, and
// that a key repeats only from an event it delivered before (1 2 3 2 3 4,
// never 1 3 2).
func checkOrder(t *testing.T, got []record) {
	t.Helper()
	last := make(map[string]int)
	seen := make(map[string]bool)
	for _, r := range got {
		var v struct{ N int }
		if err := jsonUnmarshal(r.Data, &v); err != nil {
			t.Fatalf("data %s: %v", r.Data, err)
		}
		if seen[r.ID] {
			continue
		}
		seen[r.ID] = true
		if prev, ok := last[r.Key]; ok && v.N <= prev {
			t.Fatalf("key %s: event %d arrived after %d", r.Key, v.N, prev)
		}
		last[r.Key] = v.N
	}
}

// TestRelayStoppedMidBatch stops a relay while its batch is in Kafka but
// not recorded, as a relay killed then would leave it: every event still
// arrives, the duplicates are that batch's events and no more, and each
// key's first arrivals are in order.
func TestRelayStoppedMidBatch(t *testing.T) {
	t.Parallel()
	const n, keys, batch = 2000, 25, 100
	brokers := newCluster(t, kfake.SeedTopics(4, "events"))
	pool := newPool(t)
	ids := publish(t, pool, n, keys, "")
	c := consume(t, brokers, relaykafka.FormatCloudEvents, "events")
	sink := newSink(t, relaykafka.Config{Brokers: brokers, TopicTemplate: "events"})

	var calls atomic.Int32
	held := make(chan int, 1)
	dying := relay.SinkFunc(func(ctx context.Context, events []*outbox.Event) error {
		if err := sink.Send(ctx, events); err != nil || calls.Add(1) != 3 {
			return err
		}
		held <- len(events) // in Kafka; now die before the relay records it
		<-ctx.Done()
		return ctx.Err()
	})
	// A short lease: when the stopped relay cannot release its partitions in
	// its shutdown timeout (a loaded machine), the next takes them over
	// once the leases run out, well within the wait below.
	_, stop := relaytest.Start(t, pool, dying, &relay.Config{BatchSize: batch, ShutdownTimeout: 50 * time.Millisecond, LeaseTTL: 3 * time.Second})
	var inFlight int
	select {
	case inFlight = <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the relay never sent a third batch")
	}
	stop()

	relaytest.Start(t, pool, sink, &relay.Config{BatchSize: batch, PollInterval: 10 * time.Millisecond, LeaseTTL: 3 * time.Second})
	waitDrained(t, pool, 30*time.Second)
	got := c.waitDistinct(t, n, 10*time.Second)
	for _, r := range got {
		if !ids[r.ID] {
			t.Fatalf("unknown event %q", r.ID)
		}
	}
	if dups := len(got) - n; dups > inFlight {
		t.Errorf("%d duplicates, more than the %d events of the batch in flight", dups, inFlight)
	} else {
		t.Logf("%d events, %d duplicates (the batch in flight held %d)", n, dups, inFlight)
	}
	checkOrder(t, got)
}

// TestBrokerRefusesRecord lowers the broker's message.max.bytes so that one
// event's record is refused, in a one-partition topic where it shares
// batches with other keys' events: it is dead-lettered (permanent), its
// key's later events are held back (not sent, no attempt), and every other
// event is delivered, each key in order.
func TestBrokerRefusesRecord(t *testing.T) {
	t.Parallel()
	brokers := newCluster(t, kfake.SeedTopics(1, "events"), kfake.BrokerConfigs(map[string]string{"message.max.bytes": "4000"}))
	c := consume(t, brokers, relaykafka.FormatCloudEvents, "events")
	sink := newSink(t, relaykafka.Config{Brokers: brokers, TopicTemplate: "events"})
	evs := relaytest.Events(30, 3)
	big := evs[4]             // key-1
	pad := make([]byte, 3000) // random, so that compression does not shrink it under the limit
	_, _ = rand.Read(pad)
	big.Data = fmt.Appendf(nil, `{"key":%q,"n":4,"pad":"%x"}`, big.Key, pad)
	err := sink.Send(t.Context(), evs)
	var be *relay.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("Send = %v, want a *relay.BatchError", err)
	}
	for _, ev := range evs {
		err, failed := be.Failed[ev.ID.String()]
		switch {
		case ev == big:
			if !relay.IsPermanent(err) {
				t.Errorf("the refused event: %v, want a permanent error", err)
			}
		case ev.Key == big.Key && laterThan(ev, big, evs):
			if !errors.Is(err, relay.ErrNotSent) {
				t.Errorf("%s after the refused event: %v, want ErrNotSent", ev.Key, err)
			}
		case failed:
			t.Errorf("%s: %v, want delivered", ev.Key, err)
		}
	}
	got := c.waitDistinct(t, 30-len(be.Failed), 10*time.Second)
	for _, r := range got {
		if _, failed := be.Failed[r.ID]; failed {
			t.Errorf("event %s arrived but was reported failed", r.ID)
		}
	}
	checkOrder(t, got)
}

// laterThan reports whether ev comes after than in evs.
func laterThan(ev, than *outbox.Event, evs []*outbox.Event) bool {
	for _, e := range evs {
		switch e {
		case ev:
			return false
		case than:
			return true
		}
	}
	return false
}

// TestRecordTooLarge fails, without sending it, an event whose record
// cannot fit in MaxBatchBytes; an event whose topic template gives an
// illegal name fails the same way.
func TestRecordTooLarge(t *testing.T) {
	t.Parallel()
	brokers := newCluster(t)
	sink := newSink(t, relaykafka.Config{Brokers: brokers, TopicTemplate: "t.{tenant}", MaxBatchBytes: 2048})
	evs := relaytest.Events(2, 2)
	evs[0].Data = fmt.Appendf(nil, `{"pad":%q}`, strings.Repeat("x", 3000))
	evs[1].Tenant = "acme/eu"
	err := sink.Send(t.Context(), evs)
	var be *relay.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 2 {
		t.Fatalf("Send = %v, want both events failed", err)
	}
	if err := be.Failed[evs[0].ID.String()]; !relay.IsPermanent(err) || !errors.Is(err, relaykafka.ErrRecordTooLarge) {
		t.Errorf("too large: %v", err)
	}
	if err := be.Failed[evs[1].ID.String()]; !relay.IsPermanent(err) || !strings.Contains(err.Error(), `{tenant} "acme/eu"`) {
		t.Errorf("illegal topic: %v", err)
	}
}

// TestBrokersDown sends to a cluster that is gone: the first wave fails
// retryably, the rest is not sent.
func TestBrokersDown(t *testing.T) {
	t.Parallel()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events"))
	if err != nil {
		t.Fatal(err)
	}
	brokers := c.ListenAddrs()
	c.Close()
	sink := newSink(t, relaykafka.Config{Brokers: brokers, TopicTemplate: "events", Timeout: time.Second,
		Opts: []kgo.Opt{kgo.RetryTimeout(time.Second)}})
	evs := relaytest.Events(6, 2) // two waves: each key's events alternate topics... one topic here, so one wave
	evs = append(evs, relaytest.Events(2, 1)...)
	evs[len(evs)-1].Key = evs[0].Key
	err = sink.Send(t.Context(), evs)
	if err == nil || relay.IsPermanent(err) {
		t.Fatalf("Send = %v, want a retryable error", err)
	}
	var be *relay.BatchError
	if errors.As(err, &be) {
		for id, err := range be.Failed {
			if relay.IsPermanent(err) {
				t.Errorf("%s: %v, want retryable", id, err)
			}
		}
	}
}

// TestNew checks the config errors, each naming its field.
func TestNew(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  relaykafka.Config
		want string
	}{
		{relaykafka.Config{}, "Brokers: required"},
		{relaykafka.Config{Brokers: []string{""}}, "Brokers: an empty address"},
		{relaykafka.Config{Brokers: []string{"b:9092"}, Format: "xml"}, `Format: "xml"`},
		{relaykafka.Config{Brokers: []string{"b:9092"}, TopicTemplate: "events/{category}"}, "TopicTemplate"},
		{relaykafka.Config{Brokers: []string{"b:9092"}, TopicTemplate: "{kind}"}, "unknown placeholder {kind}"},
		{relaykafka.Config{Brokers: []string{"b:9092"}, TopicTemplate: "a{b"}, "unbalanced brace"},
		{relaykafka.Config{Brokers: []string{"b:9092"}, NoTenant: "no tenant"}, "NoTenant"},
		{relaykafka.Config{Brokers: []string{"b:9092"}, MaxBatchBytes: 10}, "MaxBatchBytes"},
		{relaykafka.Config{Brokers: []string{"b:9092"}, Opts: []kgo.Opt{kgo.DisableIdempotentWrite()}}, "idempotent producer must stay on"},
		{relaykafka.Config{Brokers: []string{"b:9092"}, Opts: []kgo.Opt{kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite()}}, "idempotent"},
	} {
		_, err := relaykafka.New(&tc.cfg)
		if !errors.Is(err, relay.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want ErrInvalidConfig naming %q", tc.cfg, err, tc.want)
		}
	}
}
