package outbox

import (
	"cmp"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/topics"
)

// MaxEventBytesDefault is the default limit on one event's encoded data.
const MaxEventBytesDefault = 256 << 10

// Config configures a Client. A nil *Config is the zero Config.
type Config struct {
	// Source is the publishing service's name: every event's source, and the
	// actor id of service sessions, so bc-events' rule applies to it (at
	// least 5 characters). Defaults to the executable's base name.
	Source string

	// Schema holds the outbox table. Defaults to the connection's
	// search_path. Use the same value as in MigrateConfig.Schema.
	Schema string

	// Storage says where Flush writes events: rows in the outbox table
	// (StorageTable), or logical decoding messages in the write-ahead log
	// for a relay in relay.ModeMessages (StorageMessages). Defaults to
	// StorageTable.
	Storage Storage

	// MaxEventBytes limits one event's encoded data; a larger event is
	// refused with ErrEventTooLarge. Defaults to MaxEventBytesDefault.
	MaxEventBytes int

	// Logger receives the client's warnings. Defaults to slog.Default().
	Logger *slog.Logger

	// FlushFunc, when set, is called after every write into the outbox
	// table (each Flush with events, each publish-immediately Publish),
	// successful or not, e.g. to count events by topic and time flushes
	// (package outboxprom). It runs on the flushing goroutine, before the
	// caller commits, so it must be quick.
	FlushFunc func(FlushStats)

	// TracerProvider creates the "outbox flush" span around each write, a
	// child of the span in the context given to Flush, under the
	// instrumentation scope "github.com/txoutbox/txoutbox/outbox". Defaults
	// to otel.GetTracerProvider(), which records nothing until the
	// application installs an SDK.
	TracerProvider trace.TracerProvider
}

func (c *Config) withDefaults() *Config {
	out := Config{}
	if c != nil {
		out = *c
	}
	out.Source = cmp.Or(out.Source, filepath.Base(os.Args[0]))
	out.Storage = cmp.Or(out.Storage, StorageTable)
	out.MaxEventBytes = cmp.Or(out.MaxEventBytes, MaxEventBytesDefault)
	out.Logger = cmp.Or(out.Logger, slog.Default())
	if out.TracerProvider == nil {
		out.TracerProvider = otel.GetTracerProvider()
	}
	return &out
}

func (c *Config) validate() error {
	if err := checkActorID(c.Source); err != nil {
		return fmt.Errorf("Config.Source: %w: %q is the actor id of service sessions: %v", ErrInvalidConfig, c.Source, err)
	}
	if err := checkSchema(c.Schema); err != nil {
		return fmt.Errorf("Config.Schema: %w", err)
	}
	if c.Storage != StorageTable && c.Storage != StorageMessages {
		return fmt.Errorf("Config.Storage: %w: %q is not %q or %q", ErrInvalidConfig, c.Storage, StorageTable, StorageMessages)
	}
	if c.MaxEventBytes < 0 {
		return fmt.Errorf("Config.MaxEventBytes: %w: %d is negative", ErrInvalidConfig, c.MaxEventBytes)
	}
	return nil
}

// Client hands out sessions. Build one at start-up and share it: it is safe
// for concurrent use.
type Client struct {
	pool     *pgxpool.Pool
	registry *topics.Registry
	cfg      *Config
	adapter  *schemaAdapter
	tracer   trace.Tracer

	// msgWhere is StorageMessages' prefix and slot; nil until the first
	// emit asked the database.
	msgWhere atomic.Pointer[msgWhere]

	commitHooks hooks // OnCommit
}

// New returns a client that validates events against registry and writes
// them to the outbox table. pool is used only by sessions in
// publish-immediately mode; Flush writes through the caller's transaction.
func New(pool *pgxpool.Pool, registry *topics.Registry, cfg *Config) (*Client, error) {
	if registry == nil {
		return nil, fmt.Errorf("outbox: new client: %w: registry is nil", ErrInvalidConfig)
	}
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("outbox: new client: %w", err)
	}
	return &Client{
		pool:     pool,
		registry: registry,
		cfg:      c,
		adapter:  &schemaAdapter{q: outboxsql.New(c.Schema)},
		tracer:   c.TracerProvider.Tracer(tracerName),
	}, nil
}

// Registry returns the topic registry events are validated against.
func (c *Client) Registry() *topics.Registry { return c.registry }

// Source returns the service name the client stamps on every event.
func (c *Client) Source() string { return c.cfg.Source }

// OnCommit registers fn to be called after events of this client have
// committed: by Session.Committed, which the caller runs after its
// transaction committed (InTx and the outbox middleware run it for you),
// and after every publish-immediately write. An embedded relay registers
// its Wake here, client.OnCommit(r.Wake), so that it reads the events as
// soon as they are visible instead of at its next poll. fn runs on the
// committing goroutine, so it must not block. The returned function
// removes fn.
func (c *Client) OnCommit(fn func()) (remove func()) { return c.commitHooks.add(fn) }

// OnFlush is OnCommit under its former name. Its hooks used to run at
// Flush, before the caller's commit, so a relay woken by one read before
// the events were visible; they now run when OnCommit's do.
//
// Deprecated: Use OnCommit, and call Session.Committed after a bare
// Flush and Commit.
func (c *Client) OnFlush(fn func()) (remove func()) { return c.OnCommit(fn) }

// hooks is the set of functions OnCommit registered.
type hooks struct {
	mu   sync.Mutex
	next int
	fns  map[int]func()
	list []func() // copy of fns, replaced on change; read under mu
}

func (h *hooks) add(fn func()) (remove func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fns == nil {
		h.fns = map[int]func(){}
	}
	h.next++
	id := h.next
	h.fns[id] = fn
	h.rebuild()
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.fns, id)
		h.rebuild()
	}
}

func (h *hooks) rebuild() {
	list := make([]func(), 0, len(h.fns))
	for _, fn := range h.fns {
		list = append(list, fn)
	}
	h.list = list
}

// run calls every function of the set, on the caller's goroutine.
func (h *hooks) run() {
	h.mu.Lock()
	list := h.list
	h.mu.Unlock()
	for _, fn := range list {
		fn()
	}
}

// UserSession returns a session whose events are caused by a user, for one
// web request. jobID correlates the request's events; a UUIDv7 is generated
// when it is empty.
func (c *Client) UserSession(userID, jobID string, opts ...SessionOption) *Session {
	return c.newSession(ActorUser, userID, jobID, opts)
}

// ServiceSession returns a session whose events are caused by the service
// itself (actor id = Config.Source), for background work such as a nightly
// job. jobID correlates the job's events; a UUIDv7 is generated when it is
// empty.
func (c *Client) ServiceSession(jobID string, opts ...SessionOption) *Session {
	return c.newSession(ActorService, c.cfg.Source, jobID, opts)
}

// ThirdPartySession returns a session whose events are caused by a third
// party, e.g. a payment provider's webhook; thirdPartyID names it.
func (c *Client) ThirdPartySession(thirdPartyID, jobID string, opts ...SessionOption) *Session {
	return c.newSession(ActorThirdParty, thirdPartyID, jobID, opts)
}
