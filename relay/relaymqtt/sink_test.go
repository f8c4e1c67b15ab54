package relaymqtt_test

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relaymqtt"
	"github.com/txoutbox/txoutbox/relay/relaytest"
	"github.com/txoutbox/txoutbox/topics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Wrap(m)) }

// broker is the Mosquitto the tests publish to and subscribe on.
const (
	brokerAddr = "127.0.0.1:1883"
	broker     = "tcp://" + brokerAddr
)

// requireBroker skips the test, saying how to start one, when no MQTT
// broker listens on brokerAddr.
func requireBroker(t *testing.T) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", brokerAddr, 2*time.Second)
	if err != nil {
		t.Skipf("SKIPPED: no MQTT broker on %s (%v). To run this test, start Mosquitto: mosquitto -d -c /etc/mosquitto/mosquitto.conf (Debian: apt-get install mosquitto)", brokerAddr, err)
	}
	_ = conn.Close()
}

// message is one message as a subscriber got it.
type message struct {
	relaytest.Received
	Topic  string
	Tenant string
}

type subscriber struct {
	mu  sync.Mutex
	got []message
}

// subscribe subscribes to filter, QoS 1, until the test ends.
func subscribe(t *testing.T, filter string) *subscriber {
	t.Helper()
	s := &subscriber{}
	opts := mqtt.NewClientOptions().AddBroker(broker).SetClientID("test-sub-" + uuid.NewString()[:8]).
		SetCleanSession(true).SetAutoReconnect(false)
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect: %v", tok.Error())
	}
	tok := c.Subscribe(filter, 1, func(_ mqtt.Client, m mqtt.Message) {
		ev, err := wire.DecodeCloudEvent(m.Payload())
		if err != nil {
			t.Errorf("message on %s: %v: %s", m.Topic(), err, m.Payload())
			return
		}
		s.mu.Lock()
		s.got = append(s.got, message{Received: relaytest.Received{ID: ev.ID, Key: ev.Key, Data: ev.Data}, Topic: m.Topic(), Tenant: ev.Tenant})
		s.mu.Unlock()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return s
}

func (s *subscriber) messages() []message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]message(nil), s.got...)
}

func (s *subscriber) received() []relaytest.Received {
	var out []relaytest.Received
	for _, m := range s.messages() {
		out = append(out, m.Received)
	}
	return out
}

// waitFor waits until n messages arrived, or fails the test after wait.
func (s *subscriber) waitFor(t *testing.T, n int, wait time.Duration) []message {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		got := s.messages()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d messages arrived within %s", len(got), n, wait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newSink(t *testing.T, cfg relaymqtt.Config) *relaymqtt.Sink {
	t.Helper()
	cfg.Broker = cmpOr(cfg.Broker, broker)
	s, err := relaymqtt.New(&cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// prefix returns a topic prefix of the test's own.
func prefix() string { return "txoutbox-test-" + uuid.NewString()[:8] }

// TestConformance runs the sink conformance suite against Mosquitto, with a
// subscriber on the sink's topic tree.
func TestConformance(t *testing.T) {
	t.Parallel()
	requireBroker(t)
	relaytest.Run(t, relaytest.Suite{
		Pool: newPool,
		NewSink: func(t *testing.T) (relay.Sink, func() []relaytest.Received) {
			p := prefix()
			sub := subscribe(t, p+"/#")
			return newSink(t, relaymqtt.Config{TopicTemplate: p + "/" + relaymqtt.TopicTemplateDefault}), sub.received
		},
	})
}

func newPool(t *testing.T) *pgxpool.Pool {
	pool := pgtest.NewPool(t)
	if err := outbox.Migrate(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	return pool
}

// TestRelayPerTenant relays events of two tenants, and some without one,
// from a real outbox: a subscriber per organisation gets exactly its
// organisation's events, each key in order, none twice; events without a
// tenant go under NoTenant.
func TestRelayPerTenant(t *testing.T) {
	t.Parallel()
	requireBroker(t)
	p := prefix()
	acme, globex, none := subscribe(t, p+"/acme/#"), subscribe(t, p+"/globex/#"), subscribe(t, p+"/_/#")
	pool := newPool(t)
	const perTenant, keys = 300, 10
	publish(t, pool, perTenant, keys, "acme")
	publish(t, pool, perTenant, keys, "globex")
	publish(t, pool, perTenant, keys, "")
	sink := newSink(t, relaymqtt.Config{TopicTemplate: p + "/" + relaymqtt.TopicTemplateDefault})
	relaytest.Start(t, pool, sink, &relay.Config{PollInterval: 10 * time.Millisecond})
	for tenant, sub := range map[string]*subscriber{"acme": acme, "globex": globex, "": none} {
		got := sub.waitFor(t, perTenant, 30*time.Second)
		time.Sleep(100 * time.Millisecond) // let any extra message show
		got = sub.messages()
		if len(got) != perTenant {
			t.Errorf("tenant %q: %d messages, want %d", tenant, len(got), perTenant)
		}
		last := make(map[string]int)
		for _, m := range got {
			level := cmpOr(tenant, "_")
			if m.Tenant != tenant || !strings.HasPrefix(m.Topic, p+"/"+level+"/billing/Invoice/") {
				t.Fatalf("subscriber of %q got %s (tenant %q)", tenant, m.Topic, m.Tenant)
			}
			var n int
			if _, err := fmt.Sscanf(string(field(m.Data)), "%d", &n); err != nil {
				t.Fatal(err)
			}
			if prev, ok := last[m.Key]; ok && n <= prev {
				t.Fatalf("tenant %q key %s: event %d after %d", tenant, m.Key, n, prev)
			}
			last[m.Key] = n
		}
	}
}

// field returns the n of data {"id": ..., "n": n}.
func field(data []byte) string {
	_, after, _ := strings.Cut(string(data), `"n":`)
	return strings.TrimRight(after, "}")
}

const topicsYAML = `DefaultCategory: billing
Topics:
  - {Action: Created, Entity: Invoice, Description: An invoice was issued., Schema: {type: object, required: [id, n]}}
  - {Action: Paid, Entity: Invoice, Description: An invoice was paid., Schema: {type: object, required: [id, n]}}
`

// publish commits n events over keys keys, alternating Created and Paid.
func publish(t *testing.T, pool *pgxpool.Pool, n, keys int, tenant string) {
	t.Helper()
	reg, err := topics.Parse("mqtt.yaml", []byte(topicsYAML))
	if err != nil {
		t.Fatal(err)
	}
	client, err := outbox.New(pool, reg, &outbox.Config{Source: "relaymqtt-test"})
	if err != nil {
		t.Fatal(err)
	}
	var opts []outbox.SessionOption
	if tenant != "" {
		opts = append(opts, outbox.WithTenant(tenant))
	}
	tx, err := pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(t.Context()) //nolint:errcheck // a no-op after Commit
	sess := client.ServiceSession("job-mqtt", opts...)
	for i := range n {
		action := []string{"Created", "Paid"}[i%2]
		if err := sess.Publish(t.Context(), action, "Invoice", map[string]any{"id": fmt.Sprintf("%s-inv-%d", tenant, i%keys), "n": i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := sess.Flush(t.Context(), tx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// TestIllegalTopic fails permanently an event whose tenant would leave its
// topic level, and holds back its key's later events; others go.
func TestIllegalTopic(t *testing.T) {
	t.Parallel()
	requireBroker(t)
	p := prefix()
	sub := subscribe(t, p+"/#")
	sink := newSink(t, relaymqtt.Config{TopicTemplate: p + "/{tenant}/{topic}"})
	evs := relaytest.Events(6, 2)
	for _, ev := range evs {
		ev.Tenant = "acme"
	}
	evs[2].Tenant = "acme/../globex" // key-0
	evs[3].Tenant = "ac+me"          // key-1
	err := sink.Send(t.Context(), evs)
	var be *relay.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 4 {
		t.Fatalf("Send = %v, want 4 events failed", err)
	}
	for i, ev := range evs {
		err := be.Failed[ev.ID.String()]
		switch i {
		case 0, 1:
			if err != nil {
				t.Errorf("event %d: %v, want delivered", i, err)
			}
		case 2, 3:
			if !relay.IsPermanent(err) {
				t.Errorf("event %d: %v, want permanent", i, err)
			}
		default:
			if !errors.Is(err, relay.ErrNotSent) {
				t.Errorf("event %d: %v, want held back", i, err)
			}
		}
	}
	if got := sub.waitFor(t, 2, 5*time.Second); got[0].Topic != p+"/acme/billing.InvoiceCreated" {
		t.Errorf("first message on %s", got[0].Topic)
	}
}

// TestBrokerUnreachable fails a Send to a broker that is not there,
// retryably.
func TestBrokerUnreachable(t *testing.T) {
	t.Parallel()
	sink := newSink(t, relaymqtt.Config{Broker: "tcp://127.0.0.1:1", Timeout: 2 * time.Second})
	err := sink.Send(t.Context(), relaytest.Events(3, 3))
	if err == nil || relay.IsPermanent(err) || !strings.Contains(err.Error(), "connect to the MQTT broker") {
		t.Errorf("Send = %v, want a retryable connect error", err)
	}
}

// TestNew checks the config errors, each naming its field.
func TestNew(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  relaymqtt.Config
		want string
	}{
		{relaymqtt.Config{}, "Broker: required"},
		{relaymqtt.Config{Broker: "http://host:1883"}, "Broker"},
		{relaymqtt.Config{Broker: "tcp://u:secret@host:1883"}, "credentials go in Username"},
		{relaymqtt.Config{Broker: broker, TopicTemplate: "events/+/{action}"}, "wildcards"},
		{relaymqtt.Config{Broker: broker, TopicTemplate: "events/#"}, "wildcards"},
		{relaymqtt.Config{Broker: broker, TopicTemplate: "$SYS/{action}"}, "broker's own"},
		{relaymqtt.Config{Broker: broker, TopicTemplate: "{tenant}/{kind}"}, "unknown placeholder {kind}"},
		{relaymqtt.Config{Broker: broker, NoTenant: "a/b"}, "NoTenant"},
		{relaymqtt.Config{Broker: broker, Timeout: -time.Second}, "Timeout"},
	} {
		_, err := relaymqtt.New(&tc.cfg)
		if !errors.Is(err, relay.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("New(%+v) = %v, want ErrInvalidConfig naming %q", tc.cfg, err, tc.want)
		}
	}
}
