package relayhttp

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/eventsapi/listener"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/topics"
)

// TestTargetsFromPublishToSubscriber follows targets the whole way, in both
// wire formats: events published with outbox.WithTarget at places of a
// hierarchy are flushed, relayed over HTTP to an events API, and listeners
// following a collection, a project and a layout receive exactly the
// events of their place and of the places above and below it. The events
// share one ordering key, so they arrive in publish order, and the last
// one, at a place every listener follows, ends each listener's wait.
func TestTargetsFromPublishToSubscriber(t *testing.T) {
	t.Parallel()
	places := []struct {
		name   string
		target outbox.Target
	}{
		{"none", outbox.Target{}},
		{"c1", outbox.Target{Collection: "c1"}},
		{"c1/p1", outbox.Target{Collection: "c1", Project: "p1"}},
		{"c1/p1/l1", outbox.Target{Collection: "c1", Project: "p1", Layout: "l1"}},
		{"c1/p1/l2", outbox.Target{Collection: "c1", Project: "p1", Layout: "l2"}},
		{"c1/p2", outbox.Target{Collection: "c1", Project: "p2"}},
		{"c2/p1/l1", outbox.Target{Collection: "c2", Project: "p1", Layout: "l1"}},
		{"c1/p1/l1 again", outbox.Target{Collection: "c1", Project: "p1", Layout: "l1"}}, // reached by every listener
	}
	listeners := []struct {
		target   eventsapi.Target
		receives []string
	}{
		{eventsapi.Target{Collection: "c1"}, []string{"c1", "c1/p1", "c1/p1/l1", "c1/p1/l2", "c1/p2", "c1/p1/l1 again"}},
		{eventsapi.Target{Collection: "c1", Project: "p1"}, []string{"c1", "c1/p1", "c1/p1/l1", "c1/p1/l2", "c1/p1/l1 again"}},
		{eventsapi.Target{Collection: "c1", Project: "p1", Layout: "l1"}, []string{"c1", "c1/p1", "c1/p1/l1", "c1/p1/l1 again"}},
	}
	reg, err := topics.Parse("topics.yaml", []byte(e2eTopics))
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []Format{FormatCloudEvents, FormatBriteEvents} {
		t.Run(string(format), func(t *testing.T) {
			t.Parallel()
			const watchSecret = "watch-key-of-the-target-tests"
			keys, err := eventsapi.NewKeys(
				eventsapi.Key{Name: "relay", Rights: []eventsapi.Right{eventsapi.RightIngest}, SecretSHA256: eventsapi.HashSecret(eventsAPISecret)},
				eventsapi.Key{Name: "watch", Rights: []eventsapi.Right{eventsapi.RightSubscribe}, SecretSHA256: eventsapi.HashSecret(watchSecret)},
			)
			if err != nil {
				t.Fatal(err)
			}
			logger := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
			api, err := eventsapi.New(&eventsapi.Config{Registry: reg, Keys: keys, Logger: logger})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(api)
			t.Cleanup(srv.Close)
			t.Cleanup(func() { _ = api.Close() })

			// The listeners resume after a first event, stored directly, so
			// that they receive everything relayed, whenever they connect.
			first := eventsapi.Event{ID: "first", Topic: "billing.InvoiceCreated", Category: "billing", Entity: "Invoice", Action: "Created",
				Key: "first", Data: []byte(`{"key":"first"}`)}
			if _, err := api.Store().Append(t.Context(), []eventsapi.Event{first}); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			got := make([][]string, len(listeners))
			for i, lc := range listeners {
				var mu sync.Mutex
				lctx, stop := context.WithCancel(ctx)
				l, err := listener.New(&listener.Config{
					URL: srv.URL, Token: watchSecret, Logger: logger, After: 1,
					Filter: eventsapi.Filter{Include: []eventsapi.Selector{{Target: lc.target}}},
				}, func(_ context.Context, ev *eventsapi.Event) error {
					mu.Lock()
					defer mu.Unlock()
					var data struct{ Place string }
					if err := json.Unmarshal(ev.Data, &data); err != nil {
						return err
					}
					got[i] = append(got[i], data.Place)
					if data.Place == "c1/p1/l1 again" {
						stop()
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				wg.Go(func() {
					if err := l.Run(lctx); err != nil && !errors.Is(err, context.Canceled) {
						t.Errorf("listener at %s: %v", lc.target, err)
					}
				})
			}
			defer wg.Wait()

			pool := newTestDB(t)
			client, err := outbox.New(pool, reg, &outbox.Config{Source: "billing-api"})
			if err != nil {
				t.Fatal(err)
			}
			sess := client.UserSession("user-4711", "job-1")
			for _, p := range places {
				var opts []outbox.PublishOption
				if !p.target.IsZero() {
					opts = append(opts, outbox.WithTarget(p.target))
				}
				if err := sess.Publish(ctx, "Created", "Invoice", map[string]any{"key": "k", "place": p.name}, opts...); err != nil {
					t.Fatal(err)
				}
			}
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := sess.Flush(ctx, tx); err != nil {
				t.Fatal(err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			sink := newTestHTTPSink(t, Config{URL: srv.URL, Format: format, BearerToken: eventsAPISecret, MaxBatch: 8})
			startRelay(t, pool, sink, &relay.Config{PollInterval: 20 * time.Millisecond})

			wg.Wait()
			for i, lc := range listeners {
				if !slices.Equal(got[i], lc.receives) {
					t.Errorf("listener at %s received %v, want %v", lc.target, got[i], lc.receives)
				}
			}
			stored := storedEvents(t, api.Store())[1:]
			if len(stored) != len(places) {
				t.Fatalf("%d events stored, want %d", len(stored), len(places))
			}
			for i, ev := range stored {
				var data struct{ Place string }
				_ = json.Unmarshal(ev.Data, &data)
				if want := eventsapi.Target(places[i].target); data.Place != places[i].name || ev.Target != want || ev.Format != string(format) {
					t.Errorf("event %d stored as %s at %+v (%s), want %s at %+v", i, data.Place, ev.Target, ev.Format, places[i].name, want)
				}
			}
		})
	}
}
