package main

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	outboxadmin "github.com/txoutbox/txoutbox/cmd/txoutbox/internal/admin"
	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/eventsapi/listener"
	"github.com/txoutbox/txoutbox/internal/invoices"
	"github.com/txoutbox/txoutbox/internal/invoices/api"
	"github.com/txoutbox/txoutbox/internal/pgtest"
	"github.com/txoutbox/txoutbox/internal/sinkserver"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relayhttp"
	"github.com/txoutbox/txoutbox/topics"
)

// demoTopics is a copy of the repository's topic_definitions.yaml, which
// the example service publishes, so the demo runs from any directory.
//
//go:embed demo_topics.yaml
var demoTopics []byte

const demoUsage = `
Run the whole path on this machine and show what arrives: a throwaway
PostgreSQL (unless --database-url), the example Echo invoices service, an
embedded relay woken by the outbox client after each commit, the events API
in memory as its sink (what "txoutbox sink" runs, live page included), and
a listener (package eventsapi/listener) following the events API's stream
as a consumer would. The demo drives --requests requests against the
service, waits until every event published has arrived at the events API
and at the listener, prints counts and latency, shuts everything down and
exits 0 only if nothing was lost.

Each request issues, pays or cancels an invoice: one business write and one
event in one transaction. Latency is measured from the event's publish time
(inside the request's transaction, just before its commit) to the moment the
events API received it, on the same clock: an upper bound of commit to
delivery.

The relay streams the WAL (relay --mode wal) when the server runs
wal_level=logical and the role has REPLICATION, as the throwaway PostgreSQL
does, and polls the table otherwise; the "mode" line says which.

With --database-url the demo works in a schema of its own
(txoutbox_demo_...), which it drops at the end; nothing else is touched.
The throwaway PostgreSQL needs its binaries (initdb, postgres) installed.`

const demoExamples = `  txoutbox demo
  txoutbox demo --requests 2000 --concurrency 16
  txoutbox demo --database-url postgres://postgres@127.0.0.1:5432/postgres --format briteevents`

// Defaults of txoutbox demo.
const (
	demoRequestsDefault    = 300
	demoConcurrencyDefault = 8
	demoTimeoutDefault     = 30 * time.Second
)

type demoFlags struct {
	databaseURL string
	requests    int
	concurrency int
	format      string
	timeout     time.Duration
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f demoFlags
	fs := newFlagSet("demo", demoUsage, demoExamples)
	fs.StringVar(&f.databaseURL, "database-url", "", "PostgreSQL `URL` to run in, in a schema of its own (default: a throwaway server)")
	fs.IntVar(&f.requests, "requests", demoRequestsDefault, "requests to send to the service")
	fs.IntVar(&f.concurrency, "concurrency", demoConcurrencyDefault, "requests in flight at once")
	fs.StringVar(&f.format, "format", string(relayhttp.FormatCloudEvents), "wire `format` the relay posts: cloudevents or briteevents")
	fs.DurationVar(&f.timeout, "timeout", demoTimeoutDefault, "how long to wait for the events after the last request")
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	switch {
	case f.requests <= 0:
		return fmt.Errorf("demo: --requests: %d is not a positive number", f.requests)
	case f.concurrency <= 0:
		return fmt.Errorf("demo: --concurrency: %d is not a positive number", f.concurrency)
	case f.format != string(relayhttp.FormatCloudEvents) && f.format != string(relayhttp.FormatBriteEvents):
		return fmt.Errorf("demo: --format: %q is not cloudevents or briteevents", f.format)
	case f.timeout <= 0:
		return fmt.Errorf("demo: --timeout: %s is not positive", f.timeout)
	}
	d := &demo{flags: f, out: stdout, start: time.Now()}
	d.log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	err := d.run(ctx)
	if cerr := d.close(); err == nil {
		err = cerr
	}
	if err != nil {
		if ctx.Err() != nil {
			return errors.New("demo: interrupted")
		}
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// demo is one run of txoutbox demo and everything it started, stopped by
// close in the reverse order.
type demo struct {
	flags demoFlags
	out   io.Writer
	log   *slog.Logger
	start time.Time

	cluster *pgtest.Cluster
	pool    *pgxpool.Pool
	schema  string // dropped by close when the database is the user's
	client  *outbox.Client
	sink    *sinkserver.Server
	servers []*http.Server
	serving sync.WaitGroup

	heard        atomic.Int64 // events the listener handled
	misordered   atomic.Int64 // of them, at or before the position of the one before
	listenerDone chan error
	stopListener context.CancelFunc

	relayDone   chan error
	stopRelay   context.CancelFunc
	removeHook  func()
	httpSink    *relayhttp.Sink
	batches     atomic.Int64
	batchTime   atomic.Int64 // nanoseconds, summed
	failedReqs  atomic.Int64
	okReqs      atomic.Int64
	lastFailure atomic.Value // string
}

func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

func (d *demo) run(ctx context.Context) error {
	d.printf("txoutbox demo: requests → Echo service → outbox table → relay → events API\n\n")
	reg, err := topics.Parse("topic_definitions.yaml", demoTopics)
	if err != nil {
		return fmt.Errorf("topic definitions: %w", err)
	}
	if err := d.openDatabase(ctx); err != nil {
		return err
	}
	client, err := outbox.New(d.pool, reg, &outbox.Config{Source: "invoices-demo", Schema: d.schema})
	if err != nil {
		return err
	}
	d.client = client

	d.sink, err = sinkserver.New(&sinkserver.Config{Registry: reg, Logger: d.log})
	if err != nil {
		return err
	}
	sinkURL, err := d.serve(d.sink)
	if err != nil {
		return fmt.Errorf("start the events API: %w", err)
	}
	d.printf("  %-9s the events API in memory (as txoutbox sink) at %s, live page at %s/\n", "sink", sinkURL, sinkURL)
	if err := d.startListener(ctx, sinkURL); err != nil {
		return err
	}
	d.printf("  %-9s eventsapi/listener following %s/api/stream\n", "listener", sinkURL)
	serviceURL, err := d.serve(api.New(d.pool, client))
	if err != nil {
		return fmt.Errorf("start the service: %w", err)
	}
	d.printf("  %-9s example Echo invoices API at %s\n", "service", serviceURL)
	if err := d.startRelay(sinkURL); err != nil {
		return err
	}
	d.printf("  %-9s embedded, woken by the outbox client after each commit, posting %s\n\n", "relay", d.flags.format)

	driveStart := time.Now()
	if err := d.drive(ctx, serviceURL); err != nil {
		return err
	}
	driven := time.Since(driveStart)
	published := d.okReqs.Load() // every successful request published one event
	arrived, waitErr := d.waitFor(ctx, published, "arrived", func() int64 { return d.sink.Stats().Accepted })
	waited := time.Since(driveStart) - driven
	heard, err := d.waitFor(ctx, published, "reached the listener", d.heard.Load)
	if waitErr == nil {
		waitErr = err
	}
	if err := d.stopRelayAndWait(); err != nil && waitErr == nil {
		waitErr = err
	}
	st := d.sink.Stats()
	pending, err := d.pendingRows(ctx)
	if err != nil {
		return err
	}

	d.printf("\n")
	d.printf("  %-18s %d (%d failed), %s at %.0f/s\n", "requests", d.flags.requests, d.failedReqs.Load(), driven.Round(time.Millisecond), float64(d.flags.requests)/driven.Seconds())
	d.printf("  %-18s %d\n", "events published", published)
	d.printf("  %-18s %d (%d duplicates), all in by %s after the last request\n", "events delivered", arrived, st.Duplicates, waited.Round(time.Millisecond))
	d.printf("  %-18s %d\n", "left in the outbox", pending)
	d.printf("  %-18s received %d of %d events, %d out of order or again\n", "listener", heard, published, d.misordered.Load())
	if n := d.batches.Load(); n > 0 {
		d.printf("  %-18s %d batches of %.1f events on average, %s each from read to recorded\n", "relay", n,
			float64(arrived)/float64(n), (time.Duration(d.batchTime.Load()) / time.Duration(n)).Round(10*time.Microsecond))
	}
	if d.flags.format == string(relayhttp.FormatCloudEvents) {
		d.printf("  %-18s p50 %.1f ms, p99 %.1f ms, max %.1f ms (publish in the transaction → received by the events API)\n",
			"latency", st.LatencyP50Ms, st.LatencyP99Ms, st.LatencyMaxMs)
	} else {
		d.printf("  %-18s not measured: the briteevents format carries no publish time\n", "latency")
	}
	d.printf("  %-18s %s\n", "wall time", time.Since(d.start).Round(time.Millisecond))

	switch {
	case waitErr != nil:
		return waitErr
	case d.failedReqs.Load() > 0:
		return fmt.Errorf("%d requests failed, the last with: %v", d.failedReqs.Load(), d.lastFailure.Load())
	case arrived != published || pending != 0:
		return fmt.Errorf("%d of %d events arrived, %d left in the outbox", arrived, published, pending)
	case heard != published || d.misordered.Load() != 0:
		return fmt.Errorf("the listener received %d of %d events, %d of them out of order or again", heard, published, d.misordered.Load())
	}
	d.printf("\nevery event arrived, exactly once.\n")
	return nil
}

// openDatabase starts a throwaway cluster, or uses --database-url, and
// creates the outbox and invoices tables in a schema of the demo's own.
func (d *demo) openDatabase(ctx context.Context) error {
	rawURL := d.flags.databaseURL
	if rawURL == "" {
		t0 := time.Now()
		c, err := pgtest.Start(ctx, nil)
		if err != nil {
			var nf *pgtest.NotFoundError
			if errors.As(err, &nf) {
				return fmt.Errorf("%w; or run the demo on a server of yours with --database-url", err)
			}
			return fmt.Errorf("start a throwaway PostgreSQL: %w", err)
		}
		d.cluster = c
		rawURL = c.URL("postgres")
		d.printf("  %-9s throwaway PostgreSQL on 127.0.0.1:%d, started in %s\n", "database", c.Port(), time.Since(t0).Round(time.Millisecond))
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	schema := "txoutbox_demo_" + hex.EncodeToString(rnd[:])

	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return fmt.Errorf("--database-url: %w", redactErr(err, rawURL))
	}
	cfg.MaxConns = int32(d.flags.concurrency + 4)
	cfg.ConnConfig.ConnectTimeout = connectTimeout
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return redactErr(err, rawURL)
	}
	d.pool = pool
	if err := outbox.Migrate(ctx, pool, &outbox.MigrateConfig{Schema: schema}); err != nil {
		return fmt.Errorf("migrate %s: %w", databaseName(rawURL), redactErr(err, rawURL))
	}
	d.schema = schema
	if err := invoices.Migrate(ctx, pool); err != nil {
		return err
	}
	if d.cluster == nil {
		d.printf("  %-9s %s, schema %s (dropped at the end)\n", "database", databaseName(rawURL), schema)
	}
	return nil
}

// serve serves h on a free loopback port and returns its URL.
func (d *demo) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)}
	d.servers = append(d.servers, srv)
	d.serving.Add(1)
	go func() {
		defer d.serving.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("serve", "err", err)
		}
	}()
	return "http://" + ln.Addr().String(), nil
}

// startListener follows the events API's stream with eventsapi/listener,
// counting the events, and returns once the stream is open: from then on it
// receives every event stored.
func (d *demo) startListener(ctx context.Context, sinkURL string) error {
	opened := &streamOpened{RoundTripper: http.DefaultTransport, opened: make(chan struct{})}
	var last int64 // the handler runs on one goroutine
	l, err := listener.New(&listener.Config{
		URL:        sinkURL,
		HTTPClient: &http.Client{Transport: opened},
		Logger:     d.log,
	}, func(_ context.Context, ev *eventsapi.Event) error {
		if ev.Position <= last {
			d.misordered.Add(1)
		}
		last = ev.Position
		d.heard.Add(1)
		return nil
	})
	if err != nil {
		return fmt.Errorf("listener: %w", err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	d.stopListener = cancel
	d.listenerDone = make(chan error, 1)
	go func() { d.listenerDone <- l.Run(lctx) }()
	select {
	case <-opened.opened:
		return nil
	case err := <-d.listenerDone:
		d.stopListener = nil
		return fmt.Errorf("listener: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(connectTimeout):
		return errors.New("listener: no stream within " + connectTimeout.String())
	}
}

// streamOpened tells when a stream answered 200: the server opened the
// stream's cursor before it answered.
type streamOpened struct {
	http.RoundTripper
	once   sync.Once
	opened chan struct{}
}

func (t *streamOpened) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.RoundTripper.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusOK {
		t.once.Do(func() { close(t.opened) })
	}
	return resp, err
}

// stopListenerAndWait stops the listener and waits for it.
func (d *demo) stopListenerAndWait() {
	if d.stopListener == nil {
		return
	}
	d.stopListener()
	d.stopListener = nil
	<-d.listenerDone
}

func (d *demo) startRelay(sinkURL string) error {
	sink, err := relayhttp.New(&relayhttp.Config{URL: sinkURL, Format: relayhttp.Format(d.flags.format), Logger: d.log})
	if err != nil {
		return err
	}
	d.httpSink = sink
	mode, err := d.relayMode()
	if err != nil {
		return err
	}
	r, err := relay.New(d.pool, sink, &relay.Config{
		Mode:   mode,
		Schema: d.schema,
		Logger: d.log,
		Hooks: relay.Hooks{BatchFunc: func(b relay.BatchStats) {
			if b.Read > 0 {
				d.batches.Add(1)
				d.batchTime.Add(int64(b.Elapsed))
			}
		}},
	})
	if err != nil {
		return err
	}
	d.removeHook = d.client.OnCommit(r.Wake)
	ctx, cancel := context.WithCancel(context.Background())
	d.stopRelay = cancel
	d.relayDone = make(chan error, 1)
	go func() { d.relayDone <- r.Run(ctx) }()
	// Measure delivery, not start-up: wait for the relay's first round,
	// when it holds its partitions, and for its WAL stream.
	for deadline := time.Now().Add(connectTimeout); r.LastPoll().IsZero() || mode == relay.ModeWAL && !r.WALStatus().Streaming; {
		select {
		case err := <-d.relayDone:
			d.stopRelay = nil
			return fmt.Errorf("relay: %w", err)
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("relay: no first poll within " + connectTimeout.String())
		}
	}
	return nil
}

// relayMode is relay.ModeWAL when the server and the role can stream the
// WAL, and relay.ModePoll, saying why, when they cannot.
func (d *demo) relayMode() (relay.Mode, error) {
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	var level string
	var replication bool
	err := d.pool.QueryRow(ctx, `SELECT current_setting('wal_level'), rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user`).
		Scan(&level, &replication)
	if err != nil {
		return "", fmt.Errorf("relay: read wal_level: %w", err)
	}
	switch {
	case level != "logical":
		d.printf("  %-9s polling: the server's wal_level is %s, and the WAL mode needs logical\n", "mode", level)
		return relay.ModePoll, nil
	case !replication:
		d.printf("  %-9s polling: the role lacks the REPLICATION attribute the WAL mode needs\n", "mode")
		return relay.ModePoll, nil
	}
	d.printf("  %-9s wal: a temporary replication slot tells the relay of each commit\n", "mode")
	return relay.ModeWAL, nil
}

// stopRelayAndWait stops the relay and waits for it to give its partitions
// back.
func (d *demo) stopRelayAndWait() error {
	if d.stopRelay == nil {
		return nil
	}
	d.removeHook()
	d.stopRelay()
	d.stopRelay = nil
	if err := <-d.relayDone; err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	return nil
}

// drive sends the requests, flags.concurrency at a time, with a progress
// line. Each worker issues invoices and pays or cancels some of them, so
// that keys see several events in order.
func (d *demo) drive(ctx context.Context, base string) error {
	tr := &http.Transport{MaxIdleConnsPerHost: d.flags.concurrency}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range d.flags.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var open []string // invoices this worker issued and has not closed
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(d.flags.requests) {
					return
				}
				path, body := "/invoices", fmt.Sprintf(
					`{"customer":{"id":"cus-%d","name":"Customer %d"},"amount_cents":%d,"currency":"EUR","due_date":"2026-12-31"}`, w, w, 1000+i)
				closing := len(open) > 0 && i%3 == 2
				if closing {
					id := open[0]
					open = open[1:]
					if i%2 == 0 {
						path, body = "/invoices/"+id+"/pay", ""
					} else {
						path, body = "/invoices/"+id+"/cancel", `{"reason":"issued twice"}`
					}
				}
				id, err := d.request(ctx, hc, base+path, body)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					d.failedReqs.Add(1)
					d.lastFailure.Store(err.Error())
				} else {
					d.okReqs.Add(1)
					if !closing {
						open = append(open, id)
					}
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	p := newProgress(d.out)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			p.update(d.progressLine(), true)
			return ctx.Err()
		case <-tick.C:
			p.update(d.progressLine(), false)
		}
	}
}

func (d *demo) progressLine() string {
	n := d.okReqs.Load() + d.failedReqs.Load()
	return fmt.Sprintf("  %d/%d requests, %d events delivered, %d received by the listener", n, d.flags.requests, d.sink.Stats().Accepted, d.heard.Load())
}

// request posts body and returns the id of the invoice in the answer.
func (d *demo) request(ctx context.Context, hc *http.Client, url, body string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader([]byte(body)))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-User-ID", "demo-user")
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", err
	}
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("POST %s: %s: %s", url, resp.Status, oneLine(string(b), 200))
	}
	var inv invoices.Invoice
	if err := json.Unmarshal(b, &inv); err != nil {
		return "", fmt.Errorf("POST %s: %w", url, err)
	}
	return inv.ID, nil
}

// waitFor waits until count reaches want, for at most flags.timeout, and
// returns the count.
func (d *demo) waitFor(ctx context.Context, want int64, what string, count func() int64) (int64, error) {
	deadline := time.NewTimer(d.flags.timeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		n := count()
		if n >= want {
			return n, nil
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-deadline.C:
			return n, fmt.Errorf("only %d of %d events %s within %s", n, want, what, d.flags.timeout)
		case <-tick.C:
		}
	}
}

func (d *demo) pendingRows(ctx context.Context) (int64, error) {
	st, err := outboxadmin.New(d.pool, d.schema).Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("count events left: %w", err)
	}
	return st.Pending + st.Dead, nil
}

// close stops everything run started, in reverse order, and drops the
// demo's schema from a database that is not its own.
func (d *demo) close() error {
	d.stopListenerAndWait()
	errs := []error{d.stopRelayAndWait()}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if d.sink != nil {
		// First: it ends the streams (a live page's), which Shutdown would
		// wait for.
		errs = append(errs, d.sink.Close())
	}
	for _, srv := range d.servers {
		errs = append(errs, srv.Shutdown(ctx))
	}
	d.serving.Wait()
	if d.httpSink != nil {
		errs = append(errs, d.httpSink.Close())
	}
	if d.pool != nil {
		if d.schema != "" && d.cluster == nil {
			if _, err := d.pool.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{d.schema}.Sanitize()+" CASCADE"); err != nil {
				errs = append(errs, fmt.Errorf("drop schema %s: %w", d.schema, redactErr(err, d.flags.databaseURL)))
			}
		}
		d.pool.Close()
	}
	if d.cluster != nil {
		errs = append(errs, d.cluster.Close())
	}
	return errors.Join(errs...)
}

// progress writes a line that updates in place on a terminal; elsewhere
// (a log, a test) it writes one a second and the last one.
type progress struct {
	w       io.Writer
	tty     bool
	printed int
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) update(line string, last bool) {
	switch {
	case p.tty && last:
		fmt.Fprintf(p.w, "\r\033[K%s\n", line)
	case p.tty:
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	case last:
		fmt.Fprintln(p.w, line)
	default:
		p.printed++
		if p.printed%10 == 0 { // once a second
			fmt.Fprintln(p.w, line)
		}
	}
}
