package relayhttp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/internal/sinkserver"
	"github.com/txoutbox/txoutbox/internal/testlog"
	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/outbox"
	"github.com/txoutbox/txoutbox/relay"
	"github.com/txoutbox/txoutbox/relay/relaytest"
	"github.com/txoutbox/txoutbox/topics"
)

var updateHTTPSinkGolden = flag.Bool("httpsink.update", false, "rewrite relay/relayhttp/testdata golden files")

// recordedRequest is one request an httpSinkServer received.
type recordedRequest struct {
	Path   string
	Header http.Header
	Body   []byte
}

// httpSinkServer is an events API stand-in on 127.0.0.1 that records what
// it receives and answers with answer.
type httpSinkServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests []recordedRequest
}

func newHTTPSinkServer(t *testing.T, tlsServer bool, answer http.HandlerFunc) *httpSinkServer {
	t.Helper()
	s := &httpSinkServer{}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.requests = append(s.requests, recordedRequest{Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
		s.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		answer(w, r)
	})
	if tlsServer {
		s.Server = httptest.NewUnstartedServer(h)
		s.Config.ErrorLog = log.New(io.Discard, "", 0) // handshakes the test makes fail
		s.StartTLS()
	} else {
		s.Server = httptest.NewServer(h)
	}
	t.Cleanup(s.Close)
	return s
}

func (s *httpSinkServer) recorded() []recordedRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recordedRequest(nil), s.requests...)
}

func status(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}

func newTestHTTPSink(t *testing.T, cfg Config) *Sink {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := New(&cfg)
	if err != nil {
		t.Fatalf("NewHTTPSink: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// sinkMessage builds a message shaped as the outbox hands it to sinks.
func sinkMessage(n int, key, job string) *outbox.Event {
	return &outbox.Event{
		ID:       uuid.MustParse(fmt.Sprintf("0190f5e0-0000-7000-8000-%012d", n)),
		Topic:    "billing.InvoiceCreated",
		Category: "billing", Entity: "Invoice", Action: "Created",
		Data:    []byte(fmt.Sprintf(`{"id":%q,"amount_cents":%d,"currency":"EUR"}`, key, 100*n)),
		ActorID: "user-4711", ActorType: outbox.ActorUser,
		JobID: job, Source: "billing-service", Key: key,
		Time: time.Date(2026, 11, 23, 10, 0, 0, 500_000_000, time.UTC),
	}
}

// send delivers events through sink as the relay does.
func send(sink *Sink, events ...*outbox.Event) error {
	return sink.Send(context.Background(), events)
}

func checkGolden(t *testing.T, name string, body []byte) {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Indent(&buf, body, "", "  "); err != nil {
		t.Fatalf("%s: body is not JSON: %v: %s", name, err, body)
	}
	buf.WriteByte('\n')
	path := filepath.Join("testdata", name)
	if *updateHTTPSinkGolden {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (go test -run HTTPSink -httpsink.update writes it): %v", err)
	}
	if buf.String() != string(want) {
		t.Errorf("%s differs from the golden file:\n%s", name, buf.String())
	}
}

func TestHTTPSinkCloudEvents(t *testing.T) {
	t.Parallel()
	srv := newHTTPSinkServer(t, false, status(http.StatusAccepted, ""))
	sink := newTestHTTPSink(t, Config{URL: srv.URL + "/ingest"})
	msgs := []*outbox.Event{sinkMessage(1, "inv-1", "job-1"), sinkMessage(2, "inv-2", "job-2")}
	msgs[1].Traceparent = ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	msgs[1].Tenant = ("acme")
	msgs[1].CausationID = (msgs[0].ID.String())
	if err := send(sink, msgs...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	reqs := srv.recorded()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Path != "/ingest" || r.Header.Get("Content-Type") != wire.ContentTypeCloudEventBatch {
		t.Errorf("request %s with Content-Type %q", r.Path, r.Header.Get("Content-Type"))
	}
	if got, want := r.Header.Get(wire.HeaderIdempotencyKey), wire.BulkIdempotencyKey([]string{msgs[0].ID.String(), msgs[1].ID.String()}); got != want {
		t.Errorf("Idempotency-Key = %q, want %q", got, want)
	}
	checkGolden(t, "cloudevents.json", r.Body)
}

func TestHTTPSinkBriteEvents(t *testing.T) {
	t.Parallel()
	srv := newHTTPSinkServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/bulk/") {
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, `{"failedRecords":0,"records":["Success","Success","Success"]}`)
			return
		}
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"eventId":"e","jobId":"j"}`)
	})
	sink := newTestHTTPSink(t, Config{URL: srv.URL + "/api/", Format: FormatBriteEvents})
	// Jobs A, A, B, A: A's three events share a bulk post, B's goes alone.
	msgs := []*outbox.Event{
		sinkMessage(1, "inv-1", "job-A"), sinkMessage(2, "inv-2", "job-A"),
		sinkMessage(3, "inv-3", "job-B"), sinkMessage(4, "inv-1", "job-A"),
	}
	if err := send(sink, msgs...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	reqs := srv.recorded()
	if len(reqs) != 2 {
		t.Fatalf("%d requests, want 2 (one per job id)", len(reqs))
	}
	bulk, single := reqs[0], reqs[1]
	if bulk.Path != "/api/events/bulk/" || single.Path != "/api/events" {
		t.Errorf("paths %s, %s", bulk.Path, single.Path)
	}
	if bulk.Header.Get(wire.HeaderJobID) != "job-A" || single.Header.Get(wire.HeaderJobID) != "job-B" {
		t.Errorf("job ids %q, %q", bulk.Header.Get(wire.HeaderJobID), single.Header.Get(wire.HeaderJobID))
	}
	ids := []string{msgs[0].ID.String(), msgs[1].ID.String(), msgs[3].ID.String()}
	if got := wire.EventIDsFromHeader(bulk.Header); strings.Join(got, ",") != strings.Join(ids, ",") {
		t.Errorf("bulk event ids %v, want %v", got, ids)
	}
	if bulk.Header.Get(wire.HeaderIdempotencyKey) != wire.BulkIdempotencyKey(ids) {
		t.Errorf("bulk Idempotency-Key = %q", bulk.Header.Get(wire.HeaderIdempotencyKey))
	}
	if single.Header.Get(wire.HeaderIdempotencyKey) != msgs[2].ID.String() {
		t.Errorf("single Idempotency-Key = %q, want the event id", single.Header.Get(wire.HeaderIdempotencyKey))
	}
	checkGolden(t, "briteevents_bulk.json", bulk.Body)
	checkGolden(t, "briteevents_single.json", single.Body)
}

// TestHTTPSinkBriteKeyOrder checks that grouping by job id never sends a
// key's event before an earlier one of the same key.
func TestHTTPSinkBriteKeyOrder(t *testing.T) {
	t.Parallel()
	srv := newHTTPSinkServer(t, false, status(http.StatusCreated, `{}`))
	sink := newTestHTTPSink(t, Config{URL: srv.URL, Format: FormatBriteEvents})
	msgs := []*outbox.Event{
		sinkMessage(1, "inv-1", "job-A"), sinkMessage(2, "inv-1", "job-B"), sinkMessage(3, "inv-1", "job-A"),
	}
	if err := send(sink, msgs...); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range srv.recorded() {
		got = append(got, r.Header.Get(wire.HeaderIdempotencyKey))
	}
	want := []string{msgs[0].ID.String(), msgs[1].ID.String(), msgs[2].ID.String()}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("sent %v, want one request each in order %v", got, want)
	}
}

func TestHTTPSinkStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		code        int
		retryAfter  string
		want        string // nil, retry, permanent
		wantAfter   time.Duration
		bodyOnError string
	}{
		{code: 200, want: "nil"},
		{code: 201, want: "nil"},
		{code: 204, want: "nil"},
		{code: 409, want: "nil"},
		{code: 408, want: "retry"},
		{code: 429, want: "retry"},
		{code: 429, retryAfter: "7", want: "retry", wantAfter: 7 * time.Second},
		{code: 500, want: "retry"},
		{code: 502, want: "retry"},
		{code: 503, retryAfter: "120", want: "retry", wantAfter: 2 * time.Minute},
		{code: 401, want: "retry"},
		{code: 403, want: "retry"},
		{code: 404, want: "retry"},
		{code: 400, want: "permanent"},
		{code: 413, want: "permanent"},
		{code: 422, want: "permanent", bodyOnError: `{"error":"schema"}`},
	} {
		t.Run(fmt.Sprintf("%d%s", tc.code, tc.retryAfter), func(t *testing.T) {
			t.Parallel()
			srv := newHTTPSinkServer(t, false, func(w http.ResponseWriter, _ *http.Request) {
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.WriteHeader(tc.code)
				_, _ = io.WriteString(w, tc.bodyOnError)
			})
			sink := newTestHTTPSink(t, Config{URL: srv.URL})
			err := send(sink, sinkMessage(1, "inv-1", "job-1"))
			switch tc.want {
			case "nil":
				if err != nil {
					t.Fatalf("Publish = %v, want delivered", err)
				}
				return
			case "retry":
				if err == nil || relay.IsPermanent(err) {
					t.Fatalf("Publish = %v, want a retryable error", err)
				}
			case "permanent":
				if !relay.IsPermanent(err) {
					t.Fatalf("Publish = %v, want a permanent error", err)
				}
			}
			var se *StatusError
			if !errors.As(err, &se) || se.StatusCode != tc.code {
				t.Errorf("error %v does not carry status %d", err, tc.code)
			}
			if tc.bodyOnError != "" && !strings.Contains(err.Error(), tc.bodyOnError) {
				t.Errorf("error %q lacks the answer's body", err)
			}
			d, ok := relay.RetryAfterOf(err)
			if ok != (tc.wantAfter != 0) || d != tc.wantAfter {
				t.Errorf("RetryAfterOf = %s, %v; want %s", d, ok, tc.wantAfter)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"0":                              0,
		"30":                             30 * time.Second,
		" 5 ":                            5 * time.Second,
		"Mon, 23 Nov 2026 10:01:30 GMT":  90 * time.Second,
		"Monday, 23-Nov-26 10:00:10 GMT": 10 * time.Second, // RFC 850
		"Mon, 23 Nov 2026 09:00:00 GMT":  0,                // in the past
		"99999999999999":                 maxWait,
	} {
		if got, ok := parseRetryAfter(in, now); !ok || got != want {
			t.Errorf("parseRetryAfter(%q) = %s, %v; want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "-1", "soon", "1.5"} {
		if got, ok := parseRetryAfter(in, now); ok {
			t.Errorf("parseRetryAfter(%q) = %s, want no value", in, got)
		}
	}
}

// TestHTTPSinkRetryAfterDate checks the HTTP-date form end to end.
func TestHTTPSinkRetryAfterDate(t *testing.T) {
	t.Parallel()
	srv := newHTTPSinkServer(t, false, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", time.Now().Add(time.Hour).UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	sink := newTestHTTPSink(t, Config{URL: srv.URL})
	err := send(sink, sinkMessage(1, "inv-1", "job-1"))
	if d, ok := relay.RetryAfterOf(err); !ok || d <= 58*time.Minute || d > time.Hour {
		t.Errorf("relay.RetryAfterOf(%v) = %s, %v; want about an hour", err, d, ok)
	}
}

func TestHTTPSinkBriteBulkPartialFailure(t *testing.T) {
	t.Parallel()
	srv := newHTTPSinkServer(t, false, status(http.StatusCreated,
		`{"failedRecords":2,"records":["Success","ProvisionedThroughputExceededException","ValidationError"]}`))
	sink := newTestHTTPSink(t, Config{URL: srv.URL, Format: FormatBriteEvents})
	msgs := []*outbox.Event{sinkMessage(1, "inv-1", "j"), sinkMessage(2, "inv-2", "j"), sinkMessage(3, "inv-3", "j")}
	err := send(sink, msgs...)
	var be *relay.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("Publish = %v, want a *relay.BatchError", err)
	}
	if len(be.Failed) != 2 || be.Failed[msgs[0].ID.String()] != nil {
		t.Fatalf("failed = %v, want the 2nd and 3rd only", be.Failed)
	}
	if e := be.Failed[msgs[1].ID.String()]; e == nil || relay.IsPermanent(e) {
		t.Errorf("throughput-exceeded record: %v, want retryable", e)
	}
	if e := be.Failed[msgs[2].ID.String()]; !relay.IsPermanent(e) {
		t.Errorf("validation record: %v, want permanent", e)
	}
}

func TestHTTPSinkBriteBulkAnswers(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		code      int
		body      string
		delivered bool
		warn      bool
	}{
		"not JSON":          {201, `<html>ok</html>`, true, true},
		"empty body":        {204, ``, true, true},
		"zero failed":       {201, `{"failedRecords":0}`, true, false},
		"ambiguous":         {201, `{"failedRecords":1,"records":[]}`, false, false},
		"busy stream (400)": {400, `{"errorType":"ProvisionedThroughputExceededException"}`, false, false},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := newHTTPSinkServer(t, false, status(tc.code, tc.body))
			var logs testlog.Buffer
			sink := newTestHTTPSink(t, Config{URL: srv.URL, Format: FormatBriteEvents,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			err := send(sink, sinkMessage(1, "inv-1", "j"), sinkMessage(2, "inv-2", "j"))
			if tc.delivered != (err == nil) {
				t.Fatalf("Publish = %v, want delivered=%v", err, tc.delivered)
			}
			if err != nil && relay.IsPermanent(err) {
				t.Errorf("Publish = %v, want retryable", err)
			}
			if tc.warn != strings.Contains(logs.String(), "level=WARN") {
				t.Errorf("logs = %q, want a warning: %v", logs.String(), tc.warn)
			}
		})
	}
}

// TestHTTPSinkIsolatesPoison checks that a 4xx for a batch is narrowed down
// to the events that cause it.
func TestHTTPSinkIsolatesPoison(t *testing.T) {
	t.Parallel()
	poison := sinkMessage(2, "inv-2", "j")
	poison.Data = []byte(`{"id":"inv-2","amount_cents":-1}`)
	srv := newHTTPSinkServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`"amount_cents":-1`)) {
			w.WriteHeader(http.StatusUnprocessableEntity)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	sink := newTestHTTPSink(t, Config{URL: srv.URL})
	msgs := []*outbox.Event{sinkMessage(1, "inv-1", "j"), poison, sinkMessage(3, "inv-3", "j"), sinkMessage(4, "inv-2", "j")}
	err := send(sink, msgs...)
	var be *relay.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 2 || !relay.IsPermanent(be.Failed[poison.ID.String()]) {
		t.Fatalf("Publish = %#v, want the poison event failed permanently and its key's next held back", err)
	}
	if e := be.Failed[msgs[3].ID.String()]; e == nil || relay.IsPermanent(e) {
		t.Errorf("next event of the poison's key: %v, want held back (retryable)", e)
	}
	// One batch, then one request per event of the batch but not the held-back one.
	if n := len(srv.recorded()); n != 4 {
		t.Errorf("%d requests, want 4", n)
	}
}

// TestHTTPSinkNarrowingKeepsDelivered checks that when a retryable failure
// cuts short the narrowing of a refused request to its poison event, the
// events already delivered one by one count as delivered, not as failed to
// be sent again.
func TestHTTPSinkNarrowingKeepsDelivered(t *testing.T) {
	t.Parallel()
	msgs := []*outbox.Event{sinkMessage(1, "inv-1", "j"), sinkMessage(2, "inv-2", "j"), sinkMessage(3, "inv-3", "j")}
	var mu sync.Mutex
	calls := 0
	srv := newHTTPSinkServer(t, false, func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch calls++; calls {
		case 1: // the three together
			w.WriteHeader(http.StatusUnprocessableEntity)
		case 2: // the first alone
			w.WriteHeader(http.StatusAccepted)
		default: // the second alone
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	sink := newTestHTTPSink(t, Config{URL: srv.URL})
	err := send(sink, msgs...)
	var be *relay.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("Publish = %v, want a *relay.BatchError", err)
	}
	if _, ok := be.Failed[msgs[0].ID.String()]; ok || len(be.Failed) != 2 {
		t.Errorf("failed %v, want the first delivered and the other two failed", be.Failed)
	}
	for _, m := range msgs[1:] {
		if e := be.Failed[m.ID.String()]; e == nil || relay.IsPermanent(e) {
			t.Errorf("%s: %v, want retryable", m.ID.String(), e)
		}
	}
	if n := len(srv.recorded()); n != 3 {
		t.Errorf("%d requests, want 3: nothing after the 503", n)
	}
}

// TestHTTPSinkStopsOnRetryable checks that a retryable failure of a request
// stops the rest of the batch: the request's messages fail with its error,
// the later ones are reported not sent (relay.ErrNotSent), so that the relay
// counts no attempt for them.
func TestHTTPSinkStopsOnRetryable(t *testing.T) {
	t.Parallel()
	srv := newHTTPSinkServer(t, false, status(http.StatusServiceUnavailable, "down"))
	sink := newTestHTTPSink(t, Config{URL: srv.URL, MaxBatch: 2})
	var msgs []*outbox.Event
	for i := range 5 {
		msgs = append(msgs, sinkMessage(i+1, fmt.Sprint("inv-", i), "j"))
	}
	err := send(sink, msgs...)
	var be *relay.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 5 {
		t.Fatalf("Publish = %v, want a *relay.BatchError naming all five", err)
	}
	for i, m := range msgs {
		e := be.Failed[m.ID.String()]
		var se *StatusError
		switch {
		case i < 2 && (!errors.As(e, &se) || se.StatusCode != 503 || errors.Is(e, relay.ErrNotSent)):
			t.Errorf("message %d, in the failed request: %v, want the 503", i, e)
		case i >= 2 && !errors.Is(e, relay.ErrNotSent):
			t.Errorf("message %d, after the failed request: %v, want relay.ErrNotSent", i, e)
		}
	}
	if n := len(srv.recorded()); n != 1 {
		t.Errorf("%d requests after a 503, want 1", n)
	}
}

// TestHTTPSinkStableID checks that a retried event goes out with the same id
// and idempotency key.
func TestHTTPSinkStableID(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	calls := 0
	srv := newHTTPSinkServer(t, false, func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if calls++; calls == 1 {
			w.WriteHeader(http.StatusBadGateway)
		}
	})
	for _, format := range []Format{FormatCloudEvents, FormatBriteEvents} {
		sink := newTestHTTPSink(t, Config{URL: srv.URL, Format: format})
		mu.Lock()
		calls = 0
		mu.Unlock()
		msg := sinkMessage(7, "inv-7", "j")
		if err := send(sink, msg); err == nil {
			t.Fatal("first attempt succeeded against a 502")
		}
		if err := send(sink, msg); err != nil {
			t.Fatalf("second attempt: %v", err)
		}
	}
	reqs := srv.recorded()
	for i := 0; i < len(reqs); i += 2 {
		a, b := reqs[i], reqs[i+1]
		if a.Header.Get(wire.HeaderIdempotencyKey) != "0190f5e0-0000-7000-8000-000000000007" ||
			a.Header.Get(wire.HeaderIdempotencyKey) != b.Header.Get(wire.HeaderIdempotencyKey) || !bytes.Equal(a.Body, b.Body) {
			t.Errorf("attempts differ:\n%v %s\n%v %s", a.Header, a.Body, b.Header, b.Body)
		}
	}
}

func TestHTTPSinkAuth(t *testing.T) {
	t.Parallel()
	const token, key = "s3cr3t-token", "s3cr3t-key"
	srv := newHTTPSinkServer(t, false, status(http.StatusUnauthorized, `{"message":"no"}`))

	bearer := newTestHTTPSink(t, Config{URL: srv.URL + "/?api_key=" + key, BearerToken: token})
	errBearer := send(bearer, sinkMessage(1, "inv-1", "j"))
	apiKey := newTestHTTPSink(t, Config{URL: srv.URL, APIKeyHeader: "X-Api-Key", APIKey: key})
	errKey := send(apiKey, sinkMessage(1, "inv-1", "j"))

	reqs := srv.recorded()
	if got := reqs[0].Header.Get("Authorization"); got != "Bearer "+token {
		t.Errorf("Authorization = %q", got)
	}
	if got := reqs[1].Header.Get("X-Api-Key"); got != key || reqs[1].Header.Get("Authorization") != "" {
		t.Errorf("X-Api-Key = %q, Authorization = %q", got, reqs[1].Header.Get("Authorization"))
	}
	for _, s := range []string{bearer.String(), apiKey.String(), fmt.Sprint(errBearer), fmt.Sprint(errKey)} {
		if strings.Contains(s, token) || strings.Contains(s, key) {
			t.Errorf("credentials leak into %q", s)
		}
	}
	if errBearer == nil || relay.IsPermanent(errBearer) || !strings.Contains(errBearer.Error(), "credentials") {
		t.Errorf("401 = %v, want a retryable error pointing at the credentials", errBearer)
	}

	userinfo := newTestHTTPSink(t, Config{URL: "https://user:" + key + "@events.example/api?token=" + token})
	if s := userinfo.String(); strings.Contains(s, key) || strings.Contains(s, token) || s != "relayhttp.Sink(cloudevents, https://events.example/api)" {
		t.Errorf("String() = %q", s)
	}
}

func TestHTTPSinkTLS(t *testing.T) {
	t.Parallel()
	srv := newHTTPSinkServer(t, true, status(http.StatusOK, ""))

	verifying := newTestHTTPSink(t, Config{URL: srv.URL})
	err := send(verifying, sinkMessage(1, "inv-1", "j"))
	var certErr *tls.CertificateVerificationError
	if !errors.As(err, &certErr) || relay.IsPermanent(err) {
		t.Fatalf("Publish to an unknown CA = %v, want a certificate verification error", err)
	}

	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	trusting := newTestHTTPSink(t, Config{URL: srv.URL, TLSConfig: &tls.Config{RootCAs: pool}})
	if err := send(trusting, sinkMessage(1, "inv-1", "j")); err != nil {
		t.Errorf("Publish with the server's CA = %v", err)
	}

	var logs testlog.Buffer
	insecure := newTestHTTPSink(t, Config{URL: srv.URL, InsecureSkipVerify: true,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err := send(insecure, sinkMessage(1, "inv-1", "j")); err != nil {
		t.Errorf("Publish with InsecureSkipVerify = %v", err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "verification is off") {
		t.Errorf("InsecureSkipVerify logged %q, want a warning", logs.String())
	}
}

func TestHTTPSinkTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := newHTTPSinkServer(t, false, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	sink := newTestHTTPSink(t, Config{URL: srv.URL, Timeout: 50 * time.Millisecond})
	err := send(sink, sinkMessage(1, "inv-1", "j"))
	if !errors.Is(err, context.DeadlineExceeded) || relay.IsPermanent(err) {
		t.Fatalf("Publish to a stalled server = %v, want a retryable deadline error", err)
	}
}

func TestHTTPSinkContextCancelled(t *testing.T) {
	t.Parallel()
	srv := newHTTPSinkServer(t, false, status(http.StatusOK, ""))
	sink := newTestHTTPSink(t, Config{URL: srv.URL})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := sink.Send(ctx, []*outbox.Event{sinkMessage(1, "inv-1", "j")})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, relay.ErrNotSent) {
		t.Fatalf("Send with a cancelled context = %v, want it not sent", err)
	}
	if n := len(srv.recorded()); n != 0 {
		t.Errorf("%d requests with a cancelled context, want none", n)
	}
}

// TestHTTPSinkConnectionClosed checks answers cut off mid-way: before the
// status line, and inside a bulk answer's body.
func TestHTTPSinkConnectionClosed(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		format Format
		raw    string
	}{
		"before the status": {FormatCloudEvents, ""},
		"mid headers":       {FormatCloudEvents, "HTTP/1.1 200 OK\r\nContent-Ty"},
		"mid bulk body":     {FormatBriteEvents, "HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{\"failedRec"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := newHTTPSinkServer(t, false, func(w http.ResponseWriter, _ *http.Request) {
				conn, buf, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = buf.WriteString(tc.raw)
				_ = buf.Flush()
				_ = conn.Close()
			})
			sink := newTestHTTPSink(t, Config{URL: srv.URL, Format: tc.format})
			err := send(sink, sinkMessage(1, "inv-1", "j"), sinkMessage(2, "inv-2", "j"))
			if err == nil || relay.IsPermanent(err) {
				t.Fatalf("Publish = %v, want a retryable error", err)
			}
		})
	}
}

func TestHTTPSinkConfigValidate(t *testing.T) {
	t.Parallel()
	for field, cfg := range map[string]Config{
		"URL":                           {},
		"URL: \"ftp":                    {URL: "ftp://x/"},
		"Format":                        {URL: "http://x", Format: "xml"},
		"Timeout":                       {URL: "http://x", Timeout: -1},
		"MaxBatch: -1":                  {URL: "http://x", MaxBatch: -1},
		"MaxParallel: -2":               {URL: "http://x", MaxParallel: -2},
		"MaxBatch: 251":                 {URL: "http://x", Format: FormatBriteEvents, MaxBatch: 251},
		"APIKeyHeader, APIKey":          {URL: "http://x", APIKey: "k"},
		"APIKeyHeader: \"X Key\"":       {URL: "http://x", APIKeyHeader: "X Key", APIKey: "k"},
		"TLSConfig, InsecureSkipVerify": {URL: "http://x", Client: http.DefaultClient, InsecureSkipVerify: true},
	} {
		_, err := New(&cfg)
		if !errors.Is(err, relay.ErrInvalidConfig) || !strings.Contains(err.Error(), "relayhttp.Config."+field) {
			t.Errorf("New(%+v) = %v, want relay.ErrInvalidConfig naming %s", cfg, err, field)
		}
	}
	s, err := New(&Config{URL: "http://x", Format: " BriteEvents", Client: http.DefaultClient})
	if err != nil || s.maxBatch != BriteMaxBatchDefault || s.timeout != TimeoutDefault {
		t.Errorf("defaults: %+v, %v", s, err)
	}
}

// TestHTTPSinkConfigURLSecret checks that New's error for a URL that does
// not parse names the problem without the URL's credentials.
func TestHTTPSinkConfigURLSecret(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"https://user:s3cret-pw@[::1", "https://user:s3cret-pw@host:port/", "https://host/x?token=s3cret-pw\x7f"} {
		_, err := New(&Config{URL: u})
		if !errors.Is(err, relay.ErrInvalidConfig) || !strings.Contains(err.Error(), "relayhttp.Config.URL") {
			t.Errorf("New(%q) = %v, want relay.ErrInvalidConfig naming URL", u, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("New(%q) = %v: the error shows the password", u, err)
		}
	}
}

// BenchmarkHTTPSink posts CloudEvents batches of 500 to a server on
// 127.0.0.1 that reads each body and answers 202.
func BenchmarkHTTPSink(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, bufio.NewReader(r.Body))
		w.WriteHeader(http.StatusAccepted)
	}))
	defer srv.Close()
	sink, err := New(&Config{URL: srv.URL, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	msgs := make([]*outbox.Event, 500)
	for i := range msgs {
		msgs[i] = sinkMessage(i, fmt.Sprint("inv-", i), "job-1")
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := send(sink, msgs...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(msgs))/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkHTTPSinkSend posts a relay batch of 1,000 events on
// 1,000 keys, with data as PostgreSQL's json functions write it, to a server
// on 127.0.0.1 that reads each body and answers 202, at once ("local") or
// after 5 ms ("remote", an API across a network): in requests of 500 one
// after the other, in two lanes side by side, and in one request of 1,000.
func BenchmarkHTTPSinkSend(b *testing.B) {
	events := make([]*outbox.Event, 1000)
	for i := range events {
		key := fmt.Sprint("inv-", i)
		events[i] = &outbox.Event{
			ID: uuid.New(), Topic: "billing.InvoiceCreated", Category: "billing", Entity: "Invoice", Action: "Created",
			Data:    fmt.Appendf(nil, `{"id" : %q, "customer" : {"id" : "cus-1", "name" : "Customer"}, "amount_cents" : %d, "currency" : "EUR"}`, key, i),
			ActorID: "user-42", ActorType: outbox.ActorUser, JobID: fmt.Sprint("job-", i), Source: "billing-api", Key: key,
			Time: time.Now(),
		}
	}
	for _, api := range []struct {
		name  string
		delay time.Duration
	}{{"local", 0}, {"remote", 5 * time.Millisecond}} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, bufio.NewReader(r.Body))
			time.Sleep(api.delay)
			w.WriteHeader(http.StatusAccepted)
		}))
		for _, bc := range []struct {
			name               string
			maxBatch, parallel int
		}{
			{"500x2/serial", 500, 1},
			{"500x2/parallel", 500, 2},
			{"1000x1", 1000, 1},
		} {
			b.Run(api.name+"/"+bc.name, func(b *testing.B) {
				sink, err := New(&Config{URL: srv.URL, MaxBatch: bc.maxBatch, MaxParallel: bc.parallel, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				defer sink.Close()
				b.ReportAllocs()
				for b.Loop() {
					if err := sink.Send(b.Context(), events); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*len(events))/b.Elapsed().Seconds(), "events/s")
			})
		}
		srv.Close()
	}
}

const roundTripTopics = `DefaultCategory: billing
Topics:
  - Action: Created
    Entity: Invoice
    Description: A new invoice was issued.
    Schema:
      type: object
      required: [id, amount_cents, currency]
      properties:
        id: {type: string}
        amount_cents: {type: integer, minimum: 0}
        currency: {type: string}
`

// newEventsAPI starts the local events API checking events against the
// topic definitions in yaml, on 127.0.0.1 until the test ends.
func newEventsAPI(t *testing.T, yaml string) (*sinkserver.Server, string) {
	t.Helper()
	reg, err := topics.Parse("topics.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	api, err := sinkserver.New(&sinkserver.Config{Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { _ = api.Close() })
	return api, srv.URL
}

// TestHTTPSinkRoundTrip sends through HTTPSink to the local events API in
// both formats: a poison event fails alone and permanently, everything else
// arrives once with its envelope intact, and sending it all again is
// harmless.
func TestHTTPSinkRoundTrip(t *testing.T) {
	t.Parallel()
	for _, format := range []Format{FormatCloudEvents, FormatBriteEvents} {
		t.Run(string(format), func(t *testing.T) {
			t.Parallel()
			api, url := newEventsAPI(t, roundTripTopics)
			sink := newTestHTTPSink(t, Config{URL: url, Format: format, MaxBatch: 50})

			var msgs []*outbox.Event
			for i := range 300 {
				msgs = append(msgs, sinkMessage(i+1, fmt.Sprint("inv-", i%7), fmt.Sprint("job-", i%3)))
			}
			poison := msgs[100]
			poison.Data = []byte(`{"id":"inv-2","amount_cents":-1,"currency":"EUR"}`)

			err := send(sink, msgs...)
			var be *relay.BatchError
			if !errors.As(err, &be) || !relay.IsPermanent(be.Failed[poison.ID.String()]) {
				t.Fatalf("Publish = %v, want the poison event failed permanently", err)
			}
			// Later events of the poison's key are held back, nothing else fails.
			for id, e := range be.Failed {
				if id != poison.ID.String() && (relay.IsPermanent(e) || !strings.Contains(e.Error(), "held back")) {
					t.Errorf("%s failed with %v", id, e)
				}
			}

			// The relay sends the rest again (here: everything but the poison).
			rest := slices.DeleteFunc(slices.Clone(msgs), func(m *outbox.Event) bool { return m == poison })
			if err := send(sink, rest...); err != nil {
				t.Fatalf("second Publish: %v", err)
			}
			got := api.Events(0, 1000)
			if len(got) != len(rest) {
				t.Fatalf("%d events stored, want %d", len(got), len(rest))
			}
			byID := make(map[string]eventsapi.Event)
			for _, ev := range got {
				byID[ev.ID] = ev
			}
			for _, m := range rest {
				ev, ok := byID[m.ID.String()]
				switch {
				case !ok:
					t.Fatalf("event %s did not arrive", m.ID.String())
				case ev.Topic != "billing.InvoiceCreated" || ev.Key != m.Key ||
					ev.JobID != m.JobID || ev.ActorID != "user-4711" || ev.ActorType != "user":
					t.Fatalf("event %s arrived as %+v", m.ID.String(), ev)
				}
				var want, have any
				_ = json.Unmarshal(m.Data, &want)
				_ = json.Unmarshal(ev.Data, &have)
				if fmt.Sprint(want) != fmt.Sprint(have) {
					t.Fatalf("event %s data %s, want %s", m.ID.String(), ev.Data, m.Data)
				}
			}
			// Per key, events arrived in publish order.
			lastOfKey := make(map[string]string)
			for _, ev := range got {
				if prev, ok := lastOfKey[ev.Key]; ok && prev > ev.ID {
					t.Errorf("key %s: %s arrived after %s", ev.Key, ev.ID, prev)
				}
				lastOfKey[ev.Key] = ev.ID
			}
			st := api.Stats()
			if st.Accepted != int64(len(rest)) || st.Rejected == 0 {
				t.Errorf("stats %+v", st)
			}

			// An outage, then recovery: nothing is lost or doubled.
			api.FailNext(1, http.StatusServiceUnavailable, time.Second)
			more := []*outbox.Event{sinkMessage(1001, "inv-x", "job-9"), sinkMessage(1002, "inv-y", "job-9")}
			if d, ok := relay.RetryAfterOf(send(sink, more...)); !ok || d != time.Second {
				t.Errorf("during the outage: RetryAfterOf = %s, %v", d, ok)
			}
			if err := send(sink, more...); err != nil {
				t.Errorf("after the outage: %v", err)
			}
			if n := len(api.Events(0, 1000)); n != len(rest)+2 {
				t.Errorf("%d events stored, want %d", n, len(rest)+2)
			}
		})
	}
}

// TestHTTPSinkRoundTripRecordFailures checks the bc-events partial failure
// path against the local API: the failed records, and only those, come back
// as retryable and arrive when sent again.
func TestHTTPSinkRoundTripRecordFailures(t *testing.T) {
	t.Parallel()
	api, url := newEventsAPI(t, roundTripTopics)
	sink := newTestHTTPSink(t, Config{URL: url, Format: FormatBriteEvents})
	msgs := []*outbox.Event{sinkMessage(1, "a", "j"), sinkMessage(2, "b", "j"), sinkMessage(3, "c", "j")}
	api.FailNextRecords(2, wire.BriteErrThroughputExceeded)
	err := send(sink, msgs...)
	var be *relay.BatchError
	if !errors.As(err, &be) || len(be.Failed) != 2 || be.Failed[msgs[2].ID.String()] != nil || relay.IsPermanent(be.Failed[msgs[0].ID.String()]) {
		t.Fatalf("Publish = %v, want the first two failed, retryable", err)
	}
	if err := send(sink, msgs[0], msgs[1]); err != nil {
		t.Fatalf("resend: %v", err)
	}
	if n := len(api.Events(0, 10)); n != 3 {
		t.Errorf("%d events stored, want 3", n)
	}
}

// TestRelayToHTTPSink runs the whole path from committed rows through a
// relay and HTTPSink to the local events API, in both formats, while the
// API fails its first requests: every event arrives once, each key in order.
func TestRelayToHTTPSink(t *testing.T) {
	t.Parallel()
	const rowTopics = `DefaultCategory: billing
Topics:
  - Action: Created
    Entity: Invoice
    Description: Test rows as insertEvents writes them.
    Key: /key
    Schema:
      type: object
      required: [key, n]
      properties:
        key: {type: string}
        n: {type: integer}
`
	for _, format := range []Format{FormatCloudEvents, FormatBriteEvents} {
		t.Run(string(format), func(t *testing.T) {
			t.Parallel()
			api, url := newEventsAPI(t, rowTopics)
			api.FailNext(3, http.StatusServiceUnavailable, 0)

			pool := newTestDB(t)
			const n = 400
			insertEvents(t, pool, sameJob, cycleKeys(n, 20))
			sink := newTestHTTPSink(t, Config{URL: url, Format: format})
			startRelay(t, pool, sink, &relay.Config{BatchSize: 150, RetryBase: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond})

			waitFor(t, 60*time.Second, "every event to reach the events API", func() bool {
				return api.Stats().Accepted >= n
			})
			var got []delivered
			for _, ev := range api.Events(0, 2*n) {
				var data struct {
					N int `json:"n"`
				}
				if err := json.Unmarshal(ev.Data, &data); err != nil {
					t.Fatal(err)
				}
				got = append(got, delivered{ID: ev.ID, Key: ev.Key, N: data.N})
			}
			if len(got) != n {
				t.Errorf("%d events stored, want %d", len(got), n)
			}
			checkOrder(t, got)
			if st := api.Stats(); st.InjectedFaults != 3 || st.Rejected != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// TestHTTPSinkGoesOnAfterOneFailure: a request the API answers 500 fails
// its events alone, and the lane goes on; a second failed request in a row
// stops it, the rest reported not sent.
func TestHTTPSinkGoesOnAfterOneFailure(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	n := 0
	failOn := map[int]bool{2: true, 5: true, 6: true}
	srv := newHTTPSinkServer(t, false, func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		n++
		fail := failOn[n]
		mu.Unlock()
		if fail {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	sink := newTestHTTPSink(t, Config{URL: srv.URL, MaxBatch: 1})
	var msgs []*outbox.Event
	for i := range 8 {
		msgs = append(msgs, sinkMessage(i+1, fmt.Sprint("inv-", i), "j"))
	}
	err := send(sink, msgs...)
	var be *relay.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("Publish = %v, want a *relay.BatchError", err)
	}
	for i, m := range msgs {
		e, failed := be.Failed[m.ID.String()]
		switch req := i + 1; {
		case failOn[req] && (e == nil || relay.IsPermanent(e) || errors.Is(e, relay.ErrNotSent)):
			t.Errorf("request %d, answered 500: %v, want retryable", req, e)
		case req > 6 && !errors.Is(e, relay.ErrNotSent):
			t.Errorf("request %d, after two failed in a row: %v, want relay.ErrNotSent", req, e)
		case req <= 6 && !failOn[req] && failed:
			t.Errorf("request %d: %v, want delivered", req, e)
		}
	}
	if got := len(srv.recorded()); got != 6 {
		t.Errorf("%d requests, want 6: on after the 2nd failed, stopped after the 5th and 6th", got)
	}
}

// TestConformance runs the sink conformance suite against the local events
// API, in both wire formats.
func TestConformance(t *testing.T) {
	t.Parallel()
	runConformance(t, func(t *testing.T) (string, string, func() []relaytest.Received) {
		api, url := newEventsAPI(t, conformanceTopics)
		return url, "", func() []relaytest.Received {
			var got []relaytest.Received
			for _, ev := range api.Events(0, 10_000) {
				got = append(got, relaytest.Received{ID: ev.ID, Key: ev.Key, Data: ev.Data})
			}
			return got
		}
	})
}

// runConformance runs the sink conformance suite in both wire formats
// against the events API that newAPI starts: its URL, the bearer token it
// takes ("" for none), and what it received so far.
func runConformance(t *testing.T, newAPI func(t *testing.T) (url, token string, received func() []relaytest.Received)) {
	t.Helper()
	for _, format := range []Format{FormatCloudEvents, FormatBriteEvents} {
		t.Run(string(format), func(t *testing.T) {
			t.Parallel()
			relaytest.Run(t, relaytest.Suite{
				Pool: func(t *testing.T) *pgxpool.Pool { return newTestDB(t) },
				NewSink: func(t *testing.T) (relay.Sink, func() []relaytest.Received) {
					url, token, received := newAPI(t)
					return newTestHTTPSink(t, Config{URL: url, Format: format, BearerToken: token}), received
				},
			})
		})
	}
}

// conformanceTopics are the topics of relaytest's events.
const conformanceTopics = `DefaultCategory: billing
Topics:
  - Action: Created
    Entity: Invoice
    Description: An invoice was issued.
    Schema: {type: object}
  - Action: Paid
    Entity: Invoice
    Description: An invoice was paid.
    Schema: {type: object}
`

// TestHTTPSinkBriteContextHeaders: the bc-events body has no field for the
// trace context or the tenant, so they travel in headers, traceparent as W3C
// names it; events of one job with different tenants or traces go in
// requests of their own, so none is sent under another's headers.
func TestHTTPSinkBriteContextHeaders(t *testing.T) {
	t.Parallel()
	srv := newHTTPSinkServer(t, false, status(http.StatusCreated, `{"failedRecords":0,"records":[]}`))
	sink := newTestHTTPSink(t, Config{URL: srv.URL, Format: FormatBriteEvents})
	const tp1 = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const tp2 = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	evs := []*outbox.Event{
		sinkMessage(1, "inv-1", "job-1"), sinkMessage(2, "inv-2", "job-1"),
		sinkMessage(3, "inv-3", "job-1"), sinkMessage(4, "inv-4", "job-1"),
	}
	evs[0].Traceparent, evs[0].Tenant = tp1, "acme"
	evs[1].Traceparent, evs[1].Tenant = tp1, "acme"
	evs[2].Traceparent, evs[2].Tenant = tp1, "globex"
	evs[3].Traceparent = tp2
	if err := send(sink, evs...); err != nil {
		t.Fatalf("Send: %v", err)
	}
	type hdr struct{ path, traceparent, tenant string }
	var got []hdr
	for _, r := range srv.recorded() {
		got = append(got, hdr{r.Path, r.Header.Get("Traceparent"), r.Header.Get(wire.HeaderTenant)})
		if bytes.Contains(r.Body, []byte("acme")) || bytes.Contains(r.Body, []byte(tp1)) {
			t.Errorf("the body carries the tenant or trace: %s", r.Body)
		}
	}
	want := []hdr{{"/events/bulk/", tp1, "acme"}, {"/events", tp1, "globex"}, {"/events", tp2, ""}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("requests %v, want %v", got, want)
	}
}

// TestHTTPSinkDedupeKeys: an event's dedupe key reaches the API in both
// formats, outside the bc-events body, which takes no other field.
func TestHTTPSinkDedupeKeys(t *testing.T) {
	t.Parallel()
	for _, format := range []Format{FormatBriteEvents, FormatCloudEvents} {
		t.Run(string(format), func(t *testing.T) {
			t.Parallel()
			srv := newHTTPSinkServer(t, false, status(http.StatusCreated, `{"failedRecords":0,"records":[]}`))
			sink := newTestHTTPSink(t, Config{URL: srv.URL, Format: format})
			evs := []*outbox.Event{sinkMessage(1, "inv-1", "job-1"), sinkMessage(2, "inv-2", "job-1"), sinkMessage(3, "inv-3", "job-1")}
			evs[0].DedupeKey, evs[2].DedupeKey = "pay inv-1, once", "pay=inv-3"
			if err := send(sink, evs...); err != nil {
				t.Fatalf("Send: %v", err)
			}
			r := srv.recorded()[0]
			got := map[string]string{}
			if format == FormatBriteEvents {
				if bytes.Contains(r.Body, []byte("pay")) {
					t.Errorf("the body carries a dedupe key: %s", r.Body)
				}
				var err error
				if got, err = wire.DedupeKeysFromHeader(r.Header); err != nil {
					t.Fatal(err)
				}
			} else {
				ces, err := wire.DecodeCloudEventBatch(r.Body)
				if err != nil {
					t.Fatal(err)
				}
				for _, ce := range ces {
					if ce.DedupeKey != "" {
						got[ce.ID] = ce.DedupeKey
					}
				}
			}
			want := map[string]string{evs[0].ID.String(): evs[0].DedupeKey, evs[2].ID.String(): evs[2].DedupeKey}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("dedupe keys %v, want %v", got, want)
			}
		})
	}
}
