package eventsapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Backoff of the notification listener's reconnects.
const (
	pgListenBackoffMin = 100 * time.Millisecond
	pgListenBackoffMax = 5 * time.Second
)

// pgWake is what Changed answers from: the newest position known to be
// committed (by this store's appends, notifications, polls) and a channel
// closed and replaced whenever it grows.
type pgWake struct {
	mu     sync.Mutex
	head   int64
	ch     chan struct{}
	ready  chan struct{} // always closed
	closed bool
}

func (w *pgWake) init(head int64) {
	w.head = head
	w.ch = make(chan struct{})
	w.ready = make(chan struct{})
	close(w.ready)
}

// advance records that position head is committed.
func (w *pgWake) advance(head int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if head <= w.head || w.closed {
		return
	}
	w.head = head
	close(w.ch)
	w.ch = make(chan struct{})
}

func (w *pgWake) changed(after int64) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.head > after || w.closed {
		return w.ready
	}
	return w.ch
}

func (w *pgWake) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		close(w.ch)
	}
}

// listenLoop keeps a connection listening on the store's channel until ctx
// ends, reconnecting with backoff when it breaks.
func (s *PostgresStore) listenLoop(ctx context.Context, cfg *pgx.ConnConfig) {
	defer s.wg.Done()
	failures := 0
	for {
		err := s.listen(ctx, cfg, func() {
			if failures > 0 {
				s.cfg.Logger.Info("events API store: notification listener reconnected")
			}
			failures = 0
		})
		if ctx.Err() != nil {
			return
		}
		d := min(pgListenBackoffMin<<min(failures, 16), pgListenBackoffMax)
		d = d/2 + rand.N(d/2+1) // jitter, so instances do not reconnect in step
		failures++
		level := slog.LevelWarn // once per outage; the retries that follow at debug level
		if failures > 1 {
			level = slog.LevelDebug
		}
		s.cfg.Logger.Log(ctx, level, "events API store: notification listener lost its connection; polling until it is back",
			"error", err, "attempt", failures, "retry_in", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// listen connects, listens, calls up once listening, and wakes readers for
// every notification until the connection fails or ctx ends.
func (s *PostgresStore) listen(ctx context.Context, cfg *pgx.ConnConfig, up func()) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(cctx) //nolint:errcheck // the connection is done with either way
	}()
	for _, ch := range []string{s.q.channel, s.q.liveChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	up()
	s.poll(ctx) // what was appended while nobody listened
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
		if n.Channel == s.q.liveChannel {
			s.deliverLive(n.Payload)
			continue
		}
		if head, err := strconv.ParseInt(n.Payload, 10, 64); err == nil {
			s.wake.advance(head)
		} else {
			s.poll(ctx)
		}
	}
}

// pollLoop checks the head every PollInterval until ctx ends.
func (s *PostgresStore) pollLoop(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.poll(ctx)
		}
	}
}

// poll wakes readers when the head moved. Errors are left to the listener
// to report: it shares the server.
func (s *PostgresStore) poll(ctx context.Context) {
	if head, err := s.head(ctx); err == nil {
		s.wake.advance(head)
	}
}

// deliverLive hands the live event of a notification's payload to the
// functions SubscribeLive registered.
func (s *PostgresStore) deliverLive(payload string) {
	var ev Event
	if err := json.Unmarshal([]byte(payload), &ev); err != nil {
		s.cfg.Logger.Warn("events API store: a live event notification is not an event", "error", err)
		return
	}
	s.live.deliver([]Event{ev})
}
