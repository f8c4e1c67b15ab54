package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/internal/testlog"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// eventsAPI is an events API in process, on 127.0.0.1, that says when a
// stream opens.
type eventsAPI struct {
	store  *eventsapi.MemoryStore
	url    string
	opened chan struct{} // a value per stream opened
}

func startEventsAPI(t *testing.T) *eventsAPI {
	t.Helper()
	store, err := eventsapi.NewMemoryStore(nil)
	if err != nil {
		t.Fatal(err)
	}
	api, err := eventsapi.New(&eventsapi.Config{Store: store, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	e := &eventsAPI{store: store, opened: make(chan struct{}, 16)}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/stream" {
			w = &openedWriter{ResponseWriter: w, opened: e.opened}
		}
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		_ = api.Close() // ends the streams, which hs.Close would wait for
		hs.Close()
		_ = store.Close()
	})
	e.url = hs.URL
	return e
}

// openedWriter reports a stream's 200: the server answers once the stream
// is open, so every event stored after it reaches the stream.
type openedWriter struct {
	http.ResponseWriter
	opened chan<- struct{}
}

func (w *openedWriter) WriteHeader(code int) {
	if code == http.StatusOK {
		w.opened <- struct{}{}
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets the server flush the stream through the writer.
func (w *openedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// add stores an event of billing.Invoice{action} about key.
func (e *eventsAPI) add(t *testing.T, action, key string) {
	t.Helper()
	ev := eventsapi.Event{
		ID: fmt.Sprintf("%s-%s-%d", key, action, time.Now().UnixNano()), Topic: "billing.Invoice" + action,
		Category: "billing", Entity: "Invoice", Action: action, Key: key, Tenant: "acme",
		Data: json.RawMessage(fmt.Sprintf(`{"id":%q}`, key)),
	}
	if _, err := e.store.Append(t.Context(), []eventsapi.Event{ev}); err != nil {
		t.Fatal(err)
	}
}

// printed returns the lines run printed so far.
func printed(out *testlog.Buffer) []string {
	return strings.Split(strings.TrimSpace(out.String()), "\n")
}

// running is one run of the example.
type running struct {
	out    *testlog.Buffer // written by run's listener, read by the test
	cancel context.CancelFunc
	done   chan error
}

func start(env map[string]string) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{out: &testlog.Buffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- run(ctx, func(k string) string { return env[k] }, r.out) }()
	return r
}

// stopAfter waits until the run printed n lines, stops it and returns them.
func (r *running) stopAfter(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.out.String() == "" || len(printed(r.out)) < n {
		if time.Now().After(deadline) {
			r.cancel()
			t.Fatalf("printed %q, want %d lines", printed(r.out), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.cancel()
	if err := <-r.done; !errors.Is(err, context.Canceled) {
		t.Errorf("run = %v, want context.Canceled", err)
	}
	return printed(r.out)
}

func waitOpened(t *testing.T, api *eventsAPI) {
	t.Helper()
	select {
	case <-api.opened:
	case <-time.After(10 * time.Second):
		t.Fatal("the listener opened no stream")
	}
}

func position(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestResume runs the example against an events API in process: it prints
// the events stored while it runs and saves the position of the last; run
// again, it prints only those stored since, and with TOPIC only that
// topic's.
func TestResume(t *testing.T) {
	api := startEventsAPI(t)
	posFile := filepath.Join(t.TempDir(), "listener.position")
	env := map[string]string{"EVENTS_URL": api.url, "POSITION_FILE": posFile}

	// First run: no position saved, so it starts at the newest event.
	r := start(env)
	waitOpened(t, api)
	api.add(t, "Created", "inv-1")
	api.add(t, "Created", "inv-2")
	api.add(t, "Paid", "inv-1")
	got := r.stopAfter(t, 3)
	want := []string{
		`1 billing.InvoiceCreated key=inv-1 tenant=acme {"id":"inv-1"}`,
		`2 billing.InvoiceCreated key=inv-2 tenant=acme {"id":"inv-2"}`,
		`3 billing.InvoicePaid key=inv-1 tenant=acme {"id":"inv-1"}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("first run printed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if p := position(t, posFile); p != "3" {
		t.Errorf("position file holds %q after the first run, want 3", p)
	}

	// Stopped: more events arrive. The second run resumes after 3.
	api.add(t, "Paid", "inv-2")
	api.add(t, "Cancelled", "inv-3")
	got = start(env).stopAfter(t, 2)
	if len(got) != 2 || !strings.HasPrefix(got[0], "4 billing.InvoicePaid key=inv-2 ") || !strings.HasPrefix(got[1], "5 billing.InvoiceCancelled key=inv-3 ") {
		t.Errorf("second run printed %q, want events 4 and 5 only", got)
	}
	if p := position(t, posFile); p != "5" {
		t.Errorf("position file holds %q after the second run, want 5", p)
	}

	// With a topic filter: only the paid invoice of those that came since.
	api.add(t, "Created", "inv-4")
	api.add(t, "Paid", "inv-4")
	env["TOPIC"] = "billing.*Paid"
	got = start(env).stopAfter(t, 1)
	if len(got) != 1 || !strings.HasPrefix(got[0], "7 billing.InvoicePaid key=inv-4 ") {
		t.Errorf("third run printed %q, want event 7 only", got)
	}
}

func TestNoURL(t *testing.T) {
	err := run(t.Context(), func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "EVENTS_URL") {
		t.Errorf("run without EVENTS_URL = %v", err)
	}
}
