package sinkserver

import (
	"cmp"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/txoutbox/txoutbox/internal/envelope"
	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/outbox"
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
const BriteErrValidation = "ValidationError"

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
	store  *store
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
		store: newStore(c.Capacity, c.DedupeWindow),
		stats: Stats{ByTopic: map[string]int64{}},
		done:  make(chan struct{}),
	}
	s.mux.HandleFunc("POST /events", s.handleBrite)
	s.mux.HandleFunc("POST /events/bulk", s.handleBriteBulk)
	s.mux.HandleFunc("POST /events/bulk/", s.handleBriteBulk)
	s.mux.HandleFunc("POST /{$}", s.handleCloudEvents)
	s.mux.HandleFunc("POST /cloudevents", s.handleCloudEvents)
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
	return s.store.since(after, limit, "")
}

// Rejections returns up to limit rejections held with Seq > after, oldest
// first.
func (s *Server) Rejections(after int64, limit int) []Rejection {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store.rejectionsSince(after, limit)
}

// Stats returns the counts so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := s.stats
	st.ByTopic = make(map[string]int64, len(s.stats.ByTopic))
	for k, v := range s.stats.ByTopic {
		st.ByTopic[k] = v
	}
	st.Held = int(s.store.next - s.store.oldest())
	st.LastSeq = s.store.next - 1
	lat := s.store.latencies()
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

// begin counts an event post and answers it with an injected fault when one
// is due, reporting whether the handler should go on.
func (s *Server) begin(w http.ResponseWriter) bool {
	s.mu.Lock()
	s.stats.Requests++
	f := s.faults
	if f.requests > 0 {
		s.faults.requests--
		s.stats.InjectedFaults++
	}
	s.mu.Unlock()
	if f.requests == 0 {
		return true
	}
	if f.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((f.retryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, f.status, wire.BriteError{ErrorType: "InjectedFault", ErrorMessage: "failed on purpose"})
	return false
}

// readBody reads a request body within MaxBodyBytes, answering 413 when it
// is larger.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.badRequest(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", mbe.Limit))
		} else {
			s.badRequest(w, r, http.StatusBadRequest, "read body: "+err.Error())
		}
		return nil, false
	}
	return body, true
}

// badRequest answers a post the server cannot read, and shows it.
func (s *Server) badRequest(w http.ResponseWriter, r *http.Request, status int, msg string) {
	format := wire.FormatCloudEvents
	if strings.HasPrefix(r.URL.Path, wire.BritePathSingle) {
		format = wire.FormatBriteEvents
	}
	s.mu.Lock()
	s.stats.BadRequests++
	s.mu.Unlock()
	s.show(format, []Rejection{{Status: status, Code: "BadRequest", Error: msg}})
	writeJSON(w, status, wire.BriteError{ErrorType: "BadRequest", ErrorMessage: msg})
}

// rejected answers 422 to a post with events failing validation, and
// shows them.
func (s *Server) rejected(w http.ResponseWriter, format wire.Format, rs []Rejection, body any) {
	s.mu.Lock()
	s.stats.Rejected += int64(len(rs))
	s.mu.Unlock()
	s.show(format, rs)
	writeJSON(w, http.StatusUnprocessableEntity, body)
}

// show keeps rejections for the live page and logs them, as accepted events
// are shown.
func (s *Server) show(format wire.Format, rs []Rejection) {
	if len(rs) == 0 {
		return
	}
	now := time.Now()
	s.mu.Lock()
	for i := range rs {
		rs[i].ReceivedAt, rs[i].Format = now, string(format)
		if rs[i].Status == 0 {
			rs[i].Status = http.StatusUnprocessableEntity
		}
		rs[i] = s.store.addRejection(rs[i])
	}
	s.store.wake()
	s.mu.Unlock()
	for _, r := range rs {
		attrs := []any{"format", r.Format, "status", r.Status, "code", r.Code}
		if r.Index != nil {
			attrs = append(attrs, "index", *r.Index)
		}
		if r.ID != "" {
			attrs = append(attrs, "id", r.ID)
		}
		if r.Topic != "" {
			attrs = append(attrs, "topic", r.Topic)
		}
		s.cfg.Logger.Warn("sink server: rejected", append(attrs, "error", r.Error)...)
	}
}

// recordRejection is the Rejection of the record at index i.
func recordRejection(i int, id, topic, code, msg string) Rejection {
	return Rejection{Index: &i, ID: id, Topic: topic, Code: code, Error: msg}
}

// check validates an event against the registry and completes it: the
// topic's parts when the format carries only its name, and the key when
// the format did not carry one. Topic names must match exactly: lookups in
// other spellings are the publishing API's, and the events API refuses
// them.
func (s *Server) check(ev *wire.Event) error {
	if ev.ActorType != "" && ev.ActorType != outbox.ActorUser && ev.ActorType != outbox.ActorService && ev.ActorType != outbox.ActorThirdParty {
		return fmt.Errorf("actor type %q: want %s, %s or %s", ev.ActorType, outbox.ActorUser, outbox.ActorService, outbox.ActorThirdParty)
	}
	reg := s.cfg.Registry
	if reg == nil {
		return nil
	}
	if ev.ActorID != "" {
		if err := envelope.CheckActorID(ev.ActorID); err != nil {
			return fmt.Errorf("actor id: %w", err)
		}
	}
	t, ok := reg.Topic(ev.Topic)
	switch {
	case ok && t.Name != ev.Topic:
		return fmt.Errorf("%w: %s (names are exact on the wire: did you mean %s?)", topics.ErrUnknownTopic, ev.Topic, t.Name)
	case !ok && ev.Category != "":
		if _, err := reg.Lookup(ev.Category, ev.Entity, ev.Action); err != nil {
			return err // names the closest topic
		}
		fallthrough
	case !ok:
		return fmt.Errorf("%w: %s", topics.ErrUnknownTopic, ev.Topic)
	}
	key, err := t.Validate(ev.Data)
	if err != nil {
		return err
	}
	ev.Topic, ev.Category, ev.Entity, ev.Action = t.Name, t.Category, t.Entity, t.Action
	if ev.Key == "" {
		ev.Key = key
	}
	return nil
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
		if e.ID == "" {
			e.ID = uuid.Must(uuid.NewV7()).String()
		}
		if s.store.has(e.ID) {
			dup[i] = true
			s.stats.Duplicates++
			continue
		}
		stored := s.store.add(Event{
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
	s.store.wake()
	return dup
}

// handleBrite takes one bc-events body: 201 {"eventId","jobId"} with the
// id the event is stored under (the Idempotency-Key, or one the server
// gives it); 409 when the Idempotency-Key was seen before. A body breaking
// the rules of EVENT_SCHEMA on values, or failing the registry, is 422
// ValidationError.
func (s *Server) handleBrite(w http.ResponseWriter, r *http.Request) {
	if !s.begin(w) {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	b, err := wire.DecodeBrite(body)
	if err != nil {
		s.badRequest(w, r, http.StatusBadRequest, err.Error())
		return
	}
	ev := b.Event()
	ev.ID = r.Header.Get(wire.HeaderIdempotencyKey)
	ev.JobID = r.Header.Get(wire.HeaderJobID)
	err = b.Validate()
	if err == nil {
		err = s.check(&ev)
	}
	if err != nil {
		s.rejected(w, wire.FormatBriteEvents, []Rejection{{ID: ev.ID, Topic: ev.Topic, Code: BriteErrValidation, Error: err.Error()}},
			wire.BriteError{ErrorType: BriteErrValidation, ErrorMessage: err.Error()})
		return
	}
	evs := []wire.Event{ev}
	if s.accept(wire.FormatBriteEvents, evs)[0] {
		writeJSON(w, http.StatusConflict, wire.BriteError{ErrorType: "Duplicate", ErrorMessage: "event " + ev.ID + " was received before"})
		return
	}
	writeJSON(w, http.StatusCreated, wire.BriteCreated{EventID: evs[0].ID, JobID: ev.JobID})
}

// briteBulkAnswer is the bulk answer with the server's own additions:
// duplicates counted, and why each failed record failed; senders ignore
// fields they do not know.
type briteBulkAnswer struct {
	FailedRecords int           `json:"failedRecords"`
	Records       []string      `json:"records"`
	Duplicates    int           `json:"duplicates"`
	Errors        []recordError `json:"errors,omitempty"`
}

// briteBulkRejection is the answer to a bulk post refused as a whole
// because records break EVENT_SCHEMA.
type briteBulkRejection struct {
	wire.BriteError
	Errors []recordError `json:"errors"`
}

// recordError says why the record at Index of a bulk post failed.
type recordError struct {
	Index        int    `json:"index"`
	ID           string `json:"id,omitempty"`
	ErrorType    string `json:"errorType"`
	ErrorMessage string `json:"errorMessage,omitempty"`
}

// handleBriteBulk takes up to 250 bc-events bodies. A post with records
// breaking the rules of EVENT_SCHEMA is refused as a whole, as the API
// validates its body: 400 for a record it cannot decode, 422
// ValidationError for values, naming every such record. Otherwise it
// answers 201 with a record per body: "Success" (duplicates included) or
// an error code, ValidationError for a record failing the registry.
func (s *Server) handleBriteBulk(w http.ResponseWriter, r *http.Request) {
	if !s.begin(w) {
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	bs, err := wire.DecodeBriteBulk(body)
	switch {
	case err != nil:
		s.badRequest(w, r, http.StatusBadRequest, err.Error())
		return
	case len(bs) > wire.BriteBulkMax:
		s.badRequest(w, r, http.StatusBadRequest, fmt.Sprintf("%d records, at most %d", len(bs), wire.BriteBulkMax))
		return
	}
	ids := wire.EventIDsFromHeader(r.Header)
	if len(ids) != 0 && len(ids) != len(bs) {
		s.badRequest(w, r, http.StatusBadRequest, fmt.Sprintf("%s lists %d ids for %d records", wire.HeaderEventIDs, len(ids), len(bs)))
		return
	}
	id := func(i int) string {
		if len(ids) > 0 {
			return ids[i]
		}
		return ""
	}
	var invalid []recordError
	for i := range bs {
		if err := bs[i].Validate(); err != nil {
			invalid = append(invalid, recordError{Index: i, ID: id(i), ErrorType: BriteErrValidation, ErrorMessage: err.Error()})
		}
	}
	if len(invalid) > 0 {
		msgs := make([]string, len(invalid))
		rs := make([]Rejection, len(invalid))
		for i, e := range invalid {
			msgs[i] = fmt.Sprintf("record %d: %s", e.Index, e.ErrorMessage)
			b := &bs[e.Index]
			rs[i] = recordRejection(e.Index, e.ID, wire.TopicName(b.Category, b.Entity, b.Action), e.ErrorType, e.ErrorMessage)
		}
		s.rejected(w, wire.FormatBriteEvents, rs, briteBulkRejection{
			BriteError: wire.BriteError{ErrorType: BriteErrValidation, ErrorMessage: strings.Join(msgs, "; ")},
			Errors:     invalid,
		})
		return
	}
	jobID := r.Header.Get(wire.HeaderJobID)
	ans := briteBulkAnswer{Records: make([]string, len(bs))}
	var valid []wire.Event
	for i := range bs {
		ev := bs[i].Event()
		ev.JobID = jobID
		ev.ID = id(i)
		if err := s.check(&ev); err != nil {
			ans.Records[i] = BriteErrValidation
			ans.Errors = append(ans.Errors, recordError{Index: i, ID: ev.ID, ErrorType: BriteErrValidation, ErrorMessage: err.Error()})
			continue
		}
		if code := s.recordFault(); code != "" {
			ans.Records[i] = code
			ans.Errors = append(ans.Errors, recordError{Index: i, ID: ev.ID, ErrorType: code, ErrorMessage: "failed on purpose"})
			continue
		}
		ans.Records[i] = wire.BriteRecordSuccess
		valid = append(valid, ev)
	}
	for _, d := range s.accept(wire.FormatBriteEvents, valid) {
		if d {
			ans.Duplicates++
		}
	}
	for _, rec := range ans.Records {
		if rec != wire.BriteRecordSuccess {
			ans.FailedRecords++
		}
	}
	var rs []Rejection
	for _, e := range ans.Errors {
		if e.ErrorType == BriteErrValidation {
			rs = append(rs, recordRejection(e.Index, e.ID, wire.TopicName(bs[e.Index].Category, bs[e.Index].Entity, bs[e.Index].Action), e.ErrorType, e.ErrorMessage))
			rs[len(rs)-1].Status = http.StatusCreated
		}
	}
	s.mu.Lock()
	s.stats.Rejected += int64(len(rs))
	s.mu.Unlock()
	s.show(wire.FormatBriteEvents, rs)
	writeJSON(w, http.StatusCreated, ans)
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

// cloudEventsAnswer is the answer to a CloudEvents post.
type cloudEventsAnswer struct {
	Accepted   int    `json:"accepted"`
	Duplicates int    `json:"duplicates"`
	Error      string `json:"error,omitempty"`
	Failed     []struct {
		Index int    `json:"index"`
		ID    string `json:"id"`
		Error string `json:"error"`
	} `json:"failed,omitempty"`
}

// handleCloudEvents takes a CloudEvents batch (202, all or nothing: 422 when
// any event fails validation) or one structured event (201; 409 when its id
// was seen before).
func (s *Server) handleCloudEvents(w http.ResponseWriter, r *http.Request) {
	if !s.begin(w) {
		return
	}
	isCE, batch := wire.IsCloudEventsContentType(r.Header.Get("Content-Type"))
	if !isCE {
		s.badRequest(w, r, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: want %s or %s (bc-events bodies go to /events)",
			r.Header.Get("Content-Type"), wire.ContentTypeCloudEventBatch, wire.ContentTypeCloudEvent))
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var evs []wire.Event
	var err error
	if batch {
		evs, err = wire.DecodeCloudEventBatch(body)
	} else {
		var ev wire.Event
		ev, err = wire.DecodeCloudEvent(body)
		evs = []wire.Event{ev}
	}
	if err != nil {
		s.badRequest(w, r, http.StatusBadRequest, err.Error())
		return
	}
	var ans cloudEventsAnswer
	for i := range evs {
		if err := s.check(&evs[i]); err != nil {
			ans.Failed = append(ans.Failed, struct {
				Index int    `json:"index"`
				ID    string `json:"id"`
				Error string `json:"error"`
			}{i, evs[i].ID, err.Error()})
		}
	}
	if len(ans.Failed) > 0 {
		ans.Error = fmt.Sprintf("%d of %d events failed validation; none was stored", len(ans.Failed), len(evs))
		rs := make([]Rejection, len(ans.Failed))
		for i, f := range ans.Failed {
			rs[i] = Rejection{ID: f.ID, Topic: evs[f.Index].Topic, Code: BriteErrValidation, Error: f.Error}
			if batch {
				rs[i].Index = &f.Index
			}
		}
		s.rejected(w, wire.FormatCloudEvents, rs, ans)
		return
	}
	for _, d := range s.accept(wire.FormatCloudEvents, evs) {
		if d {
			ans.Duplicates++
		} else {
			ans.Accepted++
		}
	}
	switch {
	case !batch && ans.Duplicates == 1:
		ans.Error = "event " + evs[0].ID + " was received before"
		writeJSON(w, http.StatusConflict, ans)
	case !batch:
		writeJSON(w, http.StatusCreated, ans)
	default:
		writeJSON(w, http.StatusAccepted, ans)
	}
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
		writeJSON(w, http.StatusBadRequest, wire.BriteError{ErrorType: "BadRequest", ErrorMessage: "after and limit must be non-negative integers"})
		return
	}
	s.mu.Lock()
	evs := s.store.since(after, int(min(limit, 1000)), q.Get("topic"))
	next := s.store.next - 1
	s.mu.Unlock()
	if len(evs) > 0 && len(evs) == int(min(limit, 1000)) {
		next = evs[len(evs)-1].Seq
	}
	writeJSON(w, http.StatusOK, eventsAnswer{Events: evs, Next: next})
}

func (s *Server) handleStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
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
	rafter := s.store.rejectNext - 1
	if after < 0 {
		after = max(0, s.store.next-1-100)
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
		evs := s.store.since(after, 500, "")
		rjs := s.store.rejectionsSince(rafter, 500)
		wait := s.store.notify
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

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
