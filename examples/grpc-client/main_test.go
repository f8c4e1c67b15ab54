package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/eventsapi"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestFollowsAcrossADrain: the client prints what is published, and goes on
// after the server drains and a new one takes its place at the same store.
func TestFollowsAcrossADrain(t *testing.T) {
	store, err := eventsapi.NewMemoryStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	start := func() (*eventsapi.Server, *httptest.Server) {
		srv, err := eventsapi.New(&eventsapi.Config{Store: store, Development: true})
		if err != nil {
			t.Fatal(err)
		}
		ts := httptest.NewUnstartedServer(srv)
		ts.Config.Protocols = new(http.Protocols)
		ts.Config.Protocols.SetHTTP1(true)
		ts.Config.Protocols.SetUnencryptedHTTP2(true)
		ts.Start()
		return srv, ts
	}
	srv, ts := start()
	// The next server listens where the client looks: a proxy address that
	// stays, in front of whichever server is up.
	var mu sync.Mutex
	current := ts
	proxy := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		h := current.Config.Handler
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	proxy.Config.Protocols = new(http.Protocols)
	proxy.Config.Protocols.SetHTTP1(true)
	proxy.Config.Protocols.SetUnencryptedHTTP2(true)
	proxy.Start()
	defer proxy.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, func(k string) string {
			return map[string]string{"EVENTS_URL": proxy.URL, "TOPIC": "billing.*"}[k]
		}, &out)
	}()
	post := func(id string) {
		body := `{"specversion":"1.0","id":"` + id + `","source":"t","type":"billing.InvoiceCreated","subject":"` + id + `","data":{"id":"` + id + `"}}`
		resp, err := http.Post(proxy.URL+"/cloudevents", "application/cloudevents+json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	waitFor := func(s string) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !strings.Contains(out.String(), s); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in:\n%s", s, out.String())
			}
		}
	}
	// The client subscribes from the newest event on: post until one shows.
	for i := 0; !strings.Contains(out.String(), "inv-"); i++ {
		post("inv-a" + string(rune('0'+i%10)))
		time.Sleep(50 * time.Millisecond)
	}
	next, nts := start()
	mu.Lock()
	current = nts
	mu.Unlock()
	if err := srv.Drain(ctx, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	_ = srv.Close()
	ts.Close()
	post("inv-after-drain")
	waitFor("key=inv-after-drain")
	cancel()
	<-done
	_ = next.Close()
	nts.Close()
}
