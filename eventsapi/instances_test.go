package eventsapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/pgtest"
)

// twoInstances are two Servers sharing one database, as a deployment of
// several instances does: each has its own pool and PostgresStore, and its
// own HTTP server on 127.0.0.1. B's store counts the reads its server makes.
type twoInstances struct {
	a, b   *testEnv
	storeB *countingStore
}

func newTwoInstances(t testing.TB) *twoInstances {
	t.Helper()
	dbURL := pgtest.NewDB(t)
	open := func() Store {
		pool, err := pgxpool.New(context.Background(), dbURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(pool.Close)
		if err := MigratePostgres(context.Background(), pool, nil); err != nil {
			t.Fatal(err)
		}
		st, err := NewPostgresStore(context.Background(), pool, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	keys := e2eKeys(t)
	a := newTestEnv(t, &Config{Store: open(), Keys: keys}, envOptions{})
	storeB := &countingStore{Store: open()}
	b := newTestEnv(t, &Config{Store: storeB, Keys: keys, MaxSubscribers: 2000}, envOptions{})
	return &twoInstances{a: a, b: b, storeB: storeB}
}

// probe is a subscriber that records every event it receives, and how long
// after it was posted (the event's data says when).
type probe struct {
	mu  sync.Mutex
	pos []int64
	lat []time.Duration
	err error
}

// probeEvent is what a probe reads of an event.
type probeEvent struct {
	Position int64 `json:"position"`
	Data     struct {
		Sent int64 `json:"sent"` // Unix nanoseconds
	} `json:"data"`
}

// scanProbeEvent reads the position and the time sent of an event's JSON
// without decoding it all, so that a thousand probes in the benchmark's
// process leave the CPU to the servers. Position is the first field, data
// the last.
func scanProbeEvent(b []byte) (probeEvent, error) {
	var ev probeEvent
	number := func(after string, last bool) (int64, error) {
		i := bytes.Index(b, []byte(after))
		if last {
			i = bytes.LastIndex(b, []byte(after))
		}
		if i < 0 {
			return 0, fmt.Errorf("no %s in %s", after, b)
		}
		rest := b[i+len(after):]
		end := bytes.IndexFunc(rest, func(r rune) bool { return r < '0' || r > '9' })
		if end < 0 {
			end = len(rest)
		}
		return strconv.ParseInt(string(rest[:end]), 10, 64)
	}
	var err error
	if ev.Position, err = number(`{"position":`, false); err != nil {
		return ev, err
	}
	ev.Data.Sent, err = number(`"sent":`, true)
	return ev, err
}

func (p *probe) add(evs ...probeEvent) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range evs {
		p.pos = append(p.pos, ev.Position)
		p.lat = append(p.lat, now.Sub(time.Unix(0, ev.Data.Sent)))
	}
}

func (p *probe) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil {
		p.err = err
	}
}

// received returns how many events the probe received, and its error.
func (p *probe) received() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pos), p.err
}

// probeStream subscribes to /api/stream of env with secret and records
// what comes until the test ends.
func probeStream(t testing.TB, env *testEnv, secret string, wg *sync.WaitGroup) *probe {
	t.Helper()
	s := openStream(t, env, "/api/stream", bearer(secret))
	if _, err := s.read(); err != nil { // the opening
		t.Fatal(err)
	}
	p := &probe{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		notice := false
		for {
			line, err := s.br.ReadSlice('\n')
			if err != nil {
				return // the test's cleanup closed the stream
			}
			switch {
			case bytes.HasPrefix(line, []byte("event: notice")):
				notice = true
			case bytes.HasPrefix(line, []byte("data: ")) && notice:
				p.fail(fmt.Errorf("notice %s", line))
				return
			case bytes.HasPrefix(line, []byte("data: ")):
				ev, err := scanProbeEvent(line[len("data: "):])
				if err != nil {
					p.fail(err)
					return
				}
				p.add(ev)
			}
		}
	}()
	return p
}

// probeWS starts a WebSocket session of env with secret, subscribed to
// every event, and records what comes until the test ends.
func probeWS(t testing.TB, env *testEnv, secret string, wg *sync.WaitGroup) *probe {
	t.Helper()
	c, resp, err := tryWSWith(t, env.url, env.client, "", bearer(secret))
	if err != nil {
		t.Fatalf("WebSocket: %v, %v", resp, err)
	}
	c.start()
	c.subscribe("all", nil, nil)
	p := &probe{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			_, b, err := c.conn.Read(c.ctx)
			if err != nil {
				if websocket.CloseStatus(err) != -1 {
					p.fail(err)
				}
				return
			}
			var m struct {
				Type   string       `json:"type"`
				Events []probeEvent `json:"events"`
			}
			if err := json.Unmarshal(b, &m); err != nil || m.Type != "events" {
				p.fail(fmt.Errorf("message %s: %v", b, err))
				return
			}
			p.add(m.Events...)
		}
	}()
	return p
}

// fanoutRun is what runTwoInstances measured.
type fanoutRun struct {
	events, posts, subscribers int
	reads                      int64           // store reads B made while the events came
	latencies                  []time.Duration // post to receipt, every event at every subscriber, sorted
	elapsed                    time.Duration
}

func (r *fanoutRun) quantile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[min(len(r.latencies)-1, int(q*float64(len(r.latencies))))]
}

func (r *fanoutRun) String() string {
	return fmt.Sprintf("%d events in %d posts to A (%.0f events/s), %d subscribers on B: ingest to B's subscribers p50 %s, p99 %s, max %s; B read the store %d times (%d events × subscribers delivered)",
		r.events, r.posts, float64(r.events)/r.elapsed.Seconds(), r.subscribers, r.quantile(0.5).Round(100*time.Microsecond), r.quantile(0.99).Round(100*time.Microsecond),
		r.latencies[len(r.latencies)-1].Round(100*time.Microsecond), r.reads, r.events*r.subscribers)
}

// runTwoInstances posts events to A's HTTP API, perPost at a time every
// interval, and waits until each probe subscribed on B has received every
// one, in position order.
func runTwoInstances(t testing.TB, in *twoInstances, probes []*probe, events, perPost int, interval time.Duration) *fanoutRun {
	t.Helper()
	eventually(t, time.Minute, "the subscribers are connected", func() bool { return openStreams(in.b.srv) == len(probes) })
	readsBefore := in.storeB.reads.Load()
	start := time.Now()
	run := &fanoutRun{events: events, subscribers: len(probes)}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for sent := 0; sent < events; sent += perPost {
		batch := make([]Event, min(perPost, events-sent))
		now := time.Now().UnixNano()
		for i := range batch {
			batch[i] = testEvent("billing", "Invoice", "Updated", "inv-"+strconv.Itoa(sent+i))
			batch[i].Data = json.RawMessage(`{"sent":` + strconv.FormatInt(now, 10) + `}`)
		}
		postEvents(t, in.a.client, in.a.url, e2eIngest, batch...)
		run.posts++
		<-tick.C
	}
	for i, p := range probes {
		eventually(t, time.Minute, fmt.Sprintf("subscriber %d receives every event", i), func() bool {
			n, err := p.received()
			if err != nil {
				t.Fatalf("subscriber %d: %v", i, err)
			}
			return n >= events
		})
	}
	run.elapsed = time.Since(start)
	run.reads = in.storeB.reads.Load() - readsBefore
	for i, p := range probes {
		p.mu.Lock()
		if !slices.IsSorted(p.pos) || len(slices.Compact(slices.Clone(p.pos))) != events {
			t.Errorf("subscriber %d: %d events, not each once in order", i, len(p.pos))
		}
		run.latencies = append(run.latencies, p.lat...)
		p.mu.Unlock()
	}
	slices.Sort(run.latencies)
	return run
}

// TestTwoInstances: two instances share one Postgres store. Events ingested
// through A's HTTP API reach the SSE and WebSocket subscribers of B, every
// one, within tens of milliseconds, and B reads the store per batch, not
// per event and subscriber. A subscriber resumes on B from a position A
// gave: positions belong to the store.
func TestTwoInstances(t *testing.T) {
	t.Parallel()
	in := newTwoInstances(t)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after the streams close
	var probes []*probe
	for range 6 {
		probes = append(probes, probeStream(t, in.b, e2eWatch, &wg))
	}
	for range 2 {
		probes = append(probes, probeWS(t, in.b, e2eWatch, &wg))
	}
	const events, perPost = 200, 4
	run := runTwoInstances(t, in, probes, events, perPost, 5*time.Millisecond)
	t.Log(run)
	if p50 := run.quantile(0.5); p50 > 250*time.Millisecond {
		t.Errorf("p50 %s from A's ingest to B's subscribers; want tens of milliseconds", p50)
	}
	// Per wake-up, the pump reads the new events and then finds none; the
	// subscribers read from its ring.
	if limit := int64(2*run.posts + 5); run.reads > limit {
		t.Errorf("B read the store %d times for %d posts, more than %d", run.reads, run.posts, limit)
	}

	// Resume on B after a position A's query API gave.
	req, err := http.NewRequest(http.MethodGet, in.a.url+"/api/events?limit=1000", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+e2eQuery)
	resp, err := in.a.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var page EventsPage
	err = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	if err != nil || len(page.Events) != events {
		t.Fatalf("GET /api/events on A: %d events, %v", len(page.Events), err)
	}
	from := page.Events[events/2-1].Position
	want := positions(page.Events[events/2:])
	s := openStream(t, in.b, "/api/stream?last_event_id="+strconv.FormatInt(from, 10), bearer(e2eWatch))
	if got := positions(s.events(len(want))); !slices.Equal(got, want) {
		t.Errorf("SSE on B after %d: %v, want %v", from, got, want)
	}
	c, _, err := tryWSWith(t, in.b.url, in.b.client, "", bearer(e2eWatch))
	if err != nil {
		t.Fatal(err)
	}
	c.send(map[string]any{"type": "start", "last_event_id": from})
	c.expect("session")
	c.subscribe("all", nil, nil)
	if got := positions(c.waitEvents(len(want))); !slices.Equal(got, want) {
		t.Errorf("WebSocket on B after %d: %v, want %v", from, got, want)
	}
}

// BenchmarkTwoInstances measures how long an event ingested through one
// instance's HTTP API takes to reach the SSE subscribers of another sharing
// its Postgres store, at 1,000 events/s in posts of 10, and how often the
// second reads the store. Run with a fixed count, e.g.
// -bench TwoInstances -benchtime 5000x.
func BenchmarkTwoInstances(b *testing.B) {
	for _, subscribers := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("subscribers=%d", subscribers), func(b *testing.B) {
			in := newTwoInstances(b)
			var wg sync.WaitGroup
			b.Cleanup(wg.Wait)
			probes := make([]*probe, subscribers)
			for i := range probes {
				probes[i] = probeStream(b, in.b, e2eWatch, &wg)
			}
			b.ResetTimer()
			run := runTwoInstances(b, in, probes, max(b.N, 100), 10, 10*time.Millisecond)
			b.StopTimer()
			b.Log(run)
			b.ReportMetric(float64(run.quantile(0.5).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(run.quantile(0.99).Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(run.reads)/float64(run.posts), "reads/post")
			b.ReportMetric(0, "ns/op")
		})
	}
}
