package main

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/examples/internal/exampleenv"
	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay/relayhttp"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Wrap(m))
}

// TestDedupe posts events through the relay's HTTP sink, then the same
// batch again as a retry would, twice at once, and checks each event is
// processed once; an event whose processing fails the first time fails
// the batch, and the batch sent again processes it, and only it.
func TestDedupe(t *testing.T) {
	url := pgtest.NewDB(t)
	pool, ib, err := exampleenv.OpenInbox(t.Context(), func(k string) string { return map[string]string{"DATABASE_URL": url}[k] })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(t.Context(), `CREATE TABLE seen (id text PRIMARY KEY, n int NOT NULL)`); err != nil {
		t.Fatal(err)
	}

	const n = 50
	var evs []*outbox.Event
	for i := range n {
		evs = append(evs, &outbox.Event{
			ID: uuid.Must(uuid.NewV7()), Topic: "billing.InvoiceCreated", Category: "billing", Entity: "Invoice", Action: "Created",
			Data: []byte(`{"n":1}`), ActorID: "user-1", ActorType: outbox.ActorUser, JobID: "job-1", Source: "billing",
			Key: fmt.Sprintf("inv-%d", i%5), Time: time.Now(),
		})
	}
	failing := evs[7].ID.String()
	var mu sync.Mutex
	failed := false
	c := &consumer{pool: pool, inbox: ib, process: func(ctx context.Context, tx pgx.Tx, e event) error {
		if e.Type != "billing.InvoiceCreated" || e.Subject == "" || len(e.Data) == 0 {
			t.Errorf("event lost its envelope: %+v", e)
		}
		// The effect, in the inbox's transaction: a counter per event.
		if _, err := tx.Exec(ctx, `INSERT INTO seen VALUES ($1, 1) ON CONFLICT (id) DO UPDATE SET n = seen.n + 1`, e.ID); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if e.ID == failing && !failed {
			failed = true
			return errors.New("the projection is down")
		}
		return nil
	}}
	srv := httptest.NewServer(c)
	defer srv.Close()
	sink, err := relayhttp.New(&relayhttp.Config{URL: srv.URL, Format: relayhttp.FormatCloudEvents})
	if err != nil {
		t.Fatal(err)
	}

	if err := sink.Send(t.Context(), evs); err == nil {
		t.Fatal("the batch with a failing event was accepted")
	}
	var wg sync.WaitGroup
	for range 2 { // the relay's retry, and a second copy racing it
		wg.Go(func() {
			if err := sink.Send(t.Context(), evs); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	rows, _ := pool.Query(t.Context(), `SELECT id, n FROM seen`)
	processed := map[string]int{}
	var id string
	var times int
	if _, err := pgx.ForEachRow(rows, []any{&id, &times}, func() error { processed[id] = times; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(processed) != n {
		t.Fatalf("%d events processed, want %d", len(processed), n)
	}
	for id, times := range processed {
		if times != 1 {
			t.Errorf("event %s processed %d times", id, times)
		}
	}
}
