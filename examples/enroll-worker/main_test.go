package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/eventsapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// lockedBuffer collects the worker's output across goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Two workers share three invoices, one of which the condition leaves out:
// each selected invoice gets one finished job.
func TestWorkers(t *testing.T) {
	store, err := eventsapi.NewMemoryStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	api, err := eventsapi.New(&eventsapi.Config{Store: store, Development: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(api)
	t.Cleanup(func() {
		_ = api.Close()
		hs.Close()
		_ = store.Close()
	})
	var evs []eventsapi.Event
	for i, cur := range []string{"EUR", "USD", "EUR"} {
		evs = append(evs, eventsapi.Event{ID: "inv-" + string(rune('1'+i)), Topic: "billing.InvoiceCreated", Key: "inv-" + string(rune('1'+i)),
			Data: json.RawMessage(`{"currency":"` + cur + `"}`)})
	}
	if _, err := store.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"EVENTS_URL": hs.URL, "CONDITION": `payload/currency="EUR"`}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out lockedBuffer
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := run(ctx, func(k string) string { return env[k] }, &out); !errors.Is(err, context.Canceled) {
				t.Errorf("run: %v", err)
			}
		})
	}
	for strings.Count(out.String(), "\n") < 2 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	got := out.String()
	if strings.Count(got, "finished (exported inv-1)") != 1 || strings.Count(got, "finished (exported inv-3)") != 1 || strings.Contains(got, "inv-2") {
		t.Errorf("output:\n%s", got)
	}
	jobs, err := store.Read(context.Background(), &eventsapi.ReadRequest{Match: eventsapi.MustCompile(eventsapi.Filter{
		Include: []eventsapi.Selector{{Topic: []string{"billing.InvoiceExported"}}}})})
	if err != nil || len(jobs) != 2 {
		t.Fatalf("jobs %+v, %v", jobs, err)
	}
	for _, j := range jobs {
		if j.Status != eventsapi.JobFinished || j.Sender != "enroll-worker" {
			t.Errorf("job %+v", j)
		}
	}
}

func TestBadEnvironment(t *testing.T) {
	for _, env := range []map[string]string{
		{},
		{"EVENTS_URL": "http://127.0.0.1:1", "CONDITION": "payload/x"},
		{"EVENTS_URL": "http://127.0.0.1:1", "CONDITION": "payload/x=not json"},
	} {
		if err := run(context.Background(), func(k string) string { return env[k] }, &lockedBuffer{}); err == nil {
			t.Errorf("%v: no error", env)
		}
	}
}
