package eventsapi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/txoutbox/txoutbox/topics"
)

// ErrInvalidConfig is wrapped by the errors of New about its Config.
var ErrInvalidConfig = errors.New("eventsapi: invalid config")

// Defaults of Config.
const (
	// MaxBodyBytesDefault bounds an ingest request body; larger ones get 413.
	MaxBodyBytesDefault = 32 << 20
	// MaxSubscribersDefault bounds the open subscriptions (SSE and
	// WebSocket); more get 503.
	MaxSubscribersDefault = 10_000
	// SubscriberBufferDefault is how many events a subscriber may be behind
	// the newest before it is cut off as too slow.
	SubscriberBufferDefault = 10_000
	// HeartbeatDefault is how often an idle stream gets a keep-alive.
	HeartbeatDefault = 15 * time.Second
	// WriteTimeoutDefault bounds one write to a subscriber.
	WriteTimeoutDefault = 10 * time.Second
	// PruneIntervalDefault is how often retention runs.
	PruneIntervalDefault = time.Minute
	// JobStaleAfterDefault is how long a job may go without an update in
	// pending or in_progress before the server restarts it.
	JobStaleAfterDefault = 5 * time.Minute
	// JobMaxRetriesDefault is how many times a job is restarted before it
	// fails.
	JobMaxRetriesDefault = 3
)

// Config configures a Server. A nil *Config is allowed: an in-memory store,
// no topic catalog, development access (loopback only).
type Config struct {
	// Store keeps the events. Defaults to a new MemoryStore with its
	// defaults, closed by Server.Close.
	Store Store
	// Registry, when set, is checked on every ingested event: its topic must
	// exist and its data match the topic's schema. The envelope rules of
	// the wire formats apply with or without it.
	Registry *topics.Registry
	// TargetResolver, when set, completes and checks the target of each
	// ingested event: a publisher may name a layout alone, or a project
	// alone, and the levels above it are filled in from the resolver; the
	// levels it does name must agree with the resolver, else the event is
	// refused (422 ValidationError). Without one, a target must name its
	// levels from the top (Target.Validate). See PROTOCOL.md, "Targets".
	TargetResolver TargetResolver
	// Keys are the credentials callers present. With none, the server is in
	// development mode: it answers only requests from loopback addresses,
	// with every right and every tenant.
	Keys *Keys
	// Development says that running without Keys is intended, as for a
	// local development server: the start-up line about development mode is
	// then logged at level Info, not as the loud warning an accidental
	// keyless server gets. It cannot be combined with Keys.
	Development bool
	// Logger receives rejections, cut-off subscribers and store problems.
	// Keys are never logged. Defaults to slog.Default().
	Logger *slog.Logger
	// RejectFunc, when set, is called with the rejections of each post the
	// ingest routes refused in whole or in part, as they are answered, once
	// they are logged and kept (Server.Rejections). It must be quick: the
	// answer waits for it. Development tools count them with it.
	RejectFunc func([]Rejection)
	// MaxBodyBytes bounds an ingest request body. Defaults to
	// MaxBodyBytesDefault.
	MaxBodyBytes int64
	// MaxSubscribers bounds the open subscriptions. Defaults to
	// MaxSubscribersDefault.
	MaxSubscribers int
	// SubscriberBuffer is how far behind the newest event a live
	// subscriber may fall before it is told it is too slow and
	// disconnected; it resumes from the store. Defaults to
	// SubscriberBufferDefault.
	SubscriberBuffer int
	// Heartbeat is how often an idle stream gets a keep-alive. Defaults to
	// HeartbeatDefault.
	Heartbeat time.Duration
	// WriteTimeout bounds one write to a subscriber. Defaults to
	// WriteTimeoutDefault.
	WriteTimeout time.Duration
	// MaxAge and MaxEvents are the retention: events older than MaxAge, and
	// beyond the newest MaxEvents, are deleted every PruneInterval. Zero
	// keeps them (a MemoryStore is bounded by its capacity anyway).
	MaxAge        time.Duration
	MaxEvents     int64
	PruneInterval time.Duration
	// JobStaleAfter is how long a job (see JobStore) may stay in pending or
	// in_progress without an update: then the server restarts it, to be
	// enrolled again. The server checks every quarter of it. Defaults to
	// JobStaleAfterDefault.
	JobStaleAfter time.Duration
	// JobMaxRetries is how many restarts a job gets; the one after fails it.
	// Defaults to JobMaxRetriesDefault.
	JobMaxRetries int
	// NowFunc returns the time the server judges jobs stale by. Defaults to
	// time.Now.
	NowFunc func() time.Time
}

func (c *Config) validate() error {
	switch {
	case c.Development && c.Keys != nil:
		return fmt.Errorf("%w: eventsapi.Config.Development: a development server has no Keys", ErrInvalidConfig)
	case c.MaxBodyBytes < 0:
		return fmt.Errorf("%w: eventsapi.Config.MaxBodyBytes: %d is negative", ErrInvalidConfig, c.MaxBodyBytes)
	case c.MaxSubscribers < 0:
		return fmt.Errorf("%w: eventsapi.Config.MaxSubscribers: %d is negative", ErrInvalidConfig, c.MaxSubscribers)
	case c.SubscriberBuffer < 0:
		return fmt.Errorf("%w: eventsapi.Config.SubscriberBuffer: %d is negative", ErrInvalidConfig, c.SubscriberBuffer)
	case c.Heartbeat < 0:
		return fmt.Errorf("%w: eventsapi.Config.Heartbeat: %s is negative", ErrInvalidConfig, c.Heartbeat)
	case c.WriteTimeout < 0:
		return fmt.Errorf("%w: eventsapi.Config.WriteTimeout: %s is negative", ErrInvalidConfig, c.WriteTimeout)
	case c.MaxAge < 0:
		return fmt.Errorf("%w: eventsapi.Config.MaxAge: %s is negative", ErrInvalidConfig, c.MaxAge)
	case c.MaxEvents < 0:
		return fmt.Errorf("%w: eventsapi.Config.MaxEvents: %d is negative", ErrInvalidConfig, c.MaxEvents)
	case c.PruneInterval < 0:
		return fmt.Errorf("%w: eventsapi.Config.PruneInterval: %s is negative", ErrInvalidConfig, c.PruneInterval)
	case c.JobStaleAfter < 0:
		return fmt.Errorf("%w: eventsapi.Config.JobStaleAfter: %s is negative", ErrInvalidConfig, c.JobStaleAfter)
	case c.JobMaxRetries < 0:
		return fmt.Errorf("%w: eventsapi.Config.JobMaxRetries: %d is negative", ErrInvalidConfig, c.JobMaxRetries)
	}
	return nil
}

// Server is the events API: an http.Handler serving the routes of the
// package doc, over a Store. It is safe for concurrent use.
type Server struct {
	cfg        Config
	ownsStore  bool
	mux        *http.ServeMux
	access     *access     // keys and tickets (auth.go)
	hub        *hub        // live subscriptions (subscribe.go)
	rejections *rejections // the last ones, for the live page (rejections.go)

	ctx      context.Context // cancelled by Close: ends streams and loops
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopLive func() // ends the store's live events to the hub

	closeOnce sync.Once

	drainMu sync.Mutex
	drain   drainState // see Drain
}

// New returns a Server ready to serve. Close it to end the open streams,
// which http.Server.Shutdown would otherwise wait for.
func New(cfg *Config) (*Server, error) {
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: c, mux: http.NewServeMux(), rejections: newRejections(), drain: drainState{ch: make(chan struct{})}}
	if s.cfg.Store == nil {
		st, err := NewMemoryStore(nil)
		if err != nil {
			return nil, err
		}
		s.cfg.Store, s.ownsStore = st, true
	}
	if s.cfg.Logger == nil {
		s.cfg.Logger = slog.Default()
	}
	if s.cfg.MaxBodyBytes == 0 {
		s.cfg.MaxBodyBytes = MaxBodyBytesDefault
	}
	if s.cfg.MaxSubscribers == 0 {
		s.cfg.MaxSubscribers = MaxSubscribersDefault
	}
	if s.cfg.SubscriberBuffer == 0 {
		s.cfg.SubscriberBuffer = SubscriberBufferDefault
	}
	if s.cfg.Heartbeat == 0 {
		s.cfg.Heartbeat = HeartbeatDefault
	}
	if s.cfg.WriteTimeout == 0 {
		s.cfg.WriteTimeout = WriteTimeoutDefault
	}
	if s.cfg.PruneInterval == 0 {
		s.cfg.PruneInterval = PruneIntervalDefault
	}
	s.cfg.JobStaleAfter = cmp.Or(s.cfg.JobStaleAfter, JobStaleAfterDefault)
	s.cfg.JobMaxRetries = cmp.Or(s.cfg.JobMaxRetries, JobMaxRetriesDefault)
	if s.cfg.NowFunc == nil {
		s.cfg.NowFunc = time.Now
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())

	s.routeAccess()
	s.routeIngest()
	s.routeQuery()
	s.routeSubscribe()
	s.routeJobs()
	s.routePage()
	s.routeRPC()
	s.mux.HandleFunc("GET /healthz", s.healthz)

	if s.cfg.MaxAge > 0 || s.cfg.MaxEvents > 0 {
		s.wg.Add(1)
		go s.pruneLoop()
	}
	if js, ok := s.cfg.Store.(JobStore); ok {
		s.wg.Add(1)
		go s.jobsLoop(js)
	}
	s.stopLive = s.subscribeLive()
	return s, nil
}

// ServeHTTP serves the routes listed in the package doc.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Store returns the store the server reads and writes.
func (s *Server) Store() Store { return s.cfg.Store }

// Close ends the open streams and the server's background work, and closes
// the store when New made it. Requests still in progress may fail.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.stopLive()
		s.cancel()
		s.wg.Wait()
		if s.ownsStore {
			err = s.cfg.Store.Close()
		}
	})
	return err
}

// pruneLoop applies the retention every PruneInterval until Close.
func (s *Server) pruneLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.PruneInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		var olderThan time.Time
		if s.cfg.MaxAge > 0 {
			olderThan = time.Now().Add(-s.cfg.MaxAge)
		}
		n, err := s.cfg.Store.Prune(s.ctx, olderThan, s.cfg.MaxEvents)
		switch {
		case err != nil && s.ctx.Err() == nil:
			s.cfg.Logger.Error("events API: retention failed", "error", err)
		case n > 0:
			s.cfg.Logger.Info("events API: retention deleted events", "count", n)
		}
	}
}
