package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/relay"
)

// relays is a set of running relays sharing one outbox.
type relays struct {
	list   []*relay.Relay
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
}

// startRelays starts n relays on s's outbox in mode, delivering to sink. Their
// heartbeats are registered first, so that each takes its fair share of the
// partitions on its first lease round instead of the first one taking all
// and handing them back a lease period later.
func startRelays(ctx context.Context, e *env, s *schema, pool *pgxpool.Pool, sink relay.Sink, n int, mode relay.Mode) (*relays, error) {
	set := &relays{}
	heartbeat := outboxsql.New(s.name).Relay.Heartbeat
	for i := range n {
		r, err := relay.New(pool, sink, &relay.Config{
			ID:     fmt.Sprintf("bench-%s-%d", s.name, i),
			Schema: s.name,
			Mode:   mode,
			Logger: e.log,
		})
		if err != nil {
			return nil, fmt.Errorf("new relay: %w", err)
		}
		if _, err := e.admin.Exec(ctx, heartbeat, r.ID(), "", 0); err != nil {
			return nil, fmt.Errorf("register relay: %w", err)
		}
		set.list = append(set.list, r)
	}
	ctx, set.cancel = context.WithCancel(ctx)
	for _, r := range set.list {
		set.wg.Go(func() {
			if err := r.Run(ctx); err != nil {
				set.mu.Lock()
				set.err = err
				set.mu.Unlock()
			}
		})
	}
	return set, nil
}

// wake wakes every relay, as an application embedding them does when it
// has published.
func (rs *relays) wake() {
	for _, r := range rs.list {
		r.Wake()
	}
}

// streaming waits until every relay's WAL stream is open, for modes that
// stream, so that a measurement does not take in the stream's start.
func (rs *relays) streaming(ctx context.Context) error {
	const wait = 30 * time.Second
	deadline := time.Now().Add(wait)
	for _, r := range rs.list {
		for !r.WALStatus().Streaming {
			if time.Now().After(deadline) {
				return fmt.Errorf("relay %s: WAL stream not open after %s", r.ID(), wait)
			}
			if !sleep(ctx, 10*time.Millisecond) {
				return ctx.Err()
			}
		}
	}
	return nil
}

// stop stops the relays and waits for them.
func (rs *relays) stop() error {
	rs.cancel()
	rs.wg.Wait()
	return rs.err
}
