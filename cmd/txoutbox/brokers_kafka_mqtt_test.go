package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/txoutbox/txoutbox/relay/relaykafka"
)

// TestRelayToKafka relays with --sink kafka:// to an in-process Kafka
// cluster that takes SASL SCRAM-SHA-256, the credentials in the URL, and
// reads every event back in order per key from the topic the URL's path
// names; the password shows in no log line.
func TestRelayToKafka(t *testing.T) {
	t.Parallel()
	const user, pass = "relay", "s3cret-kafka"
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "events.billing"),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", user, pass))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	url, pool := newOutboxDB(t)
	const n = 500
	ids := insertEvents(t, pool, n)

	stderr := runRelayUntilDrained(t, url, pool, "--sink",
		"kafka://"+user+":"+pass+"@"+strings.Join(cluster.ListenAddrs(), ",")+"/events.{category}?sasl=scram-sha-256")
	if strings.Contains(stderr, pass) {
		t.Errorf("the log shows the password:\n%s", stderr)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics("events.billing"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	last := make(map[string]int)
	for got := 0; got < n; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("%d of %d records read: %v", got, n, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			got++
			var ce struct {
				ID   string
				Data struct{ N int }
			}
			if err := json.Unmarshal(r.Value, &ce); err != nil || !ids[ce.ID] {
				t.Fatalf("record %s: %v", r.Value, err)
			}
			delete(ids, ce.ID)
			if prev, ok := last[string(r.Key)]; ok && ce.Data.N <= prev {
				t.Fatalf("key %s: %d after %d", r.Key, ce.Data.N, prev)
			}
			last[string(r.Key)] = ce.Data.N
			if h := r.Headers; len(h) == 0 || h[0].Key != relaykafka.HeaderID || string(h[0].Value) != ce.ID {
				t.Fatalf("record %s headers %v", ce.ID, h)
			}
		})
	}
}

// TestRelayToMQTT relays with --sink mqtt:// to the Mosquitto on
// 127.0.0.1:1883 and reads every event from a subscription to the
// template's tree.
func TestRelayToMQTT(t *testing.T) {
	t.Parallel()
	requireServer(t, "127.0.0.1:1883", "MQTT broker (mosquitto -d -c /etc/mosquitto/mosquitto.conf)")
	url, pool := newOutboxDB(t)
	const n = 200
	ids := insertEvents(t, pool, n)
	prefix := "txoutbox-test-" + uuid.NewString()[:8]
	msgs := make(chan mqtt.Message, n)
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://127.0.0.1:1883").SetClientID(prefix))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Subscribe(prefix+"/#", 1, func(_ mqtt.Client, m mqtt.Message) { msgs <- m }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	runRelayUntilDrained(t, url, pool, "--sink", "mqtt://127.0.0.1:1883/"+prefix+"/{tenant}/{category}/{entity}/{action}")

	timeout := time.After(10 * time.Second)
	for len(ids) > 0 {
		select {
		case m := <-msgs:
			var ce struct{ ID string }
			if err := json.Unmarshal(m.Payload(), &ce); err != nil || !ids[ce.ID] || m.Topic() != prefix+"/_/billing/Invoice/Created" {
				t.Fatalf("message on %s: %s (%v)", m.Topic(), m.Payload(), err)
			}
			delete(ids, ce.ID)
		case <-timeout:
			t.Fatalf("%d of %d events not received", len(ids), n)
		}
	}
}

// TestBrokerSinkURLErrors checks the refusals of kafka:// and mqtt:// sink
// URLs, none of which shows the password.
func TestBrokerSinkURLErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ sink, want string }{
		{"mqtt://relay:s3cret@127.0.0.1:1883/{tenant}/#", "takes no wildcard"},
		{"mqtt://relay:s3cret@127.0.0.1:1883/{tenant}/+/x", "wildcards"},
		{"mqtt://relay:s3cret@127.0.0.1:1/{tenant}", "--sink: tcp://127.0.0.1:1: connect to the MQTT broker"},
		{"mqtt://a:1883,b:1883/x", "names one broker"},
		{"kafka://relay:s3cret@127.0.0.1:9092/events/{category}", "TopicTemplate"},
		{"kafka://relay:s3cret@127.0.0.1:9092/x?sasl=gssapi", "sasl=gssapi is not"},
		{"kafka://127.0.0.1:9092,/x", "an empty host"},
		{"kafka://127.0.0.1:9092/{kind}", "unknown placeholder {kind}"},
	} {
		err := dispatch(t.Context(), []string{"relay", "--database-url", "postgres://127.0.0.1:1/x", "--admin-addr", "",
			"--sink", tc.sink}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("--sink %s: %v; want an error containing %q", tc.sink, err, tc.want)
		}
	}
}

// TestRelayToKafkaKilled kills a relay process with SIGKILL while it
// produces to Kafka, then runs a second relay: every event arrives, each
// key's first arrivals in order, and the duplicates are at most the one
// batch the killed relay had in Kafka but had not recorded.
func TestRelayToKafkaKilled(t *testing.T) {
	t.Parallel()
	bin := buildBinary(t)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "events"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	url, pool := newOutboxDB(t)
	const n, batch = 2000, 100
	ids := insertEvents(t, pool, n)

	type arrival struct {
		id, key string
		n       int
	}
	var mu sync.Mutex
	var got []arrival
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics("events"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
				var ce struct {
					ID   string
					Data struct{ N int }
				}
				_ = json.Unmarshal(r.Value, &ce)
				mu.Lock()
				got = append(got, arrival{ce.ID, string(r.Key), ce.Data.N})
				mu.Unlock()
			})
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cl.Close() })
	arrived := func() (total, distinct int) {
		mu.Lock()
		defer mu.Unlock()
		seen := make(map[string]bool)
		for _, a := range got {
			seen[a.id] = true
		}
		return len(got), len(seen)
	}

	sink := "kafka://" + strings.Join(cluster.ListenAddrs(), ",") + "/events"
	args := []string{"relay", "--database-url", url, "--sink", sink, "--batch-size", fmt.Sprint(batch), "--lease", "1s"}
	cmd, _, _ := startBinary(t, bin, io.Discard, args...)
	waitFor(t, 30*time.Second, "a fifth of the events in Kafka", func() bool { _, d := arrived(); return d >= n/5 })
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killedAt, _ := arrived()

	runRelayUntilDrained(t, url, pool, args[3:]...)
	waitFor(t, 10*time.Second, "every event in Kafka", func() bool { _, d := arrived(); return d == n })
	mu.Lock()
	defer mu.Unlock()
	last := make(map[string]int)
	seen := make(map[string]bool)
	for _, a := range got {
		if !ids[a.id] {
			t.Fatalf("unknown event %q", a.id)
		}
		if seen[a.id] {
			continue
		}
		seen[a.id] = true
		if prev, ok := last[a.key]; ok && a.n <= prev {
			t.Fatalf("key %s: %d arrived after %d", a.key, a.n, prev)
		}
		last[a.key] = a.n
	}
	dups := len(got) - n
	if dups > batch {
		t.Errorf("%d duplicates after one kill, more than one batch (%d)", dups, batch)
	}
	t.Logf("%d events, %d in Kafka when killed, %d duplicates", n, killedAt, dups)
}

// TestRedactBrokerSinkURL checks that the sink URL the relay logs at start
// keeps no password, with one host or several.
func TestRedactBrokerSinkURL(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"kafka://relay:s3cret@h1:9092,h2:9092/events.{category}?sasl=scram-sha-256",
		"kafkas://relay:s3cret@h1:9092/events",
		"mqtt://relay:s3cret@127.0.0.1:1883/{tenant}/{category}/{entity}/{action}",
	} {
		if got := redactURL(raw); strings.Contains(got, "s3cret") || !strings.Contains(got, "relay") {
			t.Errorf("redactURL(%s) = %s", raw, got)
		}
	}
}
