package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/txoutbox/txoutbox/outbox"
)

// natsURL is the NATS server with JetStream the broker test uses.
const natsURL = "nats://127.0.0.1:4222"

// TestRelayToNATSJetStream relays through watermill-nats's JetStream
// publisher, unchanged, to a real NATS server and reads the events back
// with its subscriber: any watermill publisher is a sink.
func TestRelayToNATSJetStream(t *testing.T) {
	t.Parallel()
	conn, err := net.DialTimeout("tcp", "127.0.0.1:4222", 2*time.Second)
	if err != nil {
		t.Skipf("SKIPPED: no NATS server on 127.0.0.1:4222 (%v). Start one with JetStream to run this test: "+
			"nats-server -js -a 127.0.0.1 -p 4222  (Debian/Ubuntu: apt-get install nats-server)", err)
	}
	_ = conn.Close()

	// A stream of its own per run; stream names allow no dots.
	stream := "txoutbox_test_" + uuid.NewString()[:8]
	logger := watermill.NopLogger{}
	js := wmnats.JetStreamConfig{AutoProvision: true, TrackMsgId: true, DurablePrefix: stream}
	pub, err := wmnats.NewPublisher(wmnats.PublisherConfig{
		URL:       natsURL,
		Marshaler: &wmnats.NATSMarshaler{},
		JetStream: js,
	}, logger)
	if err != nil {
		t.Fatalf("NATS publisher: %v", err)
	}
	sub, err := wmnats.NewSubscriber(wmnats.SubscriberConfig{
		URL:            natsURL,
		Unmarshaler:    &wmnats.NATSMarshaler{},
		JetStream:      js,
		AckWaitTimeout: 5 * time.Second,
		CloseTimeout:   5 * time.Second,
	}, logger)
	if err != nil {
		t.Fatalf("NATS subscriber: %v", err)
	}
	t.Cleanup(func() {
		_ = sub.Close()
		_ = pub.Close()
		deleteStream(t, stream)
	})

	pool := newTestDB(t)
	const n, keys = 300, 12
	insertEvents(t, pool, cycleKeys(n, keys)...)
	want := make(map[string]bool, n)
	rows, err := pool.Query(t.Context(), `SELECT id::text FROM txoutbox_events`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		want[id] = true
	}
	if rows.Err() != nil || len(want) != n {
		t.Fatalf("%d events inserted: %v", len(want), rows.Err())
	}

	startRelay(t, pool, pub, &Config{BatchSize: 100, TopicFunc: func(*message.Message) string { return stream }})

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	msgs, err := sub.Subscribe(ctx, stream)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	var got []delivered
	seen := make(map[string]bool)
	for len(seen) < n {
		var msg *message.Message
		select {
		case msg = <-msgs:
		case <-ctx.Done():
			t.Fatalf("read %d of %d events back from NATS before the deadline", len(seen), n)
		}
		if msg == nil {
			t.Fatalf("subscription closed after %d of %d events", len(seen), n)
		}
		msg.Ack()
		if !want[msg.UUID] {
			t.Fatalf("unexpected message %s from NATS", msg.UUID)
		}
		if seen[msg.UUID] {
			continue // at-least-once: a redelivery is allowed, not a loss
		}
		seen[msg.UUID] = true
		if msg.Metadata.Get(outbox.MetaTopic) != "billing.InvoiceCreated" || msg.Metadata.Get(outbox.MetaJobID) != "job-1" {
			t.Errorf("message %s lost its envelope: %v", msg.UUID, msg.Metadata)
		}
		var data struct {
			Key string `json:"key"`
			N   int    `json:"n"`
		}
		if err := json.Unmarshal(msg.Payload, &data); err != nil {
			t.Fatalf("payload of %s: %v", msg.UUID, err)
		}
		got = append(got, delivered{ID: msg.UUID, Key: msg.Metadata.Get(outbox.MetaKey), N: data.N})
	}
	checkOrder(t, got)
	waitFor(t, 30*time.Second, "the relay to record every event delivered", func() bool {
		return count(t, pool, "status = 'pending'") == 0
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
