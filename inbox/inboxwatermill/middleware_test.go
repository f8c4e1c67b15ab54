package inboxwatermill_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/txoutbox/txoutbox/inbox"
	"github.com/txoutbox/txoutbox/inbox/inboxwatermill"
	"github.com/txoutbox/txoutbox/internal/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Wrap(m))
}

// newPool returns a pool on a fresh database holding the inbox table and
// an effects row per event, with a counter per consumer.
func newPool(t *testing.T, events int) *pgxpool.Pool {
	t.Helper()
	ctx := t.Context()
	cfg, err := pgxpool.ParseConfig(pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 10
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := inbox.Migrate(ctx, pool, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE effects (event_id text PRIMARY KEY, projected int NOT NULL DEFAULT 0, mailed int NOT NULL DEFAULT 0);
		INSERT INTO effects (event_id) SELECT 'evt-' || i FROM generate_series(0, `+fmt.Sprint(events-1)+`) i`); err != nil {
		t.Fatal(err)
	}
	return pool
}

// TestRouter runs a real watermill router on a gochannel pub/sub: four
// handlers share the consumer name "projector" and so each event, though
// every handler receives every copy; a fifth, "mailer", takes its consumer
// name from its handler name. Every event is published three times, and
// the projector fails the first run of every tenth event after writing
// its effect. Each consumer must apply each event's effect exactly once,
// and the failed runs must have been run again.
func TestRouter(t *testing.T) {
	t.Parallel()
	const events, copies, projectors = 200, 3, 4
	pool := newPool(t, events)
	ib, err := inbox.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	projectorMW, err := inboxwatermill.NewMiddleware(pool, ib, &inboxwatermill.Config{Consumer: "projector"})
	if err != nil {
		t.Fatal(err)
	}
	byHandlerName, err := inboxwatermill.NewMiddleware(pool, ib, nil)
	if err != nil {
		t.Fatal(err)
	}

	logger := watermill.NopLogger{}
	pubsub := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: events * copies}, logger)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, logger)
	if err != nil {
		t.Fatal(err)
	}
	// acked counts the messages each handler acknowledged, outside the
	// inbox middleware: duplicates included.
	var acked atomic.Int64
	router.AddMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err == nil {
				acked.Add(1)
			}
			return out, err
		}
	})
	var mu sync.Mutex
	runs := map[string]int{} // projector runs per event, failed ones included
	effect := func(column string, fail bool) message.NoPublishHandlerFunc {
		return func(msg *message.Message) error {
			tx, err := inboxwatermill.Tx(msg)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(msg.Context(), `UPDATE effects SET `+column+` = `+column+` + 1 WHERE event_id = $1`, string(msg.Payload)); err != nil {
				return err
			}
			if !fail {
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			runs[msg.UUID]++
			var n int
			fmt.Sscanf(string(msg.Payload), "evt-%d", &n)
			if n%10 == 0 && runs[msg.UUID] == 1 {
				return errors.New("projector failed once")
			}
			return nil
		}
	}
	for i := range projectors {
		router.AddConsumerHandler(fmt.Sprintf("projector-%d", i), "invoices", pubsub, effect("projected", true)).
			AddMiddleware(projectorMW)
	}
	router.AddConsumerHandler("mailer", "invoices", pubsub, effect("mailed", false)).AddMiddleware(byHandlerName)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	<-router.Running()

	for i := range events {
		id := watermill.NewUUID()
		for range copies {
			if err := pubsub.Publish("invoices", message.NewMessage(id, []byte(fmt.Sprintf("evt-%d", i)))); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := int64((projectors + 1) * events * copies)
	for deadline := time.Now().Add(60 * time.Second); acked.Load() < want && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
	}
	if err := router.Close(); err != nil {
		t.Error(err)
	}
	if err := <-done; err != nil {
		t.Error(err)
	}
	if err := pubsub.Close(); err != nil {
		t.Error(err)
	}
	if got := acked.Load(); got != want {
		t.Fatalf("%d messages acknowledged in 60s, want %d", got, want)
	}

	rows, err := pool.Query(t.Context(), `SELECT event_id, projected, mailed FROM effects ORDER BY event_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var projected, mailed int
		if err := rows.Scan(&id, &projected, &mailed); err != nil {
			t.Fatal(err)
		}
		if projected != 1 || mailed != 1 {
			t.Errorf("%s: projected %d times, mailed %d times; want once each", id, projected, mailed)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, n := range runs {
		if n > 2 {
			t.Errorf("event %s: the projector ran %d times; want 1, or 2 after a failure", id, n)
		}
	}
	if retried := countRetried(runs); retried != events/10 {
		t.Errorf("%d events were run again after a failure, want %d", retried, events/10)
	}
}

func countRetried(runs map[string]int) int {
	n := 0
	for _, r := range runs {
		if r == 2 {
			n++
		}
	}
	return n
}

// TestErrors checks the middleware's refusals: a nil pool or inbox, a
// handler outside a router with no Config.Consumer, and Tx outside the
// middleware.
func TestErrors(t *testing.T) {
	t.Parallel()
	ib, err := inbox.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inboxwatermill.NewMiddleware(nil, ib, nil); !errors.Is(err, inbox.ErrInvalidConfig) {
		t.Errorf("nil db: %v; want ErrInvalidConfig", err)
	}
	pool := newPool(t, 1)
	if _, err := inboxwatermill.NewMiddleware(pool, nil, nil); !errors.Is(err, inbox.ErrInvalidConfig) {
		t.Errorf("nil inbox: %v; want ErrInvalidConfig", err)
	}
	mw, err := inboxwatermill.NewMiddleware(pool, ib, nil)
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	_, err = mw(func(*message.Message) ([]*message.Message, error) { ran = true; return nil, nil })(message.NewMessage("evt-0", nil))
	if !errors.Is(err, inboxwatermill.ErrNoConsumer) || ran {
		t.Errorf("no router, no consumer: %v, handler ran %v; want ErrNoConsumer and no run", err, ran)
	}
	if tx, err := inboxwatermill.Tx(message.NewMessage("evt-0", nil)); tx != nil || !errors.Is(err, inboxwatermill.ErrNoTx) {
		t.Errorf("Tx outside the middleware = %v, %v; want nil, ErrNoTx", tx, err)
	}
	mw, err = inboxwatermill.NewMiddleware(pool, ib, &inboxwatermill.Config{Consumer: "projector"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = mw(func(*message.Message) ([]*message.Message, error) { ran = true; return nil, nil })(message.NewMessage("", nil))
	if !errors.Is(err, inbox.ErrInvalidID) || ran {
		t.Errorf("a message without an id: %v, handler ran %v; want ErrInvalidID and no run", err, ran)
	}
}
