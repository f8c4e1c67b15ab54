package relayhttp

import (
	"context"
	"flag"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/relay"
)

// flakyAPI is a bc-events API for the liveness tests: it answers each
// single post after delay, failing it as fail says, and counts per event id
// the posts it failed and the ones it stored.
type flakyAPI struct {
	*httptest.Server
	delay time.Duration

	mu       sync.Mutex
	fail     func() int // status to answer instead of 201; 0 stores
	failures map[string]int
	stored   map[string]int
	first    time.Time // first post stored
	last     time.Time // last post stored
}

func newFlakyAPI(t *testing.T, delay time.Duration) *flakyAPI {
	t.Helper()
	a := &flakyAPI{delay: delay, failures: make(map[string]int), stored: make(map[string]int)}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if a.delay > 0 {
			select {
			case <-time.After(a.delay):
			case <-r.Context().Done():
				return
			}
		}
		id := r.Header.Get(wire.HeaderIdempotencyKey)
		a.mu.Lock()
		code := 0
		if a.fail != nil {
			code = a.fail()
		}
		if code != 0 {
			a.failures[id]++
			a.mu.Unlock()
			w.WriteHeader(code)
			return
		}
		a.stored[id]++
		now := time.Now()
		if a.first.IsZero() {
			a.first = now
		}
		a.last = now
		a.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"eventId":"`+id+`","jobId":"j"}`)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *flakyAPI) setFail(fail func() int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fail = fail
}

// distinct returns how many events the API stored, and how many of them
// more than once.
func (a *flakyAPI) distinct() (n, dups int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.stored {
		if c > 1 {
			dups++
		}
	}
	return len(a.stored), dups
}

func (a *flakyAPI) storedSince(t time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last.After(t)
}

// insertJobEvents inserts n events, each with a key and a job id of its own,
// so that the bc-events format posts them one by one.
func insertJobEvents(t testing.TB, pool *pgxpool.Pool, n int) {
	t.Helper()
	insertEvents(t, pool, ownJob, cycleKeys(n, n))
}

// briteSink returns a Sink posting to api in the bc-events format.
func briteSink(t *testing.T, api *flakyAPI) *Sink {
	return newTestHTTPSink(t, Config{URL: api.URL, Format: FormatBriteEvents})
}

// TestFlakyAPIDelivers: an events API failing 10% of requests with 500 slows
// delivery down by the retried requests, not by backoffs charged to events
// that were never sent. 2,000 events, one job each, are delivered within 3×
// the time they take without faults, and every attempt the relay counted
// is one the API answered with an error.
//
// The API answers at once, so RetryBase is scaled down with it: 20ms
// against a sub-millisecond request is the default 1s against an API that
// takes some 40ms, where the defect showed (2,000 events took 99s without
// faults and had delivered 212 after 411s with them).
func TestFlakyAPIDelivers(t *testing.T) {
	t.Parallel()
	const n = 2000
	run := func(failRate float64) (time.Duration, *flakyAPI, *pgxpool.Pool) {
		api := newFlakyAPI(t, 0)
		rng := rand.New(rand.NewPCG(1, 2))
		api.setFail(func() int {
			if rng.Float64() < failRate {
				return http.StatusInternalServerError
			}
			return 0
		})
		pool := newTestDB(t)
		insertJobEvents(t, pool, n)
		start := time.Now()
		// Retention keeps the delivered rows with their attempts.
		_, stop := startRelay(t, pool, briteSink(t, api), &relay.Config{Retention: time.Hour, RetryBase: 20 * time.Millisecond})
		waitFor(t, 2*time.Minute, "every event delivered", func() bool {
			got, _ := api.distinct()
			return got == n
		})
		took := time.Since(start)
		stop()
		return took, api, pool
	}
	clean, _, _ := run(0)
	flaky, api, pool := run(0.10)
	t.Logf("2,000 single-job events: %s without faults, %s with 10%% of requests answered 500 (%d failed requests)",
		clean.Round(time.Millisecond), flaky.Round(time.Millisecond), requestsFailed(api))
	if flaky > 3*clean {
		t.Errorf("with 10%% of requests failing, delivery took %s, more than 3× the %s without faults", flaky, clean)
	}

	rows, err := pool.Query(context.Background(), `SELECT id::text, attempts FROM txoutbox_events`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	charged := 0
	for rows.Next() {
		var id string
		var attempts int
		if err := rows.Scan(&id, &attempts); err != nil {
			t.Fatal(err)
		}
		// Delivery counts an attempt too.
		if failed := attempts - 1; failed > api.failures[id] {
			t.Errorf("event %s: %d failed attempts counted, the API failed it %d times", id, failed, api.failures[id])
		} else {
			charged += failed
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("failed attempts counted: %d, failed requests: %d", charged, requestsFailed(api))
}

func requestsFailed(a *flakyAPI) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, c := range a.failures {
		n += c
	}
	return n
}

var outageFlag = flag.Duration("outage", 20*time.Second, "how long TestOutageRecovery's events API is down")

// TestOutageRecovery: after the events API was down for a while, delivery
// resumes within seconds of its recovery, not after a backoff grown over the
// outage, and the outage piles up no attempts: the relay counted one failed
// attempt at most per event.
//
// -outage sets how long the API is down: go test -run TestOutageRecovery -v
// ./relay/ -outage 60s.
func TestOutageRecovery(t *testing.T) {
	t.Parallel()
	outage := *outageFlag
	api := newFlakyAPI(t, 0)
	api.setFail(func() int { return http.StatusServiceUnavailable })
	pool := newTestDB(t)
	insertJobEvents(t, pool, 200)
	startRelay(t, pool, newTestHTTPSink(t, Config{URL: api.URL}), &relay.Config{Retention: time.Hour})
	time.Sleep(outage)
	failedDuringOutage := requestsFailed(api)
	api.setFail(nil)
	recovered := time.Now()
	waitFor(t, 30*time.Second, "a delivery after the recovery", func() bool { return api.storedSince(recovered) })
	api.mu.Lock()
	first := api.first.Sub(recovered)
	api.mu.Unlock()
	t.Logf("outage %s: %d failed requests; first delivery %s after the recovery", outage, failedDuringOutage, first.Round(time.Millisecond))
	if first > 5*time.Second {
		t.Errorf("first delivery %s after the API recovered, want within 5s", first)
	}
	waitFor(t, 30*time.Second, "every event delivered", func() bool { return count(t, pool, "status = 'pending'") == 0 })
	if n := count(t, pool, "attempts > 2"); n > 0 {
		t.Errorf("%d events counted more than one failed attempt over the outage", n)
	}
}

// TestJoinMidBatch: a relay joining while another delivers a batch longer
// than the lease takes nothing over until that batch is recorded. The first
// relay keeps renewing its leases and heartbeating through the batch, the
// joiner gets its share right after it, and no event is delivered twice.
func TestJoinMidBatch(t *testing.T) {
	t.Parallel()
	const n, batch = 150, 50
	api := newFlakyAPI(t, 40*time.Millisecond) // a batch takes 2s, the lease 1s
	pool := newTestDB(t)
	insertJobEvents(t, pool, n)
	cfg := func(id string) *relay.Config {
		return &relay.Config{ID: id, LeaseTTL: time.Second, BatchSize: batch}
	}
	start := time.Now()
	startRelay(t, pool, briteSink(t, api), cfg("relay-a"))
	stored := func() int { got, _ := api.distinct(); return got }
	waitFor(t, 10*time.Second, "relay-a delivering its first batch", func() bool { return stored() >= 3 })

	type lease struct {
		until, heartbeat time.Time
		owned            int
	}
	leaseOf := func(id string) lease {
		var l lease
		err := pool.QueryRow(context.Background(), `SELECT
				coalesce((SELECT min(lease_until) FROM txoutbox_partitions WHERE owner = $1), 'epoch'),
				coalesce((SELECT heartbeat_at FROM txoutbox_relays WHERE id = $1), 'epoch'),
				(SELECT count(*) FROM txoutbox_partitions WHERE owner = $1)`, id).
			Scan(&l.until, &l.heartbeat, &l.owned)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	before := leaseOf("relay-a")
	startRelay(t, pool, briteSink(t, api), cfg("relay-b"))
	time.Sleep(1200 * time.Millisecond) // past the lease relay-a had when relay-b joined
	during, got := leaseOf("relay-a"), stored()
	if got >= batch {
		t.Fatalf("relay-a's first batch was over (%d stored) before its leases could be checked mid-batch", got)
	}
	if during.owned != 64 || leaseOf("relay-b").owned != 0 {
		t.Errorf("mid-batch, relay-a owns %d partitions, want all 64 until its batch is recorded", during.owned)
	}
	if !during.until.After(before.until.Add(500*time.Millisecond)) || !during.heartbeat.After(before.heartbeat) {
		t.Errorf("mid-batch, relay-a's lease ran until %s then %s, heartbeat %s then %s: want both renewed during the batch",
			before.until, during.until, before.heartbeat, during.heartbeat)
	}

	waitFor(t, 10*time.Second, "relay-b holding its share", func() bool { return leaseOf("relay-b").owned == 32 })
	if got := stored(); got < batch {
		t.Errorf("relay-b got its share with %d events stored, before relay-a's first batch of %d was over", got, batch)
	}
	waitFor(t, 30*time.Second, "every event delivered", func() bool { return stored() == n })
	_, dups := api.distinct()
	t.Logf("%d events, a relay joining mid-batch: %d delivered twice, all delivered in %s", n, dups, time.Since(start).Round(time.Millisecond))
	if dups > 0 {
		t.Errorf("%d events delivered twice", dups)
	}
}
