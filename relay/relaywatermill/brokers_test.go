package relaywatermill_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/pkg/amqp"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relaytest"
	"github.com/txoutbox/txoutbox/relay/relaywatermill"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Wrap(m),
		// The brokers' clients keep a goroutine or two past Close.
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go.(*Conn).flusher"),
		goleak.IgnoreAnyFunction("github.com/streadway/amqp.(*Connection).heartbeater"))
}

// Broker servers the tests use; a machine without them skips the tests,
// saying how to start them.
const (
	natsURL = "nats://127.0.0.1:4222"
	amqpURL = "amqp://guest:guest@127.0.0.1:5672/"
)

func newPool(t *testing.T) *pgxpool.Pool {
	pool := pgtest.NewPool(t)
	if err := outbox.Migrate(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	return pool
}

func requireServer(t *testing.T, addr, how string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Skipf("SKIPPED: no server on %s (%v). To run this test, start one: %s", addr, err, how)
	}
	_ = conn.Close()
}

// collector reads a subscription in the background and keeps what arrived.
type collector struct {
	mu  sync.Mutex
	got []relaytest.Received
}

func (c *collector) run(msgs <-chan *message.Message) {
	for msg := range msgs {
		msg.Ack()
		c.mu.Lock()
		c.got = append(c.got, relaytest.Received{
			ID: msg.UUID, Key: msg.Metadata.Get(relaywatermill.MetaKey), Data: msg.Payload,
		})
		c.mu.Unlock()
	}
}

func (c *collector) received() []relaytest.Received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]relaytest.Received(nil), c.got...)
}

// subscribe starts a collector on topic of sub until the test ends.
func subscribe(t *testing.T, sub message.Subscriber, topic string) func() []relaytest.Received {
	ctx, cancel := context.WithCancel(context.Background())
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		cancel()
		t.Fatalf("subscribe: %v", err)
	}
	c := &collector{}
	done := make(chan struct{})
	go func() { defer close(done); c.run(msgs) }()
	t.Cleanup(func() { cancel(); _ = sub.Close(); <-done })
	return c.received
}

// newSink returns a relaywatermill sink on pub that publishes every event
// to topic.
func newSink(t *testing.T, pub message.Publisher, topic string) relay.Sink {
	sink, err := relaywatermill.New(pub, &relaywatermill.Config{TopicFunc: func(*outbox.Event) string { return topic }})
	if err != nil {
		t.Fatal(err)
	}
	return sink
}

// TestNATSJetStream runs the sink conformance suite through watermill-nats's
// JetStream publisher, unchanged, against a real NATS server, reading the
// events back with its subscriber.
func TestNATSJetStream(t *testing.T) {
	requireServer(t, "127.0.0.1:4222", "nats-server -js -a 127.0.0.1 -p 4222 (Debian: apt-get install nats-server)")
	relaytest.Run(t, relaytest.Suite{
		Pool: newPool,
		NewSink: func(t *testing.T) (relay.Sink, func() []relaytest.Received) {
			// A stream of its own per sink; stream names allow no dots.
			stream := "txoutbox_test_" + uuid.NewString()[:8]
			js := wmnats.JetStreamConfig{AutoProvision: true, TrackMsgId: true, DurablePrefix: stream}
			pub, err := wmnats.NewPublisher(wmnats.PublisherConfig{
				URL: natsURL, Marshaler: &wmnats.NATSMarshaler{}, JetStream: js,
			}, watermill.NopLogger{})
			if err != nil {
				t.Fatalf("NATS publisher: %v", err)
			}
			sub, err := wmnats.NewSubscriber(wmnats.SubscriberConfig{
				URL: natsURL, Unmarshaler: &wmnats.NATSMarshaler{}, JetStream: js,
				AckWaitTimeout: 5 * time.Second, CloseTimeout: 5 * time.Second,
			}, watermill.NopLogger{})
			if err != nil {
				t.Fatalf("NATS subscriber: %v", err)
			}
			t.Cleanup(func() { _ = pub.Close(); deleteStream(t, stream) })
			received := subscribe(t, sub, stream)
			return newSink(t, pub, stream), received
		},
	})
}

// TestAMQP runs the sink conformance suite through watermill-amqp's
// publisher against a real RabbitMQ, a durable queue per sink.
func TestAMQP(t *testing.T) {
	requireServer(t, "127.0.0.1:5672", "rabbitmq-server -detached (Debian: apt-get install rabbitmq-server)")
	relaytest.Run(t, relaytest.Suite{
		Pool: newPool,
		NewSink: func(t *testing.T) (relay.Sink, func() []relaytest.Received) {
			queue := "txoutbox_test_" + uuid.NewString()[:8]
			cfg := wmamqp.NewDurableQueueConfig(amqpURL)
			cfg.Queue.AutoDelete = true
			pub, err := wmamqp.NewPublisher(cfg, watermill.NopLogger{})
			if err != nil {
				t.Fatalf("AMQP publisher: %v", err)
			}
			sub, err := wmamqp.NewSubscriber(cfg, watermill.NopLogger{})
			if err != nil {
				t.Fatalf("AMQP subscriber: %v", err)
			}
			t.Cleanup(func() { _ = pub.Close() })
			received := subscribe(t, sub, queue)
			return newSink(t, pub, queue), received
		},
	})
}

// deleteStream removes a test's JetStream stream so runs do not pile up
// streams on the shared server.
func deleteStream(t *testing.T, name string) {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Logf("delete stream %s: %v", name, err)
		return
	}
	defer nc.Close()
	jsm, err := nc.JetStream()
	if err == nil {
		err = jsm.DeleteStream(name)
	}
	if err != nil {
		t.Logf("delete stream %s: %v", name, fmt.Errorf("jetstream: %w", err))
	}
}
