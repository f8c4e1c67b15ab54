package relay

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/txoutbox/txoutbox/outbox"
)

// TestNextLeaseWait checks the lease loop's schedule: quick after a change,
// doubling back to LeaseTTL/3 while nothing changes, and never more often
// than that in a steady fleet.
func TestNextLeaseWait(t *testing.T) {
	t.Parallel()
	const quick, steady = 50 * time.Millisecond, 10 * time.Second
	three := leaseRound{live: 3}
	tests := []struct {
		name        string
		wait        time.Duration
		last, round leaseRound
		want        time.Duration
	}{
		{"nothing changed", quick, three, three, 2 * quick},
		{"capped at steady", 8 * time.Second, three, three, steady},
		{"steady stays steady", steady, three, three, steady},
		{"a relay joined", steady, three, leaseRound{live: 4}, quick},
		{"a relay left", steady, three, leaseRound{live: 2}, quick},
		{"took partitions", steady, three, leaseRound{live: 3, acquired: 2}, quick},
		{"gave partitions back", steady, three, leaseRound{live: 3, released: 5}, quick},
		{"under its share", steady, three, leaseRound{live: 3, short: true}, leaseShortMax},
		{"under its share, doubling", quick, three, leaseRound{live: 3, short: true}, 2 * quick},
	}
	for _, tt := range tests {
		if got := nextLeaseWait(tt.wait, quick, steady, tt.last, tt.round); got != tt.want {
			t.Errorf("%s: nextLeaseWait(%s) = %s, want %s", tt.name, tt.wait, got, tt.want)
		}
	}
}

// sinkCall is one Publish call of one relay.
type sinkCall struct {
	relay      int
	start, end time.Time
	ids        []string
}

// callLog records the Publish calls of several relays, each through its
// own loggedSink, into one shared sink.
type callLog struct {
	sink  *recordingSink
	mu    sync.Mutex
	calls []sinkCall
}

type loggedSink struct {
	relay int
	log   *callLog
}

func (s loggedSink) Send(ctx context.Context, events []*outbox.Event) error {
	c := sinkCall{relay: s.relay, start: time.Now()}
	for _, m := range events {
		c.ids = append(c.ids, m.ID.String())
	}
	err := s.log.sink.Send(ctx, events)
	c.end = time.Now()
	s.log.mu.Lock()
	s.log.calls = append(s.log.calls, c)
	s.log.mu.Unlock()
	return err
}

// TestStartTogether starts four relays at once while events are committed.
// Each holds its fair share of the partitions well before the first steady
// lease round (LeaseTTL/3), instead of the first one holding them all until
// then, and no partition is ever delivered by two relays at once.
func TestStartTogether(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	const relays, ttl = 4, 60 * time.Second
	log := &callLog{sink: &recordingSink{}}

	// The inserts are not cancelled mid-statement, which could commit
	// events without counting them.
	stop := make(chan struct{})
	var inserted int
	var insertErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		keys := cycleKeys(20, 20)
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if _, err := pool.Exec(context.Background(), insertSQL, keys); err != nil {
				insertErr = err
				return
			}
			inserted += len(keys)
		}
	})
	var once sync.Once
	stopInserts := func() { once.Do(func() { close(stop) }); wg.Wait() }
	defer stopInserts()

	rs := make([]*Relay, relays)
	for i := range rs {
		// Retention keeps the rows, so that each delivered event's
		// partition can be looked up afterwards.
		rs[i], _ = startRelay(t, pool, loggedSink{relay: i, log: log}, &Config{LeaseTTL: ttl, BatchSize: 50, Retention: time.Hour})
	}
	started := time.Now()
	// Generous, yet well under the LeaseTTL/3 = 20s the first steady round
	// would take.
	waitFor(t, ttl/3/2, "every relay to hold its fair share", func() bool {
		for _, r := range rs {
			if len(r.leases.held()) != partitions/relays {
				return false
			}
		}
		return true
	})
	t.Logf("fair shares after %s", time.Since(started).Round(time.Millisecond))
	for _, r := range rs {
		if n := countOwned(t, pool, r.ID()); n != partitions/relays {
			t.Errorf("relay %s owns %d partitions in the table, want %d", r.ID(), n, partitions/relays)
		}
	}
	time.Sleep(100 * time.Millisecond) // deliveries after the rebalance
	stopInserts()
	if insertErr != nil {
		t.Fatal(insertErr)
	}
	waitFor(t, 20*time.Second, "every event", func() bool { return log.sink.distinct() == inserted })

	got := log.sink.delivered()
	checkOrder(t, got)
	if len(got) != inserted {
		t.Errorf("%d deliveries of %d events", len(got), inserted)
	}
	checkNoConcurrentDelivery(t, pool, log)
}

// checkNoConcurrentDelivery fails the test if two relays were in Publish
// calls for the same partition at overlapping times.
func checkNoConcurrentDelivery(t *testing.T, pool *pgxpool.Pool, log *callLog) {
	t.Helper()
	rows, err := pool.Query(t.Context(), `SELECT id::text, part FROM txoutbox_events`)
	if err != nil {
		t.Fatal(err)
	}
	partOf := make(map[string]int16)
	var id string
	var part int16
	if _, err := pgx.ForEachRow(rows, []any{&id, &part}, func() error { partOf[id] = part; return nil }); err != nil {
		t.Fatal(err)
	}
	log.mu.Lock()
	defer log.mu.Unlock()
	var byPart [partitions][]sinkCall
	for _, c := range log.calls {
		seen := make(map[int16]bool)
		for _, id := range c.ids {
			p, ok := partOf[id]
			if !ok {
				t.Fatalf("delivered event %s is not in the table", id)
			}
			if !seen[p] {
				seen[p] = true
				byPart[p] = append(byPart[p], c)
			}
		}
	}
	for p, calls := range byPart {
		for i, a := range calls {
			for _, b := range calls[i+1:] {
				if a.relay != b.relay && a.start.Before(b.end) && b.start.Before(a.end) {
					t.Errorf("partition %d delivered by relays %d and %d at once", p, a.relay, b.relay)
				}
			}
		}
	}
}
