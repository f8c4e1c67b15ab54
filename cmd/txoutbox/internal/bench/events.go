package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/relay/relayhttp"
)

// Sizes of the events scenario.
const (
	// ingestBatch is the events of one post (the bc-events sink's default
	// bulk size) and of one direct Append.
	ingestBatch = 100
	// fanoutPosters post while the subscribers read, fanoutBatch events a
	// post.
	fanoutPosters = 4
	fanoutBatch   = ingestBatch
	// fanoutLag is how far the posters may run ahead of the slowest
	// subscriber: half the server's SubscriberBuffer, beyond which a
	// subscriber is cut off as too slow.
	fanoutLag = eventsapi.SubscriberBufferDefault / 2
	// latencyRate is the fixed ingest rate of the latency points, one event
	// a post.
	latencyRate = 1000
	// catchUpPage is the page of the direct Read the catch-up is compared
	// with: a PostgresStore's default.
	catchUpPage = 1000
	// eventsStall is how long a wait may go without an event arriving.
	eventsStall = 10 * time.Second
)

// ingestClients are the concurrent posters of the CloudEvents ingest points.
var ingestClients = []int{1, 4, 16}

// eventsBench is what the events scenario runs against.
type eventsBench struct {
	e     *env
	keys  *apiKeys
	maker *eventMaker

	pg            *eventsStore // ingest and fan-out
	pgAPI         *apiServer
	mem           *eventsapi.MemoryStore
	memAPI        *apiServer
	ce, bc, memCE *relayhttp.Sink

	catch    *eventsStore // pre-filled, for the catch-up
	catchAPI *apiServer

	stops []func()
}

func (b *eventsBench) close() {
	for i := len(b.stops) - 1; i >= 0; i-- {
		b.stops[i]()
	}
}

func openEventsBench(ctx context.Context, e *env) (b *eventsBench, err error) {
	b = &eventsBench{e: e, maker: newEventMaker()}
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.keys, err = newAPIKeys(); err != nil {
		return nil, err
	}
	if b.pg, err = e.newEventsStore(ctx, "events"); err != nil {
		return nil, err
	}
	b.stops = append(b.stops, b.pg.close)
	if b.pgAPI, err = startAPI(e, b.pg, b.keys); err != nil {
		return nil, err
	}
	b.stops = append(b.stops, b.pgAPI.close)
	if b.mem, err = eventsapi.NewMemoryStore(nil); err != nil {
		return nil, err
	}
	b.stops = append(b.stops, func() { _ = b.mem.Close() })
	if b.memAPI, err = startAPI(e, b.mem, b.keys); err != nil {
		return nil, err
	}
	b.stops = append(b.stops, b.memAPI.close)
	for _, p := range []struct {
		dst    **relayhttp.Sink
		a      *apiServer
		format relayhttp.Format
	}{{&b.ce, b.pgAPI, relayhttp.FormatCloudEvents}, {&b.bc, b.pgAPI, relayhttp.FormatBriteEvents}, {&b.memCE, b.memAPI, relayhttp.FormatCloudEvents}} {
		if *p.dst, err = newPoster(e, p.a, b.keys, p.format); err != nil {
			return nil, err
		}
		s := *p.dst
		b.stops = append(b.stops, func() { _ = s.Close() })
	}

	// The catch-up's server starts once its store is filled, so that its
	// ring holds none of them: a subscriber behind reads them all from
	// the store.
	if b.catch, err = e.newEventsStore(ctx, "events_catchup"); err != nil {
		return nil, err
	}
	b.stops = append(b.stops, b.catch.close)
	began := time.Now()
	if err := b.fill(ctx, b.catch, e.cfg.CatchUp); err != nil {
		return nil, err
	}
	if err := b.catch.settle(ctx); err != nil {
		return nil, err
	}
	e.log.Info("events: catch-up store filled", "events", e.cfg.CatchUp, "took", time.Since(began).Round(time.Millisecond))
	if b.catchAPI, err = startAPI(e, b.catch, b.keys); err != nil {
		return nil, err
	}
	b.stops = append(b.stops, b.catchAPI.close)
	return b, nil
}

// fill appends n events to s, a thousand at a time.
func (b *eventsBench) fill(ctx context.Context, s *eventsStore, n int) error {
	var left atomic.Int64
	left.Store(int64(n))
	var g errgroup
	for range 2 {
		g.Go(func() error {
			for {
				k := min(left.Add(-1000)+1000, 1000)
				if k <= 0 {
					return nil
				}
				if _, err := s.Append(ctx, storeEvents(b.maker.batch(int(k), false))); err != nil {
					return fmt.Errorf("fill the catch-up store: %w", err)
				}
			}
		})
	}
	return g.Wait()
}

// runEvents measures the events API: ingest over HTTP into the Postgres
// store beside direct appends, fan-out to many subscribers, latency at a
// fixed rate, and a subscriber catching up from the store.
func runEvents(ctx context.Context, e *env, rec *recorder) error {
	b, err := openEventsBench(ctx, e)
	if err != nil {
		return err
	}
	defer b.close()

	big := e.cfg.Subscribers
	small := max(1, big/10)
	for _, c := range ingestClients {
		k := fmt.Sprintf("ev/ingest/ce/c%d", c)
		var base []string
		if c == 4 {
			base = []string{"ev/ingest/store/c4", "ev/ingest/mem/c4"}
		}
		rec.define(k, fmt.Sprintf("ingest: HTTP, CloudEvents batches of %d → Postgres store, %s", ingestBatch, plural(c, "client")), "", "events/s", goal{}, base...)
	}
	rec.define("ev/ingest/bc/c4", fmt.Sprintf("ingest: HTTP, bc-events bulk posts of %d → Postgres store, 4 clients", ingestBatch), "", "events/s", goal{}, "ev/ingest/store/c4")
	rec.define("ev/ingest/store/c4", fmt.Sprintf("  Append to the Postgres store directly, %d at a time, 4 goroutines", ingestBatch), "direct Append", "events/s", goal{})
	rec.define("ev/ingest/mem/c4", "  HTTP, CloudEvents batches → memory store, 4 clients", "memory store", "events/s", goal{})
	rec.define("ev/enroll/c8", fmt.Sprintf("enroll: HTTP POST /api/enroll → Postgres store, %d workers, over the events ingested", enrollWorkers), "", "claims/s", goal{})
	fanouts := []struct {
		kind string
		subs int
		goal goal
		base []string
	}{
		{viaSSE, small, goal{}, nil},
		{viaSSE, big, atLeast(200_000, "≥ 200,000/s"), nil},
		{viaWS, small, goal{}, []string{fmt.Sprintf("ev/fanout/sse/%d", small)}},
		{viaGRPC, big, goal{}, []string{fmt.Sprintf("ev/fanout/sse/%d", big)}},
	}
	for _, f := range fanouts {
		k := fmt.Sprintf("ev/fanout/%s/%d", f.kind, f.subs)
		rec.define(k, fmt.Sprintf("fan-out: %s, %s, deliveries", kindName(f.kind), plural(f.subs, "subscriber")), kindName(f.kind), "deliveries/s", f.goal, f.base...)
		rec.define(k+"/ingest", "  events ingested meanwhile", "", "events/s", goal{})
	}
	for _, kind := range []string{viaSSE, viaWS, viaGRPC} {
		k := "ev/lat/" + kind
		at := fmt.Sprintf("%s, %s events/s × %s", kindName(kind), formatValue(latencyRate), plural(small, "subscriber"))
		rec.define(k+"/p50", "latency: ingest→subscriber p50, "+at, "", "ms", goal{})
		rec.define(k+"/p99", "latency: ingest→subscriber p99, "+at, "", "ms", atMost(50, "≤ 50 ms"))
		rec.define(k+"/max", "  max", "", "ms", goal{})
		rec.define(k+"/post", "  p99 of the posts themselves (until stored)", "", "ms", goal{})
	}
	rec.define("ev/catchup/sse", fmt.Sprintf("catch-up: SSE subscriber resuming %s events behind, Postgres store", formatValue(float64(e.cfg.CatchUp))), "", "events/s",
		atLeast(100_000, "≥ 100,000/s"), "ev/catchup/store")
	rec.define("ev/catchup/store", fmt.Sprintf("  Store.Read of the same events, pages of %d, no HTTP", catchUpPage), "direct Read", "events/s", goal{})

	rec.note("events: one events API server per store, in this process, on 127.0.0.1 with API keys and the topic catalog (schema validation on ingest); "+
		"posts are the relay's HTTP sink (relayhttp) sending events of %d bytes of data; ingest points run %s after a %s warm-up", len(b.maker.data[0]), e.cfg.Duration, warmup(e.cfg))
	rec.note("events: subscribers are lean readers in this process, one goroutine and one TCP connection each, sharing the CPUs with the server and PostgreSQL: " +
		"SSE by an HTTP/1.1 request written by hand, counting data lines; WebSocket by github.com/coder/websocket, counting the events of each message; " +
		"gRPC by connect-go's gRPC client over unencrypted HTTP/2, decoding each event message")
	rec.note("events: fan-out posts CloudEvents batches of %d on %d connections as fast as the slowest subscriber allows (at most %d events ahead of it, half the server's slow-consumer limit); "+
		"deliveries are events received, all subscribers together", fanoutBatch, fanoutPosters, fanoutLag)
	rec.note("events: latency posts one event at a time at %d/s; it runs from just before the post to the subscriber reading the event, on one monotonic clock (stamped in the event's data); "+
		"every subscriber's every event of the window counts", latencyRate)
	rec.note("events: the catch-up store is filled with %d events beforehand; the clock runs from the subscriber's dial to its last event", e.cfg.CatchUp)

	for run := range e.cfg.Runs {
		e.log.Info("events", "run", run+1)
		if err := b.ingest(ctx, rec); err != nil {
			return err
		}
		if err := b.pg.settle(ctx); err != nil {
			return err
		}
		claims, err := b.enroll(ctx)
		if err != nil {
			return fmt.Errorf("ev/enroll/c8: %w", err)
		}
		rec.add("ev/enroll/c8", claims)
		for _, f := range fanouts {
			k := fmt.Sprintf("ev/fanout/%s/%d", f.kind, f.subs)
			d, in, err := b.fanout(ctx, f.kind, f.subs)
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			rec.add(k, d)
			rec.add(k+"/ingest", in)
		}
		for _, kind := range []string{viaSSE, viaWS, viaGRPC} {
			lat, posts, err := b.latency(ctx, kind, small)
			if err != nil {
				return fmt.Errorf("latency over %s: %w", kind, err)
			}
			rec.add("ev/lat/"+kind+"/p50", percentile(lat, 0.50))
			rec.add("ev/lat/"+kind+"/p99", percentile(lat, 0.99))
			rec.add("ev/lat/"+kind+"/max", percentile(lat, 1))
			rec.add("ev/lat/"+kind+"/post", percentile(posts, 0.99))
		}
		sse, direct, err := b.catchUp(ctx)
		if err != nil {
			return fmt.Errorf("catch-up: %w", err)
		}
		rec.add("ev/catchup/sse", sse)
		rec.add("ev/catchup/store", direct)
	}
	return nil
}

func kindName(kind string) string {
	switch kind {
	case viaWS:
		return "WebSocket"
	case viaGRPC:
		return "gRPC"
	}
	return "SSE"
}

// ingest measures the ingest points, one after the other.
func (b *eventsBench) ingest(ctx context.Context, rec *recorder) error {
	post := func(s *relayhttp.Sink) func(context.Context) error {
		return func(ctx context.Context) error { return s.Send(ctx, b.maker.batch(ingestBatch, false)) }
	}
	type point struct {
		key     string
		clients int
		fn      func(context.Context) error
	}
	var points []point
	for _, c := range ingestClients {
		points = append(points, point{fmt.Sprintf("ev/ingest/ce/c%d", c), c, post(b.ce)})
	}
	points = append(points,
		point{"ev/ingest/bc/c4", 4, post(b.bc)},
		point{"ev/ingest/store/c4", 4, func(ctx context.Context) error {
			_, err := b.pg.Append(ctx, storeEvents(b.maker.batch(ingestBatch, false)))
			return err
		}},
		point{"ev/ingest/mem/c4", 4, post(b.memCE)},
	)
	for _, p := range points {
		rate, err := closedLoop(ctx, p.clients, warmup(b.e.cfg), b.e.cfg.Duration, p.fn)
		if err != nil {
			return fmt.Errorf("%s: %w", p.key, err)
		}
		rec.add(p.key, rate*ingestBatch)
	}
	return nil
}

// fanout opens n subscribers over kind and posts as fast as the slowest
// allows; it returns the deliveries per second, all subscribers together,
// and the events ingested per second.
func (b *eventsBench) fanout(ctx context.Context, kind string, n int) (deliveries, ingested float64, err error) {
	b.e.log.Info("events: fan-out", "over", kind, "subscribers", n)
	set, err := subscribe(ctx, b.pgAPI, b.keys, kind, n, -1, 0, false, b.maker.clock)
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if cerr := set.close(); err == nil {
			err = cerr
		}
	}()
	var posted atomic.Int64
	l := startLoad(ctx, fanoutPosters, 0, func(ctx context.Context) error {
		for posted.Load()-set.least() > fanoutLag {
			if err := set.err(); err != nil {
				return err
			}
			if !sleep(ctx, 200*time.Microsecond) {
				return ctx.Err()
			}
		}
		if err := b.ce.Send(ctx, b.maker.batch(fanoutBatch, false)); err != nil {
			return err
		}
		posted.Add(fanoutBatch)
		return nil
	})
	ok := sleep(ctx, warmup(b.e.cfg))
	t0, d0, p0 := time.Now(), set.total(), posted.Load()
	ok = ok && sleep(ctx, b.e.cfg.Duration)
	// A short window in which no post completed (the posters waited for
	// slow subscribers) stretches until one does, up to 30 s, as measure
	// does: a rate of 0 would say nothing.
	for stretch := time.Now().Add(30 * time.Second); ok && posted.Load() == p0 && time.Now().Before(stretch); {
		ok = sleep(ctx, 10*time.Millisecond)
	}
	t1, d1, p1 := time.Now(), set.total(), posted.Load()
	if err := l.stop(); err != nil {
		return 0, 0, err
	}
	if !ok {
		return 0, 0, ctx.Err()
	}
	if err := set.err(); err != nil {
		return 0, 0, err
	}
	secs := t1.Sub(t0).Seconds()
	return float64(d1-d0) / secs, float64(p1-p0) / secs, nil
}

// latency opens n subscribers over kind, posts one event at a time at
// latencyRate, waits until every subscriber has every event, and returns
// the latencies of the events sent in the window, sorted, and the round
// trips of their posts (until the API answered, the event stored), sorted.
func (b *eventsBench) latency(ctx context.Context, kind string, n int) (lat, posts []time.Duration, err error) {
	b.e.log.Info("events: latency", "over", kind, "subscribers", n)
	clock := b.maker.clock
	set, err := subscribe(ctx, b.pgAPI, b.keys, kind, n, -1, 0, true, clock)
	if err != nil {
		return nil, nil, err
	}
	defer set.close() //nolint:errcheck // closed below; a second close returns the same
	var posted atomic.Int64
	var mu sync.Mutex
	var trips []sample
	l := startLoad(ctx, pacedWorkers, latencyRate, func(ctx context.Context) error {
		sent := clock.now()
		if err := b.ce.Send(ctx, b.maker.batch(1, true)); err != nil {
			return err
		}
		took := clock.now() - sent
		posted.Add(1)
		mu.Lock()
		trips = append(trips, sample{sent: sent, took: took})
		mu.Unlock()
		return nil
	})
	ok := sleep(ctx, warmup(b.e.cfg))
	from := clock.now()
	ok = ok && sleep(ctx, b.e.cfg.Duration)
	to := clock.now()
	if err := l.stop(); err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, ctx.Err()
	}
	if err := set.waitAll(ctx, posted.Load(), eventsStall); err != nil {
		return nil, nil, err
	}
	if err := set.close(); err != nil {
		return nil, nil, err
	}
	lat = set.samples(from, to)
	if len(lat) == 0 {
		return nil, nil, fmt.Errorf("no event sent in the window reached a subscriber")
	}
	for _, t := range trips {
		if t.sent >= from && t.sent < to {
			posts = append(posts, time.Duration(t.took))
		}
	}
	slices.Sort(posts)
	return lat, posts, nil
}

// catchUp measures a subscriber resuming CatchUp events behind the newest,
// and the same events read straight from the store.
func (b *eventsBench) catchUp(ctx context.Context) (sse, direct float64, err error) {
	n := int64(b.e.cfg.CatchUp)
	head, err := b.catch.Head(ctx)
	if err != nil {
		return 0, 0, err
	}
	from := max(head-n, 0)
	b.e.log.Info("events: catch-up", "from", from, "to", head)

	start := time.Now()
	set, err := subscribe(ctx, b.catchAPI, b.keys, viaSSE, 1, from, head-from, false, b.maker.clock)
	if err != nil {
		return 0, 0, err
	}
	err = set.waitAll(ctx, head-from, eventsStall)
	if cerr := set.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, 0, err
	}
	sse = float64(head-from) / set.list[0].at.Sub(start).Seconds()

	start = time.Now()
	read := int64(0)
	for pos := from; pos < head; {
		evs, err := b.catch.Read(ctx, &eventsapi.ReadRequest{After: pos, Before: head + 1, Limit: catchUpPage})
		if err != nil {
			return 0, 0, err
		}
		if len(evs) == 0 {
			break
		}
		read += int64(len(evs))
		pos = evs[len(evs)-1].Position
	}
	return sse, float64(read) / time.Since(start).Seconds(), nil
}
