package faults

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/internal/sinkserver"
	"github.com/txoutbox/txoutbox/internal/wire"
)

// faultMode is what the sink does to the requests it gets.
type faultMode int32

const (
	healthy faultMode = iota
	// answer500 answers 500 without looking at the request.
	answer500
	// answer429 answers 429 with Retry-After: 1.
	answer429
	// hang never answers; the sender's timeout ends the request.
	hang
	// closeMidResponse stores the events, then closes the connection
	// before the answer is complete: the sender cannot know they arrived.
	closeMidResponse
	// malformed answers with bodies no sender should trust: HTML error
	// pages, truncated or oversized JSON, a bulk answer that does not say
	// which records failed, a 2xx bulk answer that is not JSON.
	malformed
	// flaky fails a random share of the requests, each drawn on its own:
	// flaky500Share answered 500 and flaky429Share answered 429 with
	// Retry-After: 1, storing nothing; the rest reach the events API.
	flaky
)

func (m faultMode) String() string {
	return [...]string{"healthy", "500", "429", "hang", "close", "malformed", "flaky"}[m]
}

// The shares of the requests flaky fails.
const (
	flaky500Share = 0.10
	flaky429Share = 0.05
)

// retryAfter is the Retry-After answer429 sends, in seconds.
const retryAfter = time.Second

// sink is a local events API (sinkserver.Server, checking every event
// against the topic definitions) behind a proxy that records every event
// it stores, in arrival order and with who sent it, and injects faults.
type sink struct {
	srv  *sinkserver.Server
	http *httptest.Server

	mode atomic.Int32 // faultMode
	// jitter delays each request by up to this much, to widen the window
	// in which a relay can be killed with a batch in flight.
	jitter time.Duration
	done   chan struct{}

	requests atomic.Int64
	window   struct {
		sync.Mutex
		failures  int         // faulted requests the sender must see fail
		successes int         // faulted requests the sender may count as delivered
		byStatus  map[int]int // of the failures, those answered with a status
	}

	mu       sync.Mutex
	arrivals []arrival
	seen     map[string]bool
	decodeEr []string
}

// arrival is one event stored by the sink, as sent by from (the sender's
// "from" query parameter), at the time the events API stored it.
type arrival struct {
	id   string
	key  string
	seq  int64
	from string
	at   time.Time
}

func newSink(t *testing.T) *sink {
	t.Helper()
	srv, err := sinkserver.New(&sinkserver.Config{Registry: loadRegistry(t), Capacity: 1024, DedupeWindow: 1 << 20, Logger: discard})
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{srv: srv, seen: map[string]bool{}, done: make(chan struct{})}
	s.http = httptest.NewServer(s)
	t.Cleanup(func() {
		close(s.done)
		s.http.Close()
		_ = srv.Close()
		if len(s.decodeEr) > 0 {
			t.Errorf("the sink could not read what it stored: %v", s.decodeEr)
		}
	})
	return s
}

// url returns the address a sender named from posts to.
func (s *sink) url(from string) string { return s.http.URL + "/?from=" + from }

// setMode switches the fault and, when it starts a fault, resets the
// window's counts.
func (s *sink) setMode(m faultMode) {
	if m != healthy {
		s.window.Lock()
		s.window.failures, s.window.successes = 0, 0
		s.window.byStatus = nil
		s.window.Unlock()
	}
	s.mode.Store(int32(m))
}

// windowCounts returns the faulted requests since the fault started.
func (s *sink) windowCounts() (failures, successes int) {
	s.window.Lock()
	defer s.window.Unlock()
	return s.window.failures, s.window.successes
}

// windowStatus returns the faulted requests since the fault started that
// were answered with code.
func (s *sink) windowStatus(code int) int {
	s.window.Lock()
	defer s.window.Unlock()
	return s.window.byStatus[code]
}

// countStatus counts a failed request answered with code.
func (s *sink) countStatus(code int) {
	s.window.Lock()
	defer s.window.Unlock()
	s.window.failures++
	if s.window.byStatus == nil {
		s.window.byStatus = map[int]int{}
	}
	s.window.byStatus[code]++
}

func (s *sink) count(fail bool) {
	s.window.Lock()
	defer s.window.Unlock()
	if fail {
		s.window.failures++
	} else {
		s.window.successes++
	}
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.requests.Add(1)
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if s.jitter > 0 {
		time.Sleep(rand.N(s.jitter))
	}
	mode := faultMode(s.mode.Load())
	if mode != healthy {
		s.inject(mode, n, w, r, body)
		return
	}
	rec := s.forward(r, body)
	copyResponse(w, rec)
}

// inject answers a request in fault mode.
func (s *sink) inject(mode faultMode, n int64, w http.ResponseWriter, r *http.Request, body []byte) {
	switch mode {
	case answer500:
		s.countStatus(http.StatusInternalServerError)
		http.Error(w, `{"errorType":"InternalServerError","errorMessage":"injected"}`, http.StatusInternalServerError)
	case answer429:
		s.countStatus(http.StatusTooManyRequests)
		w.Header().Set("Retry-After", fmt.Sprint(int(retryAfter/time.Second)))
		http.Error(w, `{"errorType":"TooManyRequests"}`, http.StatusTooManyRequests)
	case hang:
		s.count(true)
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
	case closeMidResponse:
		s.count(true)
		s.forward(r, body)
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err) // httptest servers speak HTTP/1.1, which can be hijacked
		}
		if n%2 == 0 {
			// Half a status line and headers promising a body never sent.
			_, _ = buf.WriteString("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n{\"fail")
			_ = buf.Flush()
		}
		_ = conn.Close()
	case malformed:
		s.malformed(n, w, r, body)
	case flaky:
		switch p := rand.Float64(); {
		case p < flaky500Share:
			s.inject(answer500, n, w, r, body)
		case p < flaky500Share+flaky429Share:
			s.inject(answer429, n, w, r, body)
		default:
			copyResponse(w, s.forward(r, body))
		}
	}
}

// malformed sends the n-th malformed answer, cycling through the kinds.
func (s *sink) malformed(n int64, w http.ResponseWriter, r *http.Request, body []byte) {
	bulk := strings.HasSuffix(r.URL.Path, "/bulk/")
	switch n % 5 {
	case 0: // a proxy's HTML error page
		s.count(true)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, "<html><body><h1>502 Bad Gateway</h1>\x00\xff\xfe</body></html>")
	case 1: // truncated JSON error
		s.count(true)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"errorType":"Throttl`)
	case 2: // an error body larger than anyone should read
		s.count(true)
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write(bytes.Repeat([]byte{0xff, '{', '\n'}, 1<<20))
	case 3: // stored, but the bulk answer does not say which records failed
		s.forward(r, body)
		s.count(true)
		if !bulk {
			http.Error(w, "\x1b[31mnot json", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"failedRecords": 2}`)
	case 4: // stored, and a 2xx whose body is not JSON: delivered
		s.forward(r, body)
		s.count(false)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"failedRecords": 0, "records": ["Succ`)
	}
}

// forward hands the request to the events API and records the events it
// stored.
func (s *sink) forward(r *http.Request, body []byte) *httptest.ResponseRecorder {
	req := r.Clone(r.Context())
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	rec := httptest.NewRecorder()
	s.srv.ServeHTTP(rec, req)
	if rec.Code/100 == 2 || rec.Code == http.StatusConflict {
		s.record(r, body)
	}
	return rec
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// record decodes the events of a request the events API accepted.
func (s *sink) record(r *http.Request, body []byte) {
	var evs []wire.Event
	var err error
	switch {
	case strings.HasSuffix(r.URL.Path, "/events"):
		var b wire.BriteEvent
		if b, err = wire.DecodeBrite(body); err == nil {
			ev := b.Event()
			ev.ID = r.Header.Get(wire.HeaderIdempotencyKey)
			evs = []wire.Event{ev}
		}
	case strings.HasSuffix(r.URL.Path, "/bulk/"):
		var bs []wire.BriteEvent
		if bs, err = wire.DecodeBriteBulk(body); err == nil {
			ids := wire.EventIDsFromHeader(r.Header)
			if len(ids) != len(bs) {
				err = fmt.Errorf("bulk post of %d events lists %d ids", len(bs), len(ids))
				break
			}
			for i := range bs {
				ev := bs[i].Event()
				ev.ID = ids[i]
				evs = append(evs, ev)
			}
		}
	default:
		evs, err = wire.DecodeCloudEventBatch(body)
	}
	from := r.URL.Query().Get("from")
	at := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.decodeEr = append(s.decodeEr, err.Error())
		return
	}
	for _, ev := range evs {
		var d counterData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			s.decodeEr = append(s.decodeEr, fmt.Sprintf("event %s: %v", ev.ID, err))
			continue
		}
		s.arrivals = append(s.arrivals, arrival{id: ev.ID, key: d.ID, seq: d.Seq, from: from, at: at})
		s.seen[ev.ID] = true
	}
}

// distinct returns the number of distinct events stored.
func (s *sink) distinct() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

func (s *sink) snapshot() []arrival {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]arrival(nil), s.arrivals...)
}
