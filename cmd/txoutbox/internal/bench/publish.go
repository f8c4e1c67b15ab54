package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/cputime"
	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
)

// publishClients are the concurrent clients of the publish scenario.
var publishClients = []int{1, 4, 16}

// cpuSuffix marks the key of a point's client CPU per transaction.
const cpuSuffix = "/cpu"

// wakeClients is the concurrency of the wake-up comparison: the point where
// a NOTIFY per transaction hurts most.
const wakeClients = 16

// wake-up variants of the publish scenario, all with one relay embedded in
// the producing process and one event per transaction.
var wakeVariants = []struct {
	key, name string
	short     string
	signal    wakeSignal
	inProcess bool // OnCommit(relay.Wake)
	listen    bool // a LISTEN connection wakes the relay on each notification
}{
	{"wake/poll", "relay polling, no wake-up signal", "no wake-up", wakeNone, false, false},
	{"wake/inprocess", "relay polling + in-process Wake (used)", "", wakeNone, true, false},
	{"wake/notify", "relay + NOTIFY per tx → LISTEN → Wake (rejected)", "", notifyEveryTx, false, true},
	{"wake/debounced", "relay + NOTIFY ≤ 1 per 5 ms → LISTEN → Wake (rejected)", "", notifyDebounced, false, true},
}

// runPublish measures request-like transactions with 0, 1 and 10 events at
// each concurrency, beside the same transactions writing the same rows with
// a hand-written INSERT; then what waking the relay costs the producers.
func runPublish(ctx context.Context, e *env, rec *recorder) error {
	s, err := e.newSchema(ctx, "publish")
	if err != nil {
		return err
	}
	defer s.drop()
	pool, err := s.pool(ctx, wakeClients+8)
	if err != nil {
		return err
	}
	defer pool.Close()
	client, err := outbox.New(pool, e.reg, &outbox.Config{Source: "billing-api", Schema: s.name})
	if err != nil {
		return err
	}

	for _, c := range publishClients {
		none := fmt.Sprintf("none/c%d", c)
		rec.define(none, fmt.Sprintf("tx, no events, %s", plural(c, "client")), "no events", "tx/s", goal{})
		for _, n := range []int{1, 10} {
			flush := fmt.Sprintf("flush/e%d/c%d", n, c)
			hand := fmt.Sprintf("hand/e%d/c%d", n, c)
			valid := fmt.Sprintf("handvalid/e%d/c%d", n, c)
			rec.define(flush, fmt.Sprintf("tx + Publish/Flush %s, %s", plural(n, "event"), plural(c, "client")), "no relay", "tx/s",
				ratioAtLeast(0.95, "≥ 0.95× hand-written"), hand, valid, none)
			rec.define(flush+cpuSuffix, "  client CPU per tx, Publish/Flush", "", "µs", goal{}, hand+cpuSuffix)
			rec.define(hand, "  tx + hand-written INSERT of the same rows", "hand-written", "tx/s", goal{}, none)
			rec.define(hand+cpuSuffix, "  client CPU per tx, hand-written", "hand-written", "µs", goal{})
			rec.define(valid, "  tx + schema validation + hand-written INSERT", "validated hand-written", "tx/s", goal{}, none)
		}
	}
	for i, v := range wakeVariants {
		g := goal{}
		if v.inProcess {
			g = ratioAtLeast(0.95, "≥ 0.95× no wake-up")
		}
		base := []string{"wake/poll"}
		if i == 0 {
			base = []string{fmt.Sprintf("flush/e1/c%d", wakeClients)}
		}
		rec.define(v.key, fmt.Sprintf("tx + Flush 1 event, %d clients, %s", wakeClients, v.name), v.short, "tx/s", g, base...)
		rec.define(v.key+"/p99", "  commit→sink p99", "", "ms", goal{})
	}
	rec.note("publish: a transaction is BEGIN, one business INSERT, the events, COMMIT; "+
		"Publish/Flush includes Publish's schema validation and JSON encoding; the hand-written INSERT writes the same rows, JSON-encoded, unvalidated "+
		"(the physical floor), the validated one validates them first (the same work as Publish/Flush but for the insert path); "+
		"each point runs %s after a %s warm-up, both tables truncated before it", e.cfg.Duration, warmup(e.cfg))
	rec.note("publish: client CPU per tx is this process's CPU time (user and system, PostgreSQL excluded) over a point's warm-up and window, " +
		"divided by the transactions run: the client's share, which competes with PostgreSQL for the same cores and is steadier than tx/s on a busy machine")
	rec.note("publish: the wake-up rows run one relay in the producing process, delivering to a no-op sink; " +
		"the relay polling with no wake-up signal is compared with no relay at all (tx + Publish/Flush 1 event, 16 clients), the others with it")

	for run := range e.cfg.Runs {
		e.log.Info("publish", "run", run+1)
		for _, c := range publishClients {
			points := []struct {
				key    string
				path   insertPath
				events int
			}{
				{fmt.Sprintf("none/c%d", c), viaFlush, 0},
				{fmt.Sprintf("flush/e1/c%d", c), viaFlush, 1},
				{fmt.Sprintf("hand/e1/c%d", c), viaHandwritten, 1},
				{fmt.Sprintf("handvalid/e1/c%d", c), viaHandValidated, 1},
				{fmt.Sprintf("flush/e10/c%d", c), viaFlush, 10},
				{fmt.Sprintf("hand/e10/c%d", c), viaHandwritten, 10},
				{fmt.Sprintf("handvalid/e10/c%d", c), viaHandValidated, 10},
			}
			for _, pt := range points {
				if err := truncate(ctx, s); err != nil {
					return err
				}
				p := newProducer(pool, client, pt.path, pt.events, wakeNone)
				cpu := cputime.Process()
				rate, err := closedLoop(ctx, c, warmup(e.cfg), e.cfg.Duration, p.tx)
				if err != nil {
					return fmt.Errorf("%s: %w", pt.key, err)
				}
				rec.add(pt.key, rate)
				if rec.find(pt.key+cpuSuffix) != nil && cpu > 0 {
					rec.add(pt.key+cpuSuffix, float64((cputime.Process()-cpu).Microseconds())/float64(p.seq.Load()))
				}
			}
		}
		for _, v := range wakeVariants {
			rate, p99, err := measureWake(ctx, e, s, pool, client, v.signal, v.inProcess, v.listen)
			if err != nil {
				return fmt.Errorf("%s: %w", v.key, err)
			}
			rec.add(v.key, rate)
			rec.add(v.key+"/p99", p99)
		}
	}
	return nil
}

func warmup(cfg *Config) time.Duration { return cfg.Duration / 4 }

func truncate(ctx context.Context, s *schema) error {
	_, err := s.env.admin.Exec(ctx, `TRUNCATE `+s.table(outboxsql.TableEvents)+`, `+s.table(businessTable))
	if err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	return nil
}

// measureWake runs wakeClients producers of one event per transaction with
// a relay delivering to a no-op sink, woken as asked, and returns the
// producers' tx/s and the commit→sink p99 in milliseconds.
func measureWake(ctx context.Context, e *env, s *schema, pool *pgxpool.Pool, client *outbox.Client,
	signal wakeSignal, inProcess, listen bool) (rate, p99 float64, err error) {
	if err := truncate(ctx, s); err != nil {
		return 0, 0, err
	}
	lat := newLatencies()
	rpool, err := s.pool(ctx, 4)
	if err != nil {
		return 0, 0, err
	}
	defer rpool.Close()
	rs, err := startRelays(ctx, e, s, rpool, noopSink{newCounter(0, lat)}, 1, relay.ModePoll)
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if serr := rs.stop(); err == nil && serr != nil {
			err = serr
		}
	}()
	if inProcess {
		defer client.OnCommit(rs.wake)()
	}
	if listen {
		stop, err := listenAndWake(ctx, rpool, rs)
		if err != nil {
			return 0, 0, err
		}
		defer stop()
	}
	p := newProducer(pool, client, viaFlush, 1, signal)
	p.committed = lat.commit
	w := warmup(e.cfg)
	from := time.Now().Add(w)
	rate, err = closedLoop(ctx, wakeClients, w, e.cfg.Duration, p.tx)
	if err != nil {
		return 0, 0, err
	}
	to := from.Add(e.cfg.Duration)
	if err := drained(ctx, lat); err != nil {
		return 0, 0, err
	}
	l, _ := lat.window(from, to)
	return rate, percentile(l, 0.99), nil
}

// listenAndWake holds a connection that LISTENs on the bench's channel and
// wakes the relays on every notification, as a NOTIFY-driven relay would.
func listenAndWake(ctx context.Context, pool *pgxpool.Pool, rs *relays) (stop func(), err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		conn.Release()
		return nil, fmt.Errorf("listen: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
				return
			}
			rs.wake()
		}
	}()
	return func() {
		cancel()
		<-done
		// The wait was cut short mid-read: the connection is not reusable.
		_ = conn.Conn().Close(context.Background())
		conn.Release()
	}, nil
}

// drained waits until every committed event arrived at the sink, or for at
// most drainWait.
func drained(ctx context.Context, lat *latencies) error {
	const drainWait = 30 * time.Second
	deadline := time.Now().Add(drainWait)
	for lat.pending() > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d committed events not delivered after %s", lat.pending(), drainWait)
		}
		if !sleep(ctx, 20*time.Millisecond) {
			return errors.Join(errors.New("interrupted while draining"), ctx.Err())
		}
	}
	return nil
}

// plural returns "1 event", "10 events".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
