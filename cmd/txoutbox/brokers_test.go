package main

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/streadway/amqp"
	"github.com/txoutbox/txoutbox/relay/relaywatermill"
)

// requireServer skips the test, saying why, when nothing listens on addr.
func requireServer(t *testing.T, addr, what string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Skipf("SKIPPED: no %s on %s (%v); start one to run this test", what, addr, err)
	}
	_ = conn.Close()
}

// natsJetStream connects to the NATS server on 127.0.0.1:4222 until the
// test ends.
func natsJetStream(t *testing.T) nats.JetStreamContext {
	t.Helper()
	nc, err := nats.Connect("nats://127.0.0.1:4222")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// runRelayUntilDrained runs txoutbox relay on the database at url with
// args until the outbox has no pending event, then stops it, and returns
// what it logged.
func runRelayUntilDrained(t *testing.T, url string, pool *pgxpool.Pool, args ...string) string {
	t.Helper()
	var stdout, stderr lockedBuffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- dispatch(ctx, append([]string{"relay", "--database-url", url, "--admin-addr", ""}, args...), &stdout, &stderr)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var pending int
		if err := pool.QueryRow(t.Context(), `SELECT count(*) FROM txoutbox_events WHERE status = 'pending'`).Scan(&pending); err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("relay stopped: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events still pending after 30s\n%s", pending, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("relay = %v\n%s", err, stderr.String())
	}
	return stderr.String()
}

// TestNATSConnectError checks that a NATS server that does not answer is
// named, without the URL's password, in the relay's error.
func TestNATSConnectError(t *testing.T) {
	t.Parallel()
	const addr = "127.0.0.1:1" // a loopback port nothing listens on
	err := dispatch(t.Context(), []string{"relay", "--database-url", "postgres://127.0.0.1:1/x", "--admin-addr", "",
		"--sink", "nats://relay:s3cret@" + addr}, io.Discard, io.Discard)
	if want := "relay: --sink: connect to NATS at nats://relay@" + addr + ": "; err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("relay to a NATS server that is not there: %v; want an error starting %q", err, want)
	}
}

// TestRelayToNATS relays to the NATS JetStream server on 127.0.0.1:4222
// with --sink nats:// and reads every event back from the stream the relay
// created, on the subject --topic-template made.
func TestRelayToNATS(t *testing.T) {
	t.Parallel()
	requireServer(t, "127.0.0.1:4222", "NATS server with JetStream (nats-server -js)")
	url, pool := newOutboxDB(t)
	const n = 120
	ids := insertEvents(t, pool, n)
	tag := "t" + uuid.NewString()[:8]
	stream := "TXOUTBOX_TEST_" + tag
	js := natsJetStream(t)
	t.Cleanup(func() { _ = js.DeleteStream(stream) })

	runRelayUntilDrained(t, url, pool, "--sink", "nats://127.0.0.1:4222", "--nats-stream", stream,
		"--topic-template", tag+".{category}.{entity}.{action}")

	info, err := js.StreamInfo(stream)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n {
		t.Fatalf("stream holds %d messages, want %d", info.State.Msgs, n)
	}
	sub, err := js.SubscribeSync(tag+".>", nats.BindStream(stream), nats.OrderedConsumer())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	for range n {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		id := msg.Header.Get(nats.MsgIdHdr)
		if !ids[id] || msg.Subject != tag+".billing.Invoice.Created" || msg.Header.Get(relaywatermill.MetaTopic) != "billing.InvoiceCreated" {
			t.Fatalf("unexpected message %q on %s: %v", id, msg.Subject, msg.Header)
		}
		delete(ids, id)
	}
	if len(ids) != 0 {
		t.Errorf("%d events missing from the stream", len(ids))
	}
}

func TestSubjectWithin(t *testing.T) {
	for _, tc := range []struct {
		sub, of string
		want    bool
	}{
		{"*.*", "*.*", true},
		{"billing.*", "*.*", true},
		{"billing.InvoiceCreated", "*.*", true},
		{"billing.>", "*.*", false},
		{"events.*.*.*", "*.*", false},
		{"*.*", "events.*.*.*", false},
		{"events.*.*.*", "events.>", true},
		{"events", "events.>", false},
		{"events.>", "events.>", true},
		{"events.>", ">", true},
		{"*.*", "billing.*", false},
		{"billing", "billing", true},
		{"billing", "*", true},
		{"*", "billing", false},
	} {
		if got := subjectWithin(tc.sub, tc.of); got != tc.want {
			t.Errorf("subjectWithin(%q, %q) = %v, want %v", tc.sub, tc.of, got, tc.want)
		}
	}
}

// TestRelayNATSStreamWithoutTemplateSubjects starts the relay on a stream
// that exists but does not take the subjects --topic-template makes, as
// the README's two NATS commands leave it when run one after the other:
// the relay must refuse to start, naming both, rather than publish events
// that no stream takes and that fail until they are dead.
func TestRelayNATSStreamWithoutTemplateSubjects(t *testing.T) {
	t.Parallel()
	requireServer(t, "127.0.0.1:4222", "NATS server with JetStream (nats-server -js)")
	url, pool := newOutboxDB(t)
	insertEvents(t, pool, 1)
	tag := "t" + uuid.NewString()[:8]
	stream := "TXOUTBOX_TEST_" + tag
	js := natsJetStream(t)
	// The stream a relay with --topic-template tag.{topic} creates.
	if _, err := js.AddStream(&nats.StreamConfig{Name: stream, Subjects: []string{tag + ".*.*"}, Storage: nats.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(stream) })

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var stdout, stderr lockedBuffer
	err := dispatch(ctx, []string{"relay", "--database-url", url, "--admin-addr", "", "--sink", "nats://127.0.0.1:4222",
		"--nats-stream", stream, "--topic-template", tag + ".{category}.{entity}.{action}"}, &stdout, &stderr)
	want := "--nats-stream: stream " + stream + " takes " + tag + ".*.*, not " + tag + ".*.*.*"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("relay = %v; want an error containing %q\n%s", err, want, stderr.String())
	}
}

// TestRelayToRabbitMQ relays to the RabbitMQ server on 127.0.0.1:5672 with
// --sink amqp:// and consumes every event from a queue bound to the
// relay's exchange by routing key.
func TestRelayToRabbitMQ(t *testing.T) {
	t.Parallel()
	requireServer(t, "127.0.0.1:5672", "RabbitMQ server")
	const amqpURL = "amqp://guest:guest@127.0.0.1:5672/"
	url, pool := newOutboxDB(t)
	const n = 120
	ids := insertEvents(t, pool, n)
	exchange := "txoutbox_test_" + uuid.NewString()[:8]

	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.ExchangeDeclare(exchange, "topic", true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ch.ExchangeDelete(exchange, false, false) })
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "billing.*", exchange, false, nil); err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}

	runRelayUntilDrained(t, url, pool, "--sink", amqpURL, "--amqp-exchange", exchange)

	timeout := time.After(10 * time.Second)
	for len(ids) > 0 {
		select {
		case d := <-deliveries:
			if !ids[d.MessageId] || d.RoutingKey != "billing.InvoiceCreated" || d.Type != "billing.InvoiceCreated" || d.Headers[relaywatermill.MetaKey] == nil {
				t.Fatalf("unexpected message %q (%s): %v", d.MessageId, d.RoutingKey, d.Headers)
			}
			delete(ids, d.MessageId)
		case <-timeout:
			t.Fatalf("%d of %d events not received", len(ids), n)
		}
	}
}
