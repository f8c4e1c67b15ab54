package sinkserver

import (
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/txoutbox/txoutbox/internal/ingest"
	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/topics"
)

// Defaults of Config.
const (
	// CapacityDefault is how many events the server keeps in memory; older
	// ones make room for new ones (the JSONL file keeps them all).
	CapacityDefault = 10_000
	// DedupeWindowDefault is how many recent event ids duplicates are
	// recognised among.
	DedupeWindowDefault = 100_000
	// MaxBodyBytesDefault bounds a request body; larger ones get 413.
	MaxBodyBytesDefault = 32 << 20
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
	// duplicates. Defaults to DedupeWindowDefault.
	DedupeWindow int
	// MaxBodyBytes bounds a request body. Defaults to MaxBodyBytesDefault.
	MaxBodyBytes int64
	// JSONL, when set, receives every accepted event as one JSON line, in
	// the order they were stored. Defaults to nil.
	JSONL io.Writer
	// OnEventFunc, when set, is called with every accepted event, in order,
	// while the store is locked: it must be quick. Defaults to nil.
	OnEventFunc func(Event)
	// Logger receives every rejection, at level Warn, as the events
	// accepted are shown (OnEventFunc, the live page), and problems writing
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

// Server is the local events API: an http.Handler and the store of what it
// received. It is safe for concurrent use.
type Server struct {
	cfg Config
	mux *http.ServeMux

	mu     sync.Mutex
	held   *store
	stats  Stats
	faults faults

	closeOnce sync.Once
	done      chan struct{}
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
	Held           int              `json:"held"`            // events in memory now
	LastSeq        int64            `json:"last_seq"`
	ByTopic        map[string]int64 `json:"by_topic"`
	FirstAt        time.Time        `json:"first_at,omitzero"`
	LastAt         time.Time        `json:"last_at,omitzero"`
	// Publish→receipt latency of the events held that carry a publish time
	// (CloudEvents time), in milliseconds. For an event published just before
	// its transaction committed this is commit→delivery.
	LatencyP50Ms float64 `json:"latency_p50_ms"`
	LatencyP99Ms float64 `json:"latency_p99_ms"`
	LatencyMaxMs float64 `json:"latency_max_ms"`
}

//go:embed index.html
var assets embed.FS

// New returns a Server ready to serve. Close it to end open /stream
// responses, which http.Server.Shutdown would otherwise wait for.
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
		held:  newStore(c.Capacity, c.DedupeWindow),
		stats: Stats{ByTopic: map[string]int64{}},
		done:  make(chan struct{}),
	}
	in, err := ingest.New(ingest.Config{
		Registry:     c.Registry,
		MaxBodyBytes: c.MaxBodyBytes,
		StoreFunc:    s.store,
		RejectFunc:   s.rejected,
	})
	if err != nil {
		return nil, fmt.Errorf("sink server config: %w", err)
	}
	in.Register(s.mux, s.begin)
	s.mux.HandleFunc("GET /{$}", s.handlePage)
	s.mux.HandleFunc("GET /stream", s.handleStream)
	s.mux.HandleFunc("GET /api/events", s.handleEvents)
	s.mux.HandleFunc("GET /api/stats", s.handleStats)
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	return s, nil
}

// ServeHTTP serves the routes listed in the package doc.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close ends the /stream responses in progress. The server still answers
// other requests.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	return nil
}

// Events returns up to limit events held with Seq > after, oldest first.
func (s *Server) Events(after int64, limit int) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held.since(after, limit, "")
}

// Rejections returns up to limit rejections held with Seq > after, oldest
// first.
func (s *Server) Rejections(after int64, limit int) []Rejection {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.held.rejectionsSince(after, limit)
}

// Stats returns the counts so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := s.stats
	st.ByTopic = make(map[string]int64, len(s.stats.ByTopic))
	for k, v := range s.stats.ByTopic {
		st.ByTopic[k] = v
	}
	st.Held = int(s.held.next - s.held.oldest())
	st.LastSeq = s.held.next - 1
	lat := s.held.latencies()
	s.mu.Unlock()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	st.LatencyP50Ms = ms(percentile(lat, 0.50))
	st.LatencyP99Ms = ms(percentile(lat, 0.99))
	st.LatencyMaxMs = ms(percentile(lat, 1))
	return st
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

// begin wraps an ingest route: it counts the post and answers it with an
// injected fault when one is due.
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
			next.ServeHTTP(w, r)
			return
		}
		e := &ingest.Error{Status: f.status, Code: "InjectedFault", Message: "failed on purpose"}
		if f.retryAfter > 0 {
			e.RetryAfter = int((f.retryAfter + time.Second - 1) / time.Second)
		}
		ingest.Answer(w, e)
	})
}

// rejected counts what the ingest routes refused, keeps it for the live
// page and logs it, as accepted events are shown.
func (s *Server) rejected(_ context.Context, format wire.Format, irs []ingest.Rejection) {
	now := time.Now()
	rs := make([]Rejection, len(irs))
	s.mu.Lock()
	for i := range irs {
		switch irs[i].Status {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
			s.stats.BadRequests++
		default:
			s.stats.Rejected++
		}
		rs[i] = s.held.addRejection(Rejection{ReceivedAt: now, Format: string(format), Rejection: irs[i]})
	}
	s.held.wake()
	s.mu.Unlock()
	for i := range rs {
		s.cfg.Logger.Warn("sink server: rejected", append([]any{"format", rs[i].Format}, rs[i].LogAttrs()...)...)
	}
}

// accept stores the events not seen before, in order, and reports which
// were duplicates.
func (s *Server) accept(format wire.Format, evs []wire.Event) (dup []bool) {
	now := time.Now()
	dup = make([]bool, len(evs))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range evs {
		e := &evs[i]
		if s.held.has(e.ID) {
			dup[i] = true
			s.stats.Duplicates++
			continue
		}
		stored := s.held.add(Event{
			ReceivedAt: now, Format: string(format),
			ID: e.ID, Topic: e.Topic, Category: e.Category, Entity: e.Entity, Action: e.Action, Key: e.Key,
			JobID: e.JobID, ActorID: e.ActorID, ActorType: e.ActorType, Source: e.Source,
			Traceparent: e.Traceparent, Tenant: e.Tenant, CausationID: e.CausationID, Time: e.Time, Data: e.Data,
		})
		s.stats.Accepted++
		s.stats.ByTopic[stored.Topic]++
		if s.stats.FirstAt.IsZero() {
			s.stats.FirstAt = now
		}
		s.stats.LastAt = now
		if s.cfg.JSONL != nil {
			line, _ := json.Marshal(stored)
			if _, err := s.cfg.JSONL.Write(append(line, '\n')); err != nil {
				if s.stats.JSONLErrors == 0 {
					s.cfg.Logger.Error("sink server: write JSONL", "error", err)
				}
				s.stats.JSONLErrors++
			}
		}
		if s.cfg.OnEventFunc != nil {
			s.cfg.OnEventFunc(stored)
		}
	}
	s.held.wake()
	return dup
}

// store is the ingest routes' StoreFunc: it stores the events not seen
// before, failing the records of bc-events bulk posts that an injected
// fault is due for.
func (s *Server) store(_ context.Context, p *ingest.Post) ([]ingest.Outcome, error) {
	outs := make([]ingest.Outcome, len(p.Events))
	take := make([]wire.Event, 0, len(p.Events))
	at := make([]int, 0, len(p.Events))
	for i := range p.Events {
		if p.Format == wire.FormatBriteEvents && p.Batch {
			if code := s.recordFault(); code != "" {
				outs[i] = ingest.Outcome{Code: code, Message: "failed on purpose"}
				continue
			}
		}
		take = append(take, p.Events[i])
		at = append(at, i)
	}
	for j, dup := range s.accept(p.Format, take) {
		outs[at[j]].Duplicate = dup
	}
	return outs, nil
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

func (s *Server) handlePage(w http.ResponseWriter, _ *http.Request) {
	page, _ := assets.ReadFile("index.html")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(page)
}

// eventsAnswer is the answer of /api/events.
type eventsAnswer struct {
	Events []Event `json:"events"`
	// Next is the after= of the following page.
	Next int64 `json:"next"`
}

// handleEvents lists held events: ?after=SEQ (default 0), ?limit=N (default
// and most 1000), ?topic=NAME.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, err1 := queryInt(q.Get("after"), 0)
	limit, err2 := queryInt(q.Get("limit"), 1000)
	if err := cmp.Or(err1, err2); err != nil || after < 0 || limit <= 0 {
		ingest.WriteError(w, http.StatusBadRequest, ingest.CodeBadRequest, "after and limit must be non-negative integers")
		return
	}
	s.mu.Lock()
	evs := s.held.since(after, int(min(limit, 1000)), q.Get("topic"))
	next := s.held.next - 1
	s.mu.Unlock()
	if len(evs) > 0 && len(evs) == int(min(limit, 1000)) {
		next = evs[len(evs)-1].Seq
	}
	ingest.WriteJSON(w, http.StatusOK, eventsAnswer{Events: evs, Next: next})
}

func (s *Server) handleStats(w http.ResponseWriter, _ *http.Request) {
	ingest.WriteJSON(w, http.StatusOK, s.Stats())
}

// handleStream sends events as server-sent events: "id: SEQ", "event:
// event", "data: {json}". It starts after ?after=SEQ, or the Last-Event-ID a
// reconnecting browser sends, or else with the last 100 events held.
// Rejections come as "event: rejected", "data: {json}", without an id so
// that a resumed stream goes on from the last event; a fresh stream starts
// with the last 100 held, a resumed one with those arriving after it
// connects.
func (s *Server) handleStream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	after, err := queryInt(cmp.Or(r.URL.Query().Get("after"), r.Header.Get("Last-Event-ID")), -1)
	if err != nil {
		http.Error(w, "after: not an integer", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	rafter := s.held.rejectNext - 1
	if after < 0 {
		after = max(0, s.held.next-1-100)
		rafter = max(0, rafter-100)
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		s.mu.Lock()
		evs := s.held.since(after, 500, "")
		rjs := s.held.rejectionsSince(rafter, 500)
		wait := s.held.notify
		s.mu.Unlock()
		for _, ev := range evs {
			data, _ := json.Marshal(ev)
			if _, err := fmt.Fprintf(w, "id: %d\nevent: event\ndata: %s\n\n", ev.Seq, data); err != nil {
				return
			}
			after = ev.Seq
		}
		for _, rj := range rjs {
			data, _ := json.Marshal(rj)
			if _, err := fmt.Fprintf(w, "event: rejected\ndata: %s\n\n", data); err != nil {
				return
			}
			rafter = rj.Seq
		}
		if err := rc.Flush(); err != nil {
			return
		}
		if len(evs) == 500 || len(rjs) == 500 {
			continue
		}
		select {
		case <-wait:
		case <-keepalive.C:
			if _, err := io.WriteString(w, ": keepalive\n\n"); err != nil {
				return
			}
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}
}

func queryInt(s string, def int64) (int64, error) {
	if s = strings.TrimSpace(s); s == "" {
		return def, nil
	}
	return strconv.ParseInt(s, 10, 64)
}
