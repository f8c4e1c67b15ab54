// Command consumer-http receives the relay's CloudEvents stream over HTTP
// and processes each event once: delivery is at least once, so a retried
// batch can bring an event again, and the consumer drops it by its id.
//
//	go run ./examples/consumer-http            # listens on 127.0.0.1:8090
//	txoutbox relay --sink http://127.0.0.1:8090/ --format cloudevents ...
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"time"
)

// event is the part of a CloudEvent this consumer reads.
type event struct {
	ID          string          `json:"id"`
	Type        string          `json:"type"` // the topic, e.g. billing.InvoiceCreated
	Subject     string          `json:"subject"`
	Traceparent string          `json:"traceparent"`
	Data        json.RawMessage `json:"data"`
}

// consumer remembers the ids of the last window events it processed. A
// real service records the id in its own database, in the transaction that
// applies the event, so the check survives restarts.
type consumer struct {
	mu      sync.Mutex
	seen    map[string]bool
	order   []string
	window  int
	process func(event)
}

func newConsumer(window int, process func(event)) *consumer {
	return &consumer{seen: make(map[string]bool, window), window: window, process: process}
}

// ServeHTTP takes a batch (application/cloudevents-batch+json) or a single
// event and answers 200 once every event is processed or known.
func (c *consumer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var batch []event
	if err := json.Unmarshal(body, &batch); err != nil {
		var one event
		if err := json.Unmarshal(body, &one); err != nil {
			http.Error(w, "body is not a CloudEvent or a batch of them", http.StatusBadRequest)
			return
		}
		batch = []event{one}
	}
	for _, e := range batch {
		if e.ID == "" {
			http.Error(w, "an event has no id", http.StatusBadRequest)
			return
		}
		c.handle(e)
	}
	w.WriteHeader(http.StatusOK)
}

func (c *consumer) handle(e event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen[e.ID] {
		return
	}
	c.process(e)
	c.seen[e.ID] = true
	c.order = append(c.order, e.ID)
	if len(c.order) > c.window {
		delete(c.seen, c.order[0])
		c.order = c.order[1:]
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, cmp.Or(os.Getenv("ADDR"), "127.0.0.1:8090")); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, addr string) error {
	c := newConsumer(100_000, func(e event) {
		fmt.Printf("%s %s key=%s %s\n", e.ID, e.Type, e.Subject, e.Data)
	})
	srv := &http.Server{Addr: addr, Handler: c, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	log.Printf("consuming CloudEvents on http://%s/", addr)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
