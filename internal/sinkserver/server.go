package sinkserver

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/internal/ingest"
	"github.com/txoutbox/txoutbox/topics"
)

// Defaults of Config. They are smaller than a MemoryStore's own: a
// development server, and the tests that start many, need little.
const (
	// CapacityDefault is how many events the server keeps in memory; older
	// ones make room for new ones (the JSONL file keeps them all).
	CapacityDefault = 10_000
	// DedupeWindowDefault is how many recent event ids duplicates are
	// recognised among.
	DedupeWindowDefault = 100_000
	// MaxBodyBytesDefault bounds a request body; larger ones get 413.
	MaxBodyBytesDefault = eventsapi.MaxBodyBytesDefault
)

// BriteErrValidation is the record error code of a bulk record that failed
// validation: an unknown topic or data not matching its schema. Senders
// treat it as permanent.
const BriteErrValidation = ingest.CodeValidation

// Config configures a Server. A nil *Config is allowed.
type Config struct {
	// Registry is checked on every event: its topic must exist and its data
	// match the topic's schema. With no Registry any topic and data are
	// accepted; the envelope rules of the wire format still apply. Defaults
	// to nil.
	Registry *topics.Registry
	// Capacity is how many events are kept in memory. Defaults to
	// CapacityDefault.
	Capacity int
	// DedupeWindow is how many recent event ids are remembered to recognise
	// duplicates; at least Capacity. Defaults to DedupeWindowDefault.
	DedupeWindow int
	// MaxBodyBytes bounds a request body. Defaults to MaxBodyBytesDefault.
	MaxBodyBytes int64
	// JSONL, when set, receives every stored event as one JSON line (the
	// events API's event shape), in position order. Defaults to nil.
	JSONL io.Writer
	// OnEventFunc, when set, is called with every stored event, in position
	// order, while the store is locked: it must be quick and must not call
	// the Server. Defaults to nil.
	OnEventFunc func(eventsapi.Event)
	// Logger receives every rejection, at level Warn, and problems writing
	// the JSONL file. Defaults to slog.Default().
	Logger *slog.Logger
}

func (c *Config) validate() error {
	switch {
	case c.Capacity < 0:
		return fmt.Errorf("Capacity: %d is negative", c.Capacity)
	case c.DedupeWindow < 0:
		return fmt.Errorf("DedupeWindow: %d is negative", c.DedupeWindow)
	case c.MaxBodyBytes < 0:
		return fmt.Errorf("MaxBodyBytes: %d is negative", c.MaxBodyBytes)
	}
	return nil
}

// Server is the events API in development mode (an eventsapi.Server on a
// MemoryStore, without keys) with the extras of the package doc. It is an
// http.Handler and safe for concurrent use.
type Server struct {
	cfg   Config
	api   *eventsapi.Server
	store *eventsapi.MemoryStore
	mux   *http.ServeMux

	mu      sync.Mutex
	stats   Stats
	lastPos int64
	lat     []time.Duration // publish→receipt of the last Capacity events that carry a publish time
	latNext int
	faults  faults
}

// Stats counts what the server received.
type Stats struct {
	Requests       int64            `json:"requests"`        // event posts, including rejected ones
	Accepted       int64            `json:"accepted"`        // events stored
	Duplicates     int64            `json:"duplicates"`      // events recognised as already stored
	Rejected       int64            `json:"rejected"`        // events failing validation (422 or ValidationError)
	BadRequests    int64            `json:"bad_requests"`    // posts answered 400, 413 or 415
	InjectedFaults int64            `json:"injected_faults"` // posts or records failed on purpose
	JSONLErrors    int64            `json:"jsonl_errors"`    // events the JSONL writer refused
	Held           int64            `json:"held"`            // events in memory now
	LastPosition   int64            `json:"last_position"`   // of the newest event stored
	ByTopic        map[string]int64 `json:"by_topic"`
	FirstAt        time.Time        `json:"first_at,omitzero"`
	LastAt         time.Time        `json:"last_at,omitzero"`
	// Publish→receipt latency of the last Capacity events that carry a
	// publish time (CloudEvents time), in milliseconds. For an event
	// published just before its transaction committed this is
	// commit→delivery.
	LatencyP50Ms float64 `json:"latency_p50_ms"`
	LatencyP99Ms float64 `json:"latency_p99_ms"`
	LatencyMaxMs float64 `json:"latency_max_ms"`
}

// faults are the injected failures still to come.
type faults struct {
	requests   int
	status     int
	retryAfter time.Duration
	records    int
	recordCode string
}

// New returns a Server ready to serve. Close it to end the open streams,
// which http.Server.Shutdown would otherwise wait for.
func New(cfg *Config) (*Server, error) {
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("sink server config: %w", err)
	}
	c.Capacity = cmp.Or(c.Capacity, CapacityDefault)
	c.DedupeWindow = max(cmp.Or(c.DedupeWindow, DedupeWindowDefault), c.Capacity)
	c.MaxBodyBytes = cmp.Or(c.MaxBodyBytes, MaxBodyBytesDefault)
	c.Logger = cmp.Or(c.Logger, slog.Default())
	s := &Server{
		cfg:   c,
		mux:   http.NewServeMux(),
		stats: Stats{ByTopic: map[string]int64{}},
		lat:   make([]time.Duration, 0, c.Capacity),
	}
	store, err := eventsapi.NewMemoryStore(&eventsapi.MemoryStoreConfig{
		Capacity:     c.Capacity,
		DedupeWindow: c.DedupeWindow,
		AppendedFunc: s.appended,
	})
	if err != nil {
		return nil, fmt.Errorf("sink server config: %w", err)
	}
	api, err := eventsapi.New(&eventsapi.Config{
		Store:        store,
		Registry:     c.Registry,
		Logger:       c.Logger,
		MaxBodyBytes: c.MaxBodyBytes,
		RejectFunc:   s.rejected,
		Development:  true,
	})
	if err != nil {
		_ = store.Close()
		return nil, fmt.Errorf("sink server config: %w", err)
	}
	s.store, s.api = store, api
	for _, pattern := range ingest.Patterns() {
		s.mux.Handle(pattern, s.begin(api))
	}
	s.mux.HandleFunc("GET /api/stats", func(w http.ResponseWriter, _ *http.Request) {
		ingest.WriteJSON(w, http.StatusOK, s.Stats())
	})
	s.mux.Handle("/", api)
	return s, nil
}

// ServeHTTP serves the events API's routes, and GET /api/stats.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close ends the open streams and closes the store: later requests are
// answered 503. Stats still answers.
func (s *Server) Close() error {
	err := s.api.Close()
	if cerr := s.store.Close(); err == nil {
		err = cerr
	}
	return err
}

// Events returns up to limit held events after position after, oldest
// first.
func (s *Server) Events(after int64, limit int) []eventsapi.Event {
	evs, _ := s.store.Read(context.Background(), &eventsapi.ReadRequest{After: after, Limit: max(limit, 1)})
	return evs
}

// Rejections returns up to limit of the rejections held (the last
// eventsapi.RejectionsHeld) with Seq > after, oldest first.
func (s *Server) Rejections(after int64, limit int) []eventsapi.Rejection {
	return s.api.Rejections(after, limit)
}

// Stats returns the counts so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := s.stats
	st.ByTopic = make(map[string]int64, len(s.stats.ByTopic))
	for k, v := range s.stats.ByTopic {
		st.ByTopic[k] = v
	}
	st.LastPosition = s.lastPos
	lat := slices.Clone(s.lat)
	s.mu.Unlock()

	ctx := context.Background()
	if oldest, err := s.store.Oldest(ctx); err == nil && oldest > 0 {
		if head, err := s.store.Head(ctx); err == nil {
			st.Held = head - oldest + 1
		}
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	st.LatencyP50Ms = ms(percentile(lat, 0.50))
	st.LatencyP99Ms = ms(percentile(lat, 0.99))
	st.LatencyMaxMs = ms(percentile(lat, 1))
	return st
}

// percentile of sorted durations, p in [0,1].
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted)) + 0.5)
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

// FailNext makes the next n event posts fail with status before their
// bodies are looked at, as an overloaded or broken API would. A positive
// retryAfter is sent as Retry-After in seconds.
func (s *Server) FailNext(n, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.requests, s.faults.status, s.faults.retryAfter = n, status, retryAfter
}

// FailNextRecords makes the next n valid records of bc-events bulk posts
// fail with the record error code, e.g. wire.BriteErrThroughputExceeded;
// they are not stored.
func (s *Server) FailNextRecords(n int, code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults.records, s.faults.recordCode = n, code
}

// begin wraps the events API's ingest routes: it counts the post, answers
// it with an injected fault when one is due, and lets the events API fail
// the records due to fail (ingest.WithRecordFaults).
func (s *Server) begin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.stats.Requests++
		f := s.faults
		if f.requests > 0 {
			s.faults.requests--
			s.stats.InjectedFaults++
		}
		s.mu.Unlock()
		if f.requests == 0 {
			next.ServeHTTP(w, r.WithContext(ingest.WithRecordFaults(r.Context(), s.recordFault)))
			return
		}
		e := &ingest.Error{Status: f.status, Code: "InjectedFault", Message: "failed on purpose"}
		if f.retryAfter > 0 {
			e.RetryAfter = int((f.retryAfter + time.Second - 1) / time.Second)
		}
		ingest.Answer(w, e)
	})
}

// recordFault returns the error code for the next bulk record when one is
// due.
func (s *Server) recordFault() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults.records == 0 {
		return ""
	}
	s.faults.records--
	s.stats.InjectedFaults++
	return s.faults.recordCode
}

// appended is the store's AppendedFunc: it counts what each append stored,
// in position order, writes it to the JSONL file and hands it to
// OnEventFunc.
func (s *Server) appended(stored []eventsapi.Event, duplicates int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Duplicates += int64(duplicates)
	for i := range stored {
		ev := &stored[i]
		s.stats.Accepted++
		s.stats.ByTopic[ev.Topic]++
		if s.stats.FirstAt.IsZero() {
			s.stats.FirstAt = ev.ReceivedAt
		}
		s.stats.LastAt = ev.ReceivedAt
		s.lastPos = ev.Position
		// A store gives an event without a publish time its receipt time.
		if !ev.Time.Equal(ev.ReceivedAt) {
			s.addLatency(ev.ReceivedAt.Sub(ev.Time))
		}
		if s.cfg.JSONL != nil {
			line, _ := json.Marshal(ev)
			if _, err := s.cfg.JSONL.Write(append(line, '\n')); err != nil {
				if s.stats.JSONLErrors == 0 {
					s.cfg.Logger.Error("sink server: write JSONL", "error", err)
				}
				s.stats.JSONLErrors++
			}
		}
		if s.cfg.OnEventFunc != nil {
			s.cfg.OnEventFunc(*ev)
		}
	}
}

// addLatency keeps d among the last Capacity latencies; s.mu is held.
func (s *Server) addLatency(d time.Duration) {
	if len(s.lat) < cap(s.lat) {
		s.lat = append(s.lat, d)
		return
	}
	s.lat[s.latNext] = d
	s.latNext = (s.latNext + 1) % len(s.lat)
}

// rejected is the events API's RejectFunc: it counts what the ingest
// routes refused (the events API logs it and keeps it for the live page).
func (s *Server) rejected(rs []eventsapi.Rejection) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range rs {
		switch rs[i].Status {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
			s.stats.BadRequests++
		default:
			s.stats.Rejected++
		}
	}
}
