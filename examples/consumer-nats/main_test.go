package main

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
)

// TestConsumeDedupes publishes events to a JetStream stream, some twice as
// a retried relay batch would, and checks each is processed once.
func TestConsumeDedupes(t *testing.T) {
	conn, err := net.DialTimeout("tcp", "127.0.0.1:4222", 2*time.Second)
	if err != nil {
		t.Skipf("SKIPPED: no NATS server with JetStream on 127.0.0.1:4222 (%v)", err)
	}
	_ = conn.Close()
	nc, err := nats.Connect("nats://127.0.0.1:4222")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	tag := "c" + uuid.NewString()[:8]
	stream := "TXOUTBOX_CONSUMER_" + tag
	if _, err := js.AddStream(&nats.StreamConfig{Name: stream, Subjects: []string{tag + ".>"}, Storage: nats.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = js.DeleteStream(stream) }()

	const n = 20
	for i := range n {
		m := nats.NewMsg(tag + ".billing.InvoiceCreated")
		m.Header.Set(eventIDHeader, uuid.NewString())
		m.Data = []byte(`{}`)
		copies := 1 + i%2 // every other event arrives twice
		for range copies {
			if _, err := js.PublishMsg(m); err != nil {
				t.Fatal(err)
			}
		}
	}
	var processed atomic.Int32
	seen := map[string]int{} // written by consume's goroutine only
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- consume(ctx, js, stream, tag+".>", "test", func(m *nats.Msg) {
			if seen[m.Header.Get(eventIDHeader)]++; seen[m.Header.Get(eventIDHeader)] > 1 {
				t.Errorf("event %s processed twice", m.Header.Get(eventIDHeader))
			}
			if processed.Add(1) == n {
				cancel()
			}
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatalf("%d of %d events processed in 20s", processed.Load(), n)
	}
	info, err := js.StreamInfo(stream)
	if err != nil {
		t.Fatal(err)
	}
	if got := processed.Load(); got != n || info.State.Msgs != n+n/2 {
		t.Errorf("processed %d of %d messages in the stream; want %d of %d", got, info.State.Msgs, n, n+n/2)
	}
}
