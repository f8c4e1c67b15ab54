package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/outboxconsole"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relayhttp"
	"github.com/txoutbox/txoutbox/relay/relaywatermill"
)

const relayUsage = `
Deliver the events committed to the outbox table to a sink, at least once and
in order per key, until SIGINT or SIGTERM. On a signal the relay finishes the
batch in flight (within --shutdown-timeout), gives its partitions back to the
other relays and exits 0; a second signal exits at once. Run as many relays
as you like: they share the outbox's 64 partitions.

Sinks (--sink):
  https://host/path   an events API, in the --format wire format
  nats://host:4222    NATS JetStream: one message per event on the subject
                      --topic-template makes (default: the topic name), in
                      --nats-stream; Nats-Msg-Id = event id, so JetStream
                      drops the copies a retry sends
  amqp://user:pass@host:5672/vhost
                      RabbitMQ (AMQP 0-9-1): persistent messages to the
                      topic exchange --amqp-exchange, routing key from
                      --topic-template; each batch is an AMQP transaction
  kafka://host1:9092,host2:9092/topic-template
                      Kafka: one record per event, acks=all, idempotent
                      producer; key = the ordering key, value = the event
                      in --format (cloudevents or briteevents), headers =
                      id, topic, job_id, tenant, traceparent. The path is
                      the topic template (default {topic}); kafkas:// for
                      TLS, user:pass@ for SASL PLAIN (?sasl=scram-sha-256
                      or scram-sha-512)
  mqtt://host:1883/topic-template
                      MQTT 3.1.1: one QoS 1 message per event, payload the
                      CloudEvent in JSON, on the topic the path builds
                      (default {tenant}/{category}/{entity}/{action};
                      events without a tenant under _); a key's next event
                      waits for the PUBACK of the previous one. mqtts://
                      for TLS; user:pass@ or --sink-username and
                      --sink-password for credentials
  stdout              one JSON line per event, for development
  noop                discard (measurements)

Modes (--mode):
  poll   the relay polls the outbox table, at once while rows keep coming and
         every --poll-interval at most when idle. Needs nothing of the server.
  wal    the relay also streams the write-ahead log through a temporary
         logical replication slot and reads a partition as soon as a
         transaction that wrote to it commits, whichever process wrote it.
         Needs wal_level=logical, a free replication slot and WAL sender,
         and a role with REPLICATION; the publication comes with
         txoutbox migrate. Polls every --poll-interval while the stream is
         down, so nothing waits for it.
  messages
         for producers with outbox.StorageMessages, which write no rows:
         each flush is a logical decoding message kept in the WAL by the
         durable slot txoutbox migrate --messages creates. One relay holds
         the slot and sends its events in commit order, straight to the
         sink; the others stand by and take over within a second of its
         end. Events the sink fails go into the table, with the later
         events of their keys, and are retried, dead-lettered, inspected
         and replayed from there. While no relay confirms, PostgreSQL keeps
         the WAL: bound it with max_slot_wal_keep_size and watch
         txoutbox status.

A dead event (one a sink refused permanently, or failed retryably
--max-attempts times) blocks its key's later events under --poison-policy
block, and not under skip. A sink that is down spends no attempts.
With --topics, a topic whose definition has a Poison key (block or skip)
gets that policy instead; the others keep --poison-policy.

NATS and AMQP messages carry the event's envelope as headers (topic, key,
job_id, traceparent, ...) and its data as the body; the message id is the
event id. The templates of kafka:// and mqtt:// sinks, in the URL's path,
take {topic}, {category}, {entity}, {action} and {tenant}; quote them in
the shell.

Admin endpoints on --admin-addr: /livez (the relay loop is turning),
/readyz (the database answers; false once shutdown starts) and /metrics
(Prometheus: deliveries, failures and dead letters by topic and sink, batch
sizes, delivery latency, the outbox's backlog and the WAL its replication
slots hold back, read on each scrape, and with --mode wal or messages
whether the stream is open, its wakes and its restarts).
With --console, the operator console at /console/ too (the --console-*
flags are those of txoutbox console).

Unless GOGC is set, the relay runs the Go garbage collector at GOGC=400: its
live heap is a batch or two, and the default made collection a third of its
CPU.`

const relayExamples = `  txoutbox relay --database-url postgres://app@db/app --sink https://events.example.com \
      --format briteevents --bearer-token-file /run/secrets/events-token
  TXOUTBOX_DATABASE_URL=postgres://localhost/app txoutbox relay --sink stdout
  txoutbox relay --database-url postgres://localhost/app --sink noop --poison-policy skip
  txoutbox relay --database-url postgres://localhost/app --sink stdout --mode wal
  txoutbox relay --database-url postgres://localhost/app --sink stdout --mode messages
  txoutbox relay --database-url postgres://localhost/app --sink stdout --topics topic_definitions.yaml
  txoutbox relay --database-url postgres://localhost/app --sink nats://127.0.0.1:4222
  txoutbox relay --database-url postgres://localhost/app --sink amqp://guest:guest@127.0.0.1:5672/ \
      --topic-template 'events.{category}.{entity}.{action}'
  txoutbox relay --database-url postgres://localhost/app --sink 'kafka://kafka-1:9092,kafka-2:9092/events.{category}'
  TXOUTBOX_SINK_PASSWORD=... txoutbox relay --database-url postgres://localhost/app \
      --sink 'mqtt://127.0.0.1:1883/{tenant}/{category}/{entity}/{action}' --sink-username relay`

// relayFlags are the flags of txoutbox relay.
type relayFlags struct {
	databaseURL  string
	sink         string
	format       string
	bearer       string
	bearerFile   string
	apiKey       string
	apiKeyFile   string
	apiKeyHdr    string
	sinkTimeout  time.Duration
	insecure     bool
	adminAddr    string
	logLevel     string
	logFormat    string
	cfg          relay.Config
	poison       string
	mode         string
	topics       string
	broker       brokerFlags
	sinkUser     string
	sinkPass     string
	sinkPassFile string
	console      bool
	consoleFlags
}

func (f *relayFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.databaseURL, "database-url", "", "PostgreSQL `URL` of the database holding the outbox (required)")
	fs.StringVar(&f.cfg.Schema, "schema", "", "`schema` of the outbox tables (default: the search_path)")
	fs.StringVar(&f.sink, "sink", "", "where events go: an http(s):// events API `URL`, a nats://, amqp://, kafka:// or mqtt:// broker, stdout or noop (required)")
	fs.StringVar(&f.format, "format", string(relayhttp.FormatCloudEvents), "wire `format` of an HTTP or Kafka sink: cloudevents or briteevents")
	fs.StringVar(&f.bearer, "bearer-token", "", "`token` sent to an HTTP sink as Authorization: Bearer")
	fs.StringVar(&f.apiKeyHdr, "api-key-header", "", "`header` carrying --api-key to an HTTP sink, e.g. X-Api-Key")
	fs.StringVar(&f.apiKey, "api-key", "", "API `key` sent to an HTTP sink in --api-key-header")
	fs.StringVar(&f.bearerFile, "bearer-token-file", "", "`file` holding the --bearer-token (e.g. a mounted secret); keeps it out of ps and shell history")
	fs.StringVar(&f.apiKeyFile, "api-key-file", "", "`file` holding the --api-key")
	fs.StringVar(&f.sinkUser, "sink-username", "", "`user` a kafka:// (SASL) or mqtt:// sink logs in as, when the URL names none")
	fs.StringVar(&f.sinkPass, "sink-password", "", "`password` of --sink-username; prefer the environment or --sink-password-file")
	fs.StringVar(&f.sinkPassFile, "sink-password-file", "", "`file` holding the --sink-password")
	fs.DurationVar(&f.sinkTimeout, "sink-timeout", relayhttp.TimeoutDefault, "bound on one HTTP sink request")
	fs.BoolVar(&f.insecure, "insecure-skip-verify", false, "do not verify an HTTPS sink's certificate (development only)")
	fs.IntVar(&f.cfg.BatchSize, "batch-size", relay.BatchSizeDefault, "most events read, delivered and recorded per round")
	fs.StringVar(&f.mode, "mode", string(relay.ModePoll), "how the relay learns of committed events: poll, wal (the table, woken by the write-ahead log) or messages (outbox.StorageMessages, from the write-ahead log alone); wal and messages need wal_level=logical")
	fs.DurationVar(&f.cfg.PollInterval, "poll-interval", 0, "longest wait between polls when the outbox is idle (default 100ms; 1s with --mode wal or messages, where polls only back the stream up)")
	fs.DurationVar(&f.cfg.LeaseTTL, "lease", relay.LeaseTTLDefault, "partition lease: a relay that dies hands its partitions over after this")
	fs.IntVar(&f.cfg.MaxAttempts, "max-attempts", relay.MaxAttemptsDefault, "failed attempts after which an event failing retryably is dead-lettered; one failing permanently (HTTP 4xx) is at once")
	fs.StringVar(&f.poison, "poison-policy", string(relay.PoisonPolicyDefault), "what a dead event does to its key: block (later events wait) or skip")
	fs.StringVar(&f.topics, "topics", "", "topic definitions `file` whose Poison keys override --poison-policy per topic")
	fs.DurationVar(&f.cfg.RetryBase, "retry-base", relay.RetryBaseDefault, "first retry backoff; it doubles per attempt, with full jitter")
	fs.DurationVar(&f.cfg.RetryMax, "retry-max", relay.RetryMaxDefault, "longest retry backoff")
	fs.DurationVar(&f.cfg.Retention, "retention", 0, "keep delivered rows this long (0: delete on delivery)")
	fs.DurationVar(&f.cfg.ShutdownTimeout, "shutdown-timeout", relay.ShutdownTimeoutDefault, "how long a signal waits for the batch in flight")
	fs.StringVar(&f.cfg.ID, "relay-id", "", "unique `name` of this relay (default: host-pid-random)")
	fs.StringVar(&f.adminAddr, "admin-addr", "127.0.0.1:9090", "`address` of /livez, /readyz and /metrics; empty to turn them off")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log `format`: text or json")
	f.broker.register(fs)
	fs.BoolVar(&f.console, "console", false, "serve the operator console at /console/ on --admin-addr (see txoutbox console --help)")
	f.consoleFlags.register(fs, "console-")
}

func runRelay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f relayFlags
	fs := newFlagSet("relay", relayUsage, relayExamples)
	f.register(fs)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	logger, err := newLogger(stderr, f.logLevel, f.logFormat)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	switch {
	case f.databaseURL == "":
		return errors.New("relay: --database-url (TXOUTBOX_DATABASE_URL) is required")
	case f.sink == "":
		return errors.New("relay: --sink (TXOUTBOX_SINK) is required")
	}
	f.cfg.Mode = relay.Mode(f.mode)
	if f.cfg.Mode != relay.ModePoll && f.cfg.Mode != relay.ModeWAL && f.cfg.Mode != relay.ModeMessages {
		return fmt.Errorf("relay: --mode: %q is not poll, wal or messages", f.mode)
	}
	f.cfg.PoisonPolicy = relay.PoisonPolicy(f.poison)
	if f.cfg.PoisonPolicy != relay.PoisonBlock && f.cfg.PoisonPolicy != relay.PoisonSkip {
		return fmt.Errorf("relay: --poison-policy: %q is not block or skip", f.poison)
	}
	if f.topics != "" {
		reg, err := loadTopics("relay: --topics", f.topics, stderr)
		if err != nil {
			return err
		}
		f.cfg.PoisonPolicyFunc = relay.PoisonPolicyFromTopics(reg)
	}
	for _, s := range []struct {
		name, path string
		dst        *string
	}{
		{"--bearer-token-file", f.bearerFile, &f.bearer},
		{"--api-key-file", f.apiKeyFile, &f.apiKey},
		{"--sink-password-file", f.sinkPassFile, &f.sinkPass},
	} {
		if s.path == "" {
			continue
		}
		b, err := os.ReadFile(s.path)
		if err != nil {
			return fmt.Errorf("relay: %s: %w", s.name, err)
		}
		*s.dst = strings.TrimSpace(string(b))
	}
	f.cfg.Logger = logger
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(400)
	}

	sink, closeSink, err := f.newSink(ctx, stdout, logger)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	defer closeSink()

	pool, err := pgxpool.New(ctx, f.databaseURL)
	if err != nil {
		return fmt.Errorf("relay: --database-url: %w", err)
	}
	defer pool.Close()
	metrics, err := f.newMetrics(pool)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	r, err := relay.New(pool, sink, &f.cfg)
	if err != nil {
		return err
	}
	if err := metrics.addRelay(r, f.cfg.Mode); err != nil {
		return fmt.Errorf("relay: %w", err)
	}

	console, err := f.newRelayConsole(pool, logger)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	var stopping atomic.Bool
	admin, err := startAdmin(f.adminAddr, r, pool, &stopping, f.cfg.LeaseTTL, metrics, console, logger)
	if err != nil {
		return fmt.Errorf("relay: --admin-addr: %w", err)
	}
	if console != nil {
		stopSampler := runSampler(ctx, console)
		defer stopSampler()
	}
	stopAdmin := context.AfterFunc(ctx, func() { stopping.Store(true) })
	defer stopAdmin()

	logger.Info("relay starting", "relay", r.ID(), "database", databaseName(f.databaseURL), "sink", redactURL(f.sink))
	err = r.Run(ctx)
	stopping.Store(true)
	if aerr := admin.close(); err == nil {
		err = aerr
	}
	if err == nil {
		logger.Info("relay stopped", "relay", r.ID())
	}
	return err
}

// newSink returns the sink --sink names and what closes it.
func (f *relayFlags) newSink(ctx context.Context, stdout io.Writer, logger *slog.Logger) (relay.Sink, func(), error) {
	switch {
	case f.sink == "noop":
		return relay.SinkFunc(func(context.Context, []*outbox.Event) error { return nil }), func() {}, nil
	case f.sink == "stdout":
		return &stdoutSink{w: stdout}, func() {}, nil
	case strings.HasPrefix(f.sink, "http://") || strings.HasPrefix(f.sink, "https://"):
		s, err := relayhttp.New(&relayhttp.Config{
			URL:                f.sink,
			Format:             relayhttp.Format(f.format),
			BearerToken:        f.bearer,
			APIKeyHeader:       f.apiKeyHdr,
			APIKey:             f.apiKey,
			Timeout:            f.sinkTimeout,
			InsecureSkipVerify: f.insecure,
			Logger:             logger,
		})
		if err != nil {
			return nil, nil, fmt.Errorf("--sink: %w", err)
		}
		return s, func() { _ = s.Close() }, nil
	case strings.HasPrefix(f.sink, "nats://"), strings.HasPrefix(f.sink, "amqp://"), strings.HasPrefix(f.sink, "amqps://"):
		tf, err := topicFunc(f.broker.topicTemplate)
		if err != nil {
			return nil, nil, err
		}
		var pub message.Publisher
		if strings.HasPrefix(f.sink, "nats://") {
			f.cfg.MessagingSystem = "nats"
			pub, err = f.newNATSSink(f.sink, logger)
		} else {
			f.cfg.MessagingSystem = "rabbitmq"
			pub, err = f.newAMQPSink(f.sink, logger)
		}
		if err != nil {
			return nil, nil, err
		}
		s, err := relaywatermill.New(pub, &relaywatermill.Config{TopicFunc: tf})
		if err != nil {
			_ = pub.Close()
			return nil, nil, fmt.Errorf("--sink: %w", err)
		}
		return s, func() { _ = pub.Close() }, nil
	case strings.HasPrefix(f.sink, "kafka://"), strings.HasPrefix(f.sink, "kafkas://"):
		f.cfg.MessagingSystem = "kafka"
		return f.newKafkaSink(ctx)
	case strings.HasPrefix(f.sink, "mqtt://"), strings.HasPrefix(f.sink, "mqtts://"):
		f.cfg.MessagingSystem = "mqtt"
		return f.newMQTTSink(ctx)
	}
	return nil, nil, fmt.Errorf("--sink: %q is not an http(s) URL, a nats://, amqp://, kafka:// or mqtt:// URL, stdout or noop", redact(f.sink))
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", format)
}

// admin serves /livez and /readyz.
type admin struct {
	srv     *http.Server
	done    chan error
	console *outboxconsole.Handler // ends its streams before Shutdown
}

// startAdmin listens on addr (nothing when addr is empty) and serves the
// health endpoints until close:
//   - /livez: the relay's loop finished a round within the last two leases
//     (or the relay started less than that ago);
//   - /readyz: not shutting down, and the database answers within a second;
//   - /metrics: the relay's Prometheus metrics;
//   - /console/: the operator console, when console is not nil.
func startAdmin(addr string, r *relay.Relay, pool *pgxpool.Pool, stopping *atomic.Bool, lease time.Duration, metrics http.Handler,
	console *outboxconsole.Handler, logger *slog.Logger) (*admin, error) {
	a := &admin{done: make(chan error, 1), console: console}
	if addr == "" {
		a.done <- nil
		return a, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	started := time.Now()
	live := 2 * max(lease, relay.LeaseTTLDefault)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		last := r.LastPoll()
		if last.IsZero() {
			last = started
		}
		if age := time.Since(last); age > live {
			http.Error(w, fmt.Sprintf("relay loop last turned %s ago", age.Round(time.Second)), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, req *http.Request) {
		if stopping.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if err := pool.Ping(ctx); err != nil {
			http.Error(w, "database unreachable", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", metrics)
	if console != nil {
		mux.Handle("/console/", console)
	}
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	logger.Info("admin endpoints listening", "addr", ln.Addr().String())
	go func() {
		err := a.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		a.done <- err
	}()
	return a, nil
}

// close stops the server and waits for it.
func (a *admin) close() error {
	if a.console != nil {
		_ = a.console.Close()
	}
	if a.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.srv.Shutdown(ctx); err != nil {
			return fmt.Errorf("admin server: %w", err)
		}
	}
	if err := <-a.done; err != nil {
		return fmt.Errorf("admin server: %w", err)
	}
	return nil
}

// stdoutSink writes each event as one JSON line: its id, its envelope under
// the metadata keys a watermill message carries, and its data.
type stdoutSink struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *stdoutSink) Send(_ context.Context, events []*outbox.Event) error {
	var b []byte
	for _, ev := range events {
		m := relaywatermill.Message(ev)
		line, err := json.Marshal(struct {
			ID       string            `json:"id"`
			Metadata map[string]string `json:"metadata"`
			Data     json.RawMessage   `json:"data"`
		}{m.UUID, m.Metadata, json.RawMessage(m.Payload)})
		if err != nil {
			return relay.Permanent(fmt.Errorf("encode event %s: %w", m.UUID, err))
		}
		b = append(append(b, line...), '\n')
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.w.Write(b); err != nil {
		return fmt.Errorf("write to stdout: %w", err)
	}
	return nil
}
