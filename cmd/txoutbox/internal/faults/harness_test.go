package faults

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relayhttp"
	"github.com/txoutbox/txoutbox/topics"
)

// env is one fault test's database: the outbox tables, a counter row per
// key, and an outbox client publishing the faults.CounterIncremented topic.
type env struct {
	url    string
	pool   *pgxpool.Pool
	client *outbox.Client
	keys   []string
	mode   relay.Mode // how the relays deliver; the writers emit messages in ModeMessages
}

var registry struct {
	once sync.Once
	reg  *topics.Registry
	err  error
}

func loadRegistry(t testing.TB) *topics.Registry {
	t.Helper()
	registry.once.Do(func() { registry.reg, registry.err = topics.Load("testdata/topics.yaml") })
	if registry.err != nil {
		t.Fatal(registry.err)
	}
	return registry.reg
}

// newEnv migrates the database at url and creates nkeys counters, for relays
// delivering in mode: in ModeMessages the migration creates the slot of
// message storage, and the writers' client emits messages.
func newEnv(t *testing.T, url string, nkeys int, mode relay.Mode) *env {
	t.Helper()
	ctx := t.Context()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := outbox.Migrate(ctx, pool, &outbox.MigrateConfig{Messages: mode == relay.ModeMessages}); err != nil {
		t.Fatal(err)
	}
	e := &env{url: url, pool: pool, mode: mode}
	for i := range nkeys {
		e.keys = append(e.keys, fmt.Sprintf("key-%03d", i))
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE fault_counters (key text PRIMARY KEY, seq bigint NOT NULL DEFAULT 0)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO fault_counters (key) SELECT unnest($1::text[])`, e.keys); err != nil {
		t.Fatal(err)
	}
	storage := outbox.StorageTable
	if mode == relay.ModeMessages {
		storage = outbox.StorageMessages
	}
	e.client, err = outbox.New(pool, loadRegistry(t), &outbox.Config{Source: "faults-suite", Storage: storage, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

var discard = slog.New(slog.DiscardHandler)

// ledger is what the writers were told: the events whose transaction
// reported a successful commit, those whose COMMIT failed (the transaction
// may or may not have committed), and the count of transactions that failed
// before COMMIT and were rolled back.
type ledger struct {
	mu       sync.Mutex
	acked    map[string]eventRef
	inDoubt  map[string]eventRef
	failedTx int
	lastErr  error
}

// eventRef is an event as its data names it: the counter and its value.
type eventRef struct {
	key string
	seq int64
}

func (l *ledger) add(id string, ref eventRef, commitErr error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if commitErr != nil {
		l.inDoubt[id] = ref
		l.lastErr = commitErr
		return
	}
	l.acked[id] = ref
}

func (l *ledger) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failedTx++
	l.lastErr = err
}

// errorCount returns the transactions that reported an error to their
// writer: failed before COMMIT, or at it.
func (l *ledger) errorCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failedTx + len(l.inDoubt)
}

func (l *ledger) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// writers publish one event per transaction until stopped.
type writers struct {
	stop chan struct{}
	wg   sync.WaitGroup
	led  *ledger
}

// writerConfig shapes the writers' load.
type writerConfig struct {
	n    int           // writers
	pace time.Duration // pause after each transaction, jittered ±50%
	// ownKeys gives each writer keys of its own, and its own job id, so that
	// bc-events bulk posts carry many events; by default writers share
	// every key and contend for its counter row, and each transaction is a
	// job of its own.
	ownKeys bool
}

// startWriters starts cfg.n writers. Each transaction locks a counter row
// (UPDATE ... RETURNING the new value), publishes the value through a
// session and flushes it into the same transaction, and commits: a key's
// events are serialised by its row, as a business entity's would be.
func (e *env) startWriters(t *testing.T, cfg writerConfig) *writers {
	t.Helper()
	w := &writers{stop: make(chan struct{}), led: &ledger{acked: map[string]eventRef{}, inDoubt: map[string]eventRef{}}}
	for i := range cfg.n {
		keys := e.keys
		jobID := ""
		if cfg.ownKeys {
			keys = nil
			for j := i; j < len(e.keys); j += cfg.n {
				keys = append(keys, e.keys[j])
			}
			jobID = fmt.Sprintf("job-writer-%d", i)
		}
		w.wg.Go(func() { e.write(i, keys, jobID, cfg.pace, w) })
	}
	t.Cleanup(func() { w.halt() })
	return w
}

func (e *env) write(writer int, keys []string, jobID string, pace time.Duration, w *writers) {
	rng := rand.New(rand.NewPCG(uint64(writer), uint64(time.Now().UnixNano())))
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		key := keys[rng.IntN(len(keys))]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		id, ref, err, commitErr := e.publishOne(ctx, writer, key, jobID)
		cancel()
		wait := pace
		switch {
		case err != nil:
			w.led.fail(err)
			wait = max(pace, 20*time.Millisecond) // the database is away: do not spin
		case id != "":
			w.led.add(id, ref, commitErr)
		}
		if wait > 0 {
			select {
			case <-w.stop:
				return
			case <-time.After(wait/2 + rand.N(wait)):
			}
		}
	}
}

// counterData is the data of faults.CounterIncremented.
type counterData struct {
	ID     string `json:"id"`
	Seq    int64  `json:"seq"`
	Writer int    `json:"writer"`
}

// publishOne runs one transaction. err is a failure before COMMIT (rolled
// back); commitErr a failed COMMIT, whose outcome the writer cannot know.
func (e *env) publishOne(ctx context.Context, writer int, key, jobID string) (id string, ref eventRef, err, commitErr error) {
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		return "", ref, fmt.Errorf("begin: %w", err), nil
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // no-op after a commit
	ref.key = key
	if err := tx.QueryRow(ctx, `UPDATE fault_counters SET seq = seq + 1 WHERE key = $1 RETURNING seq`, key).Scan(&ref.seq); err != nil {
		return "", ref, fmt.Errorf("bump counter: %w", err), nil
	}
	sess := e.client.ServiceSession(jobID)
	if err := sess.Publish(ctx, "Incremented", "Counter", counterData{ID: key, Seq: ref.seq, Writer: writer}); err != nil {
		return "", ref, err, nil
	}
	id = sess.Unflushed()[0].ID.String()
	if err := sess.Flush(ctx, tx); err != nil {
		return "", ref, err, nil
	}
	return id, ref, nil, tx.Commit(ctx)
}

// halt stops the writers and waits for them.
func (w *writers) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	w.wg.Wait()
}

// published returns the committed events per key: the counters' values.
func (e *env) published(t testing.TB) map[string]int64 {
	t.Helper()
	rows, err := e.pool.Query(t.Context(), `SELECT key, seq FROM fault_counters`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	var key string
	var seq int64
	if _, err := pgx.ForEachRow(rows, []any{&key, &seq}, func() error { out[key] = seq; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func total(m map[string]int64) int {
	n := int64(0)
	for _, v := range m {
		n += v
	}
	return int(n)
}

// waitDelivered waits until the sink holds every committed event.
func (e *env) waitDelivered(t *testing.T, s *sink, timeout time.Duration, diag func() string) map[string]int64 {
	t.Helper()
	pub := e.published(t)
	want := total(pub)
	waitUntil(t, timeout, func() string {
		var pending, dead int
		_ = e.pool.QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'dead') FROM txoutbox_events`).Scan(&pending, &dead)
		msg := fmt.Sprintf("the sink to hold all %d committed events; it holds %d (outbox: %d pending, %d dead)", want, s.distinct(), pending, dead)
		if diag != nil {
			msg += "\n" + diag()
		}
		return msg
	}, func() bool { return s.distinct() >= want })
	return pub
}

// waitUntil polls cond until it holds, failing the test after timeout with
// what it waited for.
func waitUntil(t testing.TB, timeout time.Duration, what func() string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// summary is a fault test's result, logged as one line that RELIABILITY.md
// quotes.
type summary struct {
	fault      string
	published  int // committed events (the counters' sum)
	acked      int // of those, whose writer saw COMMIT succeed
	delivered  int // distinct events the sink holds
	duplicates int // deliveries beyond the first of an event
	lost       int
	extra      []string
}

func (s summary) String() string {
	line := fmt.Sprintf("fault=%s published=%d delivered=%d duplicates=%d lost=%d acked=%d", s.fault, s.published, s.delivered, s.duplicates, s.lost, s.acked)
	if len(s.extra) > 0 {
		line += " " + strings.Join(s.extra, " ")
	}
	return line
}

// checkOptions says which duplicates a fault may cause.
//
// A delivery of an event that had arrived before is charged to the sender
// of the delivery just before it: that one's outcome went unrecorded, which
// is why the event was sent again. A relay killed with a batch in flight
// leaves that batch unrecorded; its successor, reading oldest first,
// usually sends those events in its first batch, and if it is killed
// before recording that one too, a third relay sends them again. The
// events then arrive three times, each delivery again charged to the kill
// that caused it.
type checkOptions struct {
	// sameSenderDuplicates allows one sender (one relay process or
	// instance) to deliver an event twice: a lost answer makes it retry.
	// Otherwise only another sender may deliver an event again.
	sameSenderDuplicates bool
	// maxRedeliveredPerSender, when positive, bounds how many events each
	// sender delivered that another sender delivered again after it.
	maxRedeliveredPerSender int
	// lastBatch, when positive, says that every sender may have been
	// killed with a batch of up to lastBatch events in flight, and nothing
	// else: the events a sender delivered that another delivered again
	// after it must be among the last lastBatch events it delivered.
	lastBatch int
	// noDuplicates requires every event to be delivered exactly once.
	noDuplicates bool
}

// check compares what the sink received with what was committed (pub) and
// what the writers were told (led), fails t with the problems found, and
// returns the counts.
func check(t *testing.T, name string, pub map[string]int64, led *ledger, s *sink, opts checkOptions) summary {
	t.Helper()
	sum, problems := verify(name, pub, led, s.snapshot(), opts)
	if len(problems) > 0 {
		t.Errorf("%s: %d problems:\n  %s", sum, len(problems), strings.Join(problems, "\n  "))
	}
	return sum
}

// verify is check on the sink's arrivals, arr: it returns the counts and
// the first problems found.
func verify(name string, pub map[string]int64, led *ledger, arr []arrival, opts checkOptions) (summary, []string) {
	sum := summary{fault: name, published: total(pub), acked: led.ackedCount()}

	firstFrom := map[string]string{} // event id → sender of its first delivery
	idOf := map[eventRef]string{}    // key/seq → event id
	firsts := map[string][]int64{}   // key → seqs in order of first arrival
	latest := map[string]int{}       // event id → its latest delivery, an index in arr
	sent := map[string]int{}         // sender → its deliveries so far
	nth := make([]int, len(arr))     // arr[i] is its sender's nth[i]-th delivery, from 0
	unrecorded := map[string][]int{} // sender → its deliveries delivered again by another (indices in arr)
	var problems []string
	problem := func(format string, args ...any) {
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	for i, a := range arr {
		ref := eventRef{a.key, a.seq}
		if id, ok := idOf[ref]; ok && id != a.id {
			problem("%s/%d arrived with two event ids: %s and %s", a.key, a.seq, id, a.id)
		}
		idOf[ref] = a.id
		nth[i] = sent[a.from]
		sent[a.from]++
		prev, dup := latest[a.id]
		latest[a.id] = i
		if !dup {
			firstFrom[a.id] = a.from
			firsts[a.key] = append(firsts[a.key], a.seq)
			continue
		}
		sum.duplicates++
		if from := arr[prev].from; a.from != from {
			unrecorded[from] = append(unrecorded[from], prev)
		} else if !opts.sameSenderDuplicates {
			problem("event %s (%s/%d) delivered twice by the same sender %q", a.id, a.key, a.seq, a.from)
		}
	}
	sum.delivered = len(firstFrom)

	// Per key, first arrivals are 1..N in order: nothing lost, nothing
	// reordered, nothing that was not committed.
	for key, n := range pub {
		got := firsts[key]
		for i, seq := range got {
			if seq != int64(i+1) {
				problem("key %s: arrival %d is seq %d, want %d (first arrivals %v)", key, i+1, seq, i+1, clip(got))
				break
			}
		}
		if int64(len(got)) < n {
			sum.lost += int(n) - len(got)
			problem("key %s: %d of %d committed events arrived", key, len(got), n)
		}
		if int64(len(got)) > n {
			problem("key %s: %d events arrived for %d committed", key, len(got), n)
		}
	}
	for key := range firsts {
		if _, ok := pub[key]; !ok {
			problem("events arrived for unknown key %q", key)
		}
	}

	led.mu.Lock()
	for id, ref := range led.acked {
		if _, ok := firstFrom[id]; !ok {
			problem("event %s (%s/%d) reported committed but never arrived", id, ref.key, ref.seq)
		}
	}
	for id := range firstFrom {
		_, acked := led.acked[id]
		_, doubt := led.inDoubt[id]
		if !acked && !doubt {
			problem("event %s arrived but no writer committed it", id)
		}
	}
	led.mu.Unlock()

	if opts.noDuplicates && sum.duplicates > 0 {
		problem("%d duplicates, want none", sum.duplicates)
	}
	if opts.maxRedeliveredPerSender > 0 || opts.lastBatch > 0 {
		sum.extra = append(sum.extra, fmt.Sprintf("senders_redelivered=%d", len(unrecorded)))
	}
	for _, from := range slices.Sorted(maps.Keys(unrecorded)) {
		idx := unrecorded[from]
		if limit := opts.maxRedeliveredPerSender; limit > 0 && len(idx) > limit {
			problem("%d events delivered by %s were delivered again by another sender, more than %d", len(idx), from, limit)
		}
		if opts.lastBatch > 0 {
			early := 0
			for _, i := range idx {
				if sent[from]-nth[i] > opts.lastBatch {
					early++
				}
			}
			if early > 0 {
				problem("%s left %d events to be delivered again, %d of them before its last %d deliveries: more than the batch it had in flight when it died",
					from, len(idx), early, opts.lastBatch)
			}
		}
	}
	return sum, problems
}

func clip(s []int64) []int64 {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// faultMaxAttempts is the relays' MaxAttempts in the suite: more than a
// fault window takes at the suite's backoff.
const faultMaxAttempts = 10_000

// runRelay runs an in-process relay delivering env's outbox to sinkURL, in
// env's mode, until the returned stop is called (also at cleanup). Stop
// returns Run's error. The mode decides cfg's Mode and PollInterval.
func (e *env) runRelay(t *testing.T, sinkURL string, format relayhttp.Format, sinkTimeout time.Duration, cfg relay.Config) (r *relay.Relay, stop func() error) {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), e.url)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := relayhttp.New(&relayhttp.Config{URL: sinkURL, Format: format, Timeout: sinkTimeout, Logger: cfg.Logger})
	if err != nil {
		t.Fatal(err)
	}
	// An event failing retryably is dead-lettered after MaxAttempts. The
	// suite's backoff is scaled down (tens of milliseconds, not seconds),
	// its fault windows are not: allow the attempts a window takes, so
	// that a fault tests delivery, not the dead-letter horizon.
	cfg.MaxAttempts = cmp.Or(cfg.MaxAttempts, faultMaxAttempts)
	cfg.Mode = e.mode
	cfg.PollInterval = pollInterval(e.mode)
	r, err = relay.New(pool, sink, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
			_ = sink.Close()
			pool.Close()
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return r, stop
}

// logRecorder is a slog.Handler that keeps warnings and errors, for
// diagnosis, and counts lost partition leases.
type logRecorder struct {
	mu       sync.Mutex
	lines    []string
	lostPart map[int16]bool
	lost     int
}

func newLogRecorder() *logRecorder { return &logRecorder{lostPart: map[int16]bool{}} }

func (l *logRecorder) Enabled(_ context.Context, lvl slog.Level) bool { return lvl >= slog.LevelWarn }

func (l *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Level.String() + " " + rec.Message)
	var parts []int16
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		if a.Key == "parts" {
			if p, ok := a.Value.Any().([]int16); ok {
				parts = p
			}
		}
		return true
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	if rec.Message == "lost partition leases" {
		l.lost++
		for _, p := range parts {
			l.lostPart[p] = true
		}
	}
	if len(l.lines) < 200 {
		l.lines = append(l.lines, b.String())
	}
	return nil
}

func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

func (l *logRecorder) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// lostLeases returns how many times a relay found a partition taken from it,
// and which partitions.
func (l *logRecorder) lostLeases() (int, []int16) {
	l.mu.Lock()
	defer l.mu.Unlock()
	parts := make([]int16, 0, len(l.lostPart))
	for p := range l.lostPart {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	return l.lost, parts
}
