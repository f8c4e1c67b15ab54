package relay

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/topics"
)

// partitions is the number of partitions relays lease.
const partitions = outboxsql.Partitions

// Defaults of Config.
const (
	BatchSizeDefault        = 1000
	PollIntervalDefault     = 100 * time.Millisecond
	LeaseTTLDefault         = 30 * time.Second
	MaxAttemptsDefault      = 100
	RetryBaseDefault        = time.Second
	RetryMaxDefault         = 5 * time.Minute
	CleanupIntervalDefault  = time.Minute
	CleanupBatchSizeDefault = 1000
	ShutdownTimeoutDefault  = 10 * time.Second
	PoisonPolicyDefault     = PoisonBlock
)

// pollMin is the wait after a round that read rows, and the first wait after
// a poll that found nothing; the wait doubles up to Config.PollInterval while
// polls keep coming back empty. It is short so that a relay nobody wakes (a
// daemon in another process, in polling mode) still reads a burst's later
// commits within a millisecond or two. Ignoring wakes within pollMin of a
// round that read rows, to batch more events per round, cost p50 and gained
// no p99 in the latency bench.
const pollMin = time.Millisecond

// PoisonPolicy says what a dead event does to the events after it with the
// same key.
type PoisonPolicy string

const (
	// PoisonBlock keeps the key blocked while its oldest undelivered event is
	// dead: none of the key's later events is delivered until the dead one
	// is replayed and delivered (or deleted). Order over progress; the
	// relay logs an error and calls Hooks.DeadFunc so someone looks.
	PoisonBlock PoisonPolicy = "block"
	// PoisonSkip leaves the dead event in the table, inspectable and
	// replayable, and goes on delivering the key's later events. Progress
	// over order: a consumer sees the key's events with a gap, and a later
	// replay delivers the dead event after its successors.
	PoisonSkip PoisonPolicy = "skip"
)

// Config configures a Relay. The zero value is valid; every field has a
// default.
//
// Relays sharing one outbox table should use the same Schema, LeaseTTL,
// MaxAttempts, PoisonPolicy and PoisonPolicyFunc: a partition, with its blocked keys, moves
// between them.
type Config struct {
	// ID names the relay in the txoutbox_relays table and in its partition
	// leases. It must be unique among running relays. Defaults to
	// "{hostname}-{pid}-{random}".
	ID string

	// Schema holds the outbox tables, as given to outbox.Migrate. Defaults
	// to the connection's search_path.
	Schema string

	// BatchSize is the most rows read, delivered and recorded per round.
	// Defaults to BatchSizeDefault.
	BatchSize int

	// Mode says how the relay learns that events were committed: by
	// polling the table (ModePoll), from the write-ahead log with the
	// events still in the table (ModeWAL), or from the write-ahead log
	// alone, for outbox.StorageMessages (ModeMessages). Defaults to
	// ModePoll, which needs no server settings.
	Mode Mode

	// PollInterval is the longest wait between two polls when the outbox
	// is idle. While rows keep coming the relay polls again at once; after
	// an empty poll it waits 1ms, doubling up to PollInterval. Wake cuts the
	// wait short. Defaults to PollIntervalDefault, or to
	// PollIntervalWALDefault in ModeWAL and ModeMessages.
	PollInterval time.Duration

	// LeaseTTL is how long a partition lease lasts without renewal. The
	// relay renews its leases every LeaseTTL/3, on a goroutine that never
	// waits for a delivery; when it dies, its partitions pass to other
	// relays after at most LeaseTTL, and events it had in flight are
	// delivered again. A relay does not start delivering a batch with less
	// than LeaseTTL/3 of lease left, and stops sending one (the rest stays
	// pending) when renewals are so late that less than that is left. Keep
	// LeaseTTL/3 above the sink's timeout, as the defaults do, so that a
	// request in flight then ends before the lease. Defaults to
	// LeaseTTLDefault.
	LeaseTTL time.Duration

	// MaxAttempts is the number of failed attempts after which an event
	// failing retryably is dead-lettered: with the default backoff, 100
	// attempts take about eight hours. An event failing with a
	// Permanent error is dead-lettered at once. A sink that is down spends
	// no attempts (see the package documentation), so an outage never
	// dead-letters the backlog. Defaults to MaxAttemptsDefault.
	MaxAttempts int

	// PoisonPolicy says whether a dead event blocks its key's later events.
	// Defaults to PoisonBlock.
	PoisonPolicy PoisonPolicy

	// PoisonPolicyFunc returns the policy of a dead event's topic, so that
	// topics whose consumers cope with gaps keep flowing while the others
	// keep their order (see PoisonPolicyFromTopics for the Poison key of
	// the topic definitions). It must be quick and safe for concurrent use.
	// A return of "", or of anything but PoisonBlock or PoisonSkip, means
	// PoisonPolicy. Defaults to nil: PoisonPolicy for every topic.
	PoisonPolicyFunc func(topic string) PoisonPolicy

	// RetryBase and RetryMax bound the wait before a failed event is tried
	// again: a random duration between 0 and RetryBase*2^(attempts-1),
	// capped at RetryMax ("full jitter"), or longer when the sink asked
	// for it with RetryAfter. Defaults to RetryBaseDefault and
	// RetryMaxDefault.
	RetryBase time.Duration
	RetryMax  time.Duration

	// Retention is how long delivered rows are kept, marked delivered,
	// before the cleanup removes them. Zero deletes a row as soon as it is
	// delivered, which is also the fastest. Defaults to 0.
	Retention time.Duration

	// CleanupInterval is how often the relay removes delivered rows older
	// than Retention; each cleanup deletes in statements of
	// CleanupBatchSize rows so that no lock is held for long. Defaults to
	// CleanupIntervalDefault and CleanupBatchSizeDefault.
	CleanupInterval  time.Duration
	CleanupBatchSize int

	// ShutdownTimeout bounds how long Run, once its context is cancelled,
	// waits for the batch in flight to be delivered and recorded. When it
	// runs out, the events the sink accepted are still recorded; the rest
	// stay pending, are counted in a warning, and are delivered again
	// later. Defaults to ShutdownTimeoutDefault.
	ShutdownTimeout time.Duration

	// Logger receives the relay's logs. Defaults to slog.Default().
	Logger *slog.Logger

	// Hooks observe the relay, e.g. for metrics.
	Hooks Hooks

	// TracerProvider creates the relay's spans: one per call to the sink,
	// of kind Producer, linked to the trace context each event was published
	// with (see the package documentation). Defaults to
	// otel.GetTracerProvider(), which records nothing until the application
	// installs an SDK.
	TracerProvider trace.TracerProvider

	// MessagingSystem is the messaging.system attribute of the relay's
	// spans: nats, rabbitmq, kafka, ... Defaults to MessagingSystemDefault.
	MessagingSystem string
}

// Hooks are called by the relay's loop as it works. They must be quick and
// must not block: they run on the delivery path.
type Hooks struct {
	// BatchFunc is called after each batch is recorded.
	BatchFunc func(BatchStats)
	// DeadFunc is called for each event dead-lettered, after it is
	// recorded.
	DeadFunc func(DeadEvent)
}

// BatchStats describes one batch.
type BatchStats struct {
	Read      int           // rows read
	Delivered int           // events the sink accepted
	Failed    int           // events that failed and will be retried
	Dead      int           // events dead-lettered
	Elapsed   time.Duration // from the read to the recorded outcome

	// Events lists the events the sink was given, delivered first, in the
	// order Delivered, Failed and Dead count them. The slice is reused by
	// the next batch: a hook must not keep it.
	Events []EventStats
}

// EventStats describes one event of a batch, for per-topic metrics.
type EventStats struct {
	Topic       string
	PublishedAt time.Time // when the event was published (outbox.Event.Time)
	Delivered   bool      // the sink accepted it; else it failed (see Dead)
	Dead        bool      // it failed and was dead-lettered
}

// DeadEvent describes an event that was dead-lettered.
type DeadEvent struct {
	ID       uuid.UUID
	Topic    string
	Key      string
	Attempts int
	Err      error
	// Blocking reports whether the key's later events now wait for this
	// one (PoisonBlock).
	Blocking bool
}

func (c *Config) withDefaults() *Config {
	if c == nil {
		c = &Config{}
	}
	out := *c
	out.ID = cmp.Or(out.ID, defaultID())
	out.BatchSize = cmp.Or(out.BatchSize, BatchSizeDefault)
	out.Mode = cmp.Or(out.Mode, ModePoll)
	if out.Mode != ModePoll {
		out.PollInterval = cmp.Or(out.PollInterval, PollIntervalWALDefault)
	}
	out.PollInterval = cmp.Or(out.PollInterval, PollIntervalDefault)
	out.LeaseTTL = cmp.Or(out.LeaseTTL, LeaseTTLDefault)
	out.MaxAttempts = cmp.Or(out.MaxAttempts, MaxAttemptsDefault)
	out.PoisonPolicy = cmp.Or(out.PoisonPolicy, PoisonPolicyDefault)
	out.RetryBase = cmp.Or(out.RetryBase, RetryBaseDefault)
	out.RetryMax = cmp.Or(out.RetryMax, RetryMaxDefault)
	out.CleanupInterval = cmp.Or(out.CleanupInterval, CleanupIntervalDefault)
	out.CleanupBatchSize = cmp.Or(out.CleanupBatchSize, CleanupBatchSizeDefault)
	out.ShutdownTimeout = cmp.Or(out.ShutdownTimeout, ShutdownTimeoutDefault)
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	if out.TracerProvider == nil {
		out.TracerProvider = otel.GetTracerProvider()
	}
	out.MessagingSystem = cmp.Or(out.MessagingSystem, MessagingSystemDefault)
	return &out
}

// ErrInvalidConfig is wrapped by the errors of New, and of the sinks'
// constructors, for a configuration they refuse; the error names the field.
var ErrInvalidConfig = errors.New("invalid config")

// validate checks a config that has its defaults applied, so a field still
// zero or negative was set so by the caller. Its errors wrap
// ErrInvalidConfig and name the field.
func (c *Config) validate() error {
	var err error
	switch {
	case c.BatchSize < 0:
		err = fmt.Errorf("BatchSize must not be negative, got %d", c.BatchSize)
	case c.Mode != ModePoll && c.Mode != ModeWAL && c.Mode != ModeMessages:
		err = fmt.Errorf("Mode must be %q, %q or %q, got %q", ModePoll, ModeWAL, ModeMessages, c.Mode)
	case c.PollInterval < 0:
		err = fmt.Errorf("PollInterval must not be negative, got %s", c.PollInterval)
	case c.LeaseTTL < 300*time.Millisecond:
		err = fmt.Errorf("LeaseTTL must be at least 300ms, got %s", c.LeaseTTL)
	case c.MaxAttempts < 0:
		err = fmt.Errorf("MaxAttempts must not be negative, got %d", c.MaxAttempts)
	case c.PoisonPolicy != PoisonBlock && c.PoisonPolicy != PoisonSkip:
		err = fmt.Errorf("PoisonPolicy must be %q or %q, got %q", PoisonBlock, PoisonSkip, c.PoisonPolicy)
	case c.RetryBase < 0:
		err = fmt.Errorf("RetryBase must not be negative, got %s", c.RetryBase)
	case c.RetryMax < c.RetryBase:
		err = fmt.Errorf("RetryMax (%s) must not be less than RetryBase (%s)", c.RetryMax, c.RetryBase)
	case c.Retention < 0:
		err = fmt.Errorf("Retention must not be negative, got %s", c.Retention)
	case c.CleanupInterval < 0:
		err = fmt.Errorf("CleanupInterval must not be negative, got %s", c.CleanupInterval)
	case c.CleanupBatchSize < 0:
		err = fmt.Errorf("CleanupBatchSize must not be negative, got %d", c.CleanupBatchSize)
	case c.ShutdownTimeout < 0:
		err = fmt.Errorf("ShutdownTimeout must not be negative, got %s", c.ShutdownTimeout)
	case len(c.ID) > 200:
		err = errors.New("ID must be at most 200 bytes")
	}
	if err == nil {
		// The names outbox.Migrate refuses: the relay would read another
		// schema than the one named.
		if serr := outboxsql.CheckSchema(c.Schema); serr != nil {
			err = fmt.Errorf("Schema: %w", serr)
		}
	}
	if err != nil {
		return fmt.Errorf("%w: relay.Config.%w", ErrInvalidConfig, err)
	}
	return nil
}

// poisonPolicy returns the policy for a dead event of topic.
func (c *Config) poisonPolicy(topic string) PoisonPolicy {
	if c.PoisonPolicyFunc != nil {
		if p := c.PoisonPolicyFunc(topic); p == PoisonBlock || p == PoisonSkip {
			return p
		}
	}
	return c.PoisonPolicy
}

// mayBlock reports whether a dead event can block its key: whether the
// relay must track the keys of dead events.
func (c *Config) mayBlock() bool {
	return c.PoisonPolicy == PoisonBlock || c.PoisonPolicyFunc != nil
}

// PoisonPolicyFromTopics returns a Config.PoisonPolicyFunc that reads the
// Poison key of reg's topics. A topic without one, or not in reg, gets
// Config.PoisonPolicy.
func PoisonPolicyFromTopics(reg *topics.Registry) func(topic string) PoisonPolicy {
	byTopic := make(map[string]PoisonPolicy)
	if reg != nil {
		for _, t := range reg.Topics() {
			if t.Poison != "" {
				byTopic[t.Name] = PoisonPolicy(t.Poison)
			}
		}
	}
	return func(topic string) PoisonPolicy { return byTopic[topic] }
}

func defaultID() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d-%s", cmp.Or(host, "relay"), os.Getpid(), uuid.NewString()[:8])
}
