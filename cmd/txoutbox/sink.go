package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/internal/sinkserver"
	"github.com/txoutbox/txoutbox/topics"
)

const sinkUsage = `
Run the events API in memory, for development and the demo: the server of
"txoutbox serve" on a bounded in-memory store (the newest --capacity
events), in development mode (no keys: it answers requests from this
machine only). It takes what "txoutbox relay --sink http://ADDR" sends, in
either wire format:

  POST /events, /events/bulk/   bc-events (--format briteevents)
  POST / or /cloudevents        CloudEvents (--format cloudevents)

checks each event against the topic definitions, stores it once (by id,
and by tenant and dedupe key), prints one line per event (and appends it to
--jsonl), and serves the events back as the events API does (the routes
are described in eventsapi/PROTOCOL.md):

  GET /                         the live page: recent events, then each new
                                one as it arrives, filtered by topic, key,
                                tenant, ...; rejections as red rows
  GET /api/events               query the events held, with filters
  GET /api/stream, /api/ws      subscribe (server-sent events, WebSocket)
  GET /api/stats                counts and publish→receipt latency (the
                                sink's own)

It answers as a real events API would: 400 for malformed JSON, 422 for an
unknown topic or data failing its schema, 409 for a single event whose id it
has seen (inside a batch a duplicate is accepted and not stored twice).
Events are gone when it stops; for production (API keys, tenants, events
kept in Postgres) run "txoutbox serve". SIGINT or SIGTERM stops it.`

const sinkExamples = `  txoutbox sink                                    # then: txoutbox relay --sink http://127.0.0.1:8642 ...
  txoutbox sink --addr 127.0.0.1:9000 --topics config/topic_definitions.yaml --jsonl events.jsonl
  txoutbox sink --fail-first 5 --fail-status 429   # watch the relay back off and retry
  open 'http://127.0.0.1:8642/?topic=billing.*&exclude_action=Deleted'   # the live page, filtered
  TXOUTBOX_ADDR=127.0.0.1:9000 txoutbox sink --quiet`

// Defaults of txoutbox sink.
const (
	// sinkAddrDefault is a port of the sink's own, so that it runs beside
	// the example services (8080, 8081, 8090) and the relay's admin
	// endpoints (9090).
	sinkAddrDefault = "127.0.0.1:8642"
	// sinkTopicsDefault is read when --topics is not given; when it does
	// not exist the sink accepts any topic.
	sinkTopicsDefault = "topic_definitions.yaml"
)

type sinkFlags struct {
	addr       string
	topics     string
	jsonl      string
	capacity   int
	quiet      bool
	failFirst  int
	failStatus int
}

func (f *sinkFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "addr", sinkAddrDefault, "`address` to listen on, on this machine; port 0 picks a free one")
	fs.StringVar(&f.topics, "topics", sinkTopicsDefault, "topic definitions `file` events are checked against; empty to accept any topic")
	fs.StringVar(&f.jsonl, "jsonl", "", "append every accepted event to this `file` as one JSON line")
	fs.IntVar(&f.capacity, "capacity", sinkserver.CapacityDefault, "events kept in memory, the newest")
	fs.BoolVar(&f.quiet, "quiet", false, "do not print a line per event")
	fs.IntVar(&f.failFirst, "fail-first", 0, "answer the first `N` event posts with --fail-status, to watch retries")
	fs.IntVar(&f.failStatus, "fail-status", http.StatusServiceUnavailable, "HTTP `status` of the posts --fail-first fails")
}

func runSink(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f sinkFlags
	fset := newFlagSet("sink", sinkUsage, sinkExamples)
	f.register(fset)
	if err := parseFlags(fset, args, stdout); err != nil {
		return err
	}
	if f.failStatus < 400 || f.failStatus > 599 {
		return fmt.Errorf("sink: --fail-status: %d is not a 4xx or 5xx status", f.failStatus)
	}
	if host, _, err := net.SplitHostPort(f.addr); err == nil && !isLoopback(host) {
		return fmt.Errorf("sink: --addr %s: the sink has no keys and serves this machine only; listen on 127.0.0.1, or run txoutbox serve --keys", f.addr)
	}
	_, topicsGiven := os.LookupEnv(envName("topics"))
	fset.Visit(func(fl *flag.Flag) { topicsGiven = topicsGiven || fl.Name == "topics" })
	logger := slog.New(slog.NewTextHandler(stderr, nil))

	var reg *topics.Registry
	if f.topics != "" {
		var err error
		reg, err = loadTopics("sink: --topics", f.topics, stderr)
		switch {
		case errors.Is(err, fs.ErrNotExist) && !topicsGiven:
			logger.Warn("no " + sinkTopicsDefault + " here: accepting any topic without validation (see --topics)")
		case err != nil:
			return err
		}
	}

	var jsonl *os.File
	if f.jsonl != "" {
		var err error
		if jsonl, err = os.OpenFile(f.jsonl, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
			return fmt.Errorf("sink: --jsonl: %w", err)
		}
		defer jsonl.Close()
	}

	cfg := &sinkserver.Config{Registry: reg, Capacity: f.capacity, Logger: logger}
	if jsonl != nil {
		cfg.JSONL = jsonl
	}
	if !f.quiet {
		var mu sync.Mutex
		cfg.OnEventFunc = func(ev eventsapi.Event) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintln(stdout, eventLine(ev))
		}
	}
	api, err := sinkserver.New(cfg)
	if err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	defer api.Close()
	if f.failFirst > 0 {
		api.FailNext(f.failFirst, f.failStatus, time.Second)
	}

	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fmt.Errorf("sink: --addr: %w", err)
	}
	url := "http://" + ln.Addr().String()
	logger.Info("sink listening", "url", url, "page", url+"/", "topics", topicsSummary(reg, f.topics))
	if err := serveHTTP(ctx, ln, api, api.Close, 5*time.Second); err != nil {
		return fmt.Errorf("sink: %w", err)
	}
	st := api.Stats()
	logger.Info("sink stopped", "accepted", st.Accepted, "duplicates", st.Duplicates, "rejected", st.Rejected,
		"bad_requests", st.BadRequests)
	return nil
}

// eventLine is the line printed for an event.
func eventLine(ev eventsapi.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s #%d %s key=%s", ev.ReceivedAt.Local().Format("15:04:05.000"), ev.Position, ev.Topic, ev.Key)
	if ev.JobID != "" {
		fmt.Fprintf(&b, " job=%s", ev.JobID)
	}
	if ev.ActorType != "" {
		fmt.Fprintf(&b, " actor=%s:%s", ev.ActorType, ev.ActorID)
	}
	fmt.Fprintf(&b, " id=%s (%s)", ev.ID, ev.Format)
	return b.String()
}

func topicsSummary(reg *topics.Registry, file string) string {
	if reg == nil {
		return "any (no validation)"
	}
	return fmt.Sprintf("%d from %s", len(reg.Topics()), file)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
