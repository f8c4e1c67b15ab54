package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relaytest"
)

func conformancePool(t *testing.T) *pgxpool.Pool {
	pool := pgtest.NewPool(t)
	if err := outbox.Migrate(t.Context(), pool, nil); err != nil {
		t.Fatal(err)
	}
	return pool
}

// TestLineSinkConformance runs the sink conformance suite on the sink of
// Example_sink, reading back the lines it wrote.
func TestLineSinkConformance(t *testing.T) {
	t.Parallel()
	relaytest.Run(t, relaytest.Suite{
		Pool: conformancePool,
		NewSink: func(t *testing.T) (relay.Sink, func() []relaytest.Received) {
			var mu sync.Mutex
			var buf bytes.Buffer
			sink := &LineSink{W: lockedWriter{&mu, &buf}}
			return sink, func() []relaytest.Received {
				mu.Lock()
				defer mu.Unlock()
				var got []relaytest.Received
				sc := bufio.NewScanner(bytes.NewReader(buf.Bytes()))
				for sc.Scan() {
					var line struct {
						ID, Key string
						Data    json.RawMessage
					}
					if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
						t.Fatalf("line %q: %v", sc.Text(), err)
					}
					got = append(got, relaytest.Received{ID: line.ID, Key: line.Key, Data: line.Data})
				}
				return got
			}
		},
	})
}

// TestNoopSinkConformance runs the suite on a sink that drops everything:
// with no far end, it checks what Send answers and that a relay drains.
func TestNoopSinkConformance(t *testing.T) {
	t.Parallel()
	relaytest.Run(t, relaytest.Suite{
		Pool: conformancePool,
		NewSink: func(*testing.T) (relay.Sink, func() []relaytest.Received) {
			return relay.SinkFunc(func(context.Context, []*outbox.Event) error { return nil }), nil
		},
	})
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}
