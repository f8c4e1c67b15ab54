package mwtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/middleware/internal/reqsession"
	"github.com/txoutbox/txoutbox/outbox"
)

// Run runs the whole suite against the service build returns.
func Run(t *testing.T, build Builder) {
	t.Run("Concurrent", func(t *testing.T) { t.Parallel(); testConcurrent(t, build) })
	t.Run("Failures", func(t *testing.T) { t.Parallel(); testFailures(t, build) })
	t.Run("Identity", func(t *testing.T) { t.Parallel(); testIdentity(t, build) })
	t.Run("RefusedIDs", func(t *testing.T) { t.Parallel(); testRefused(t, build) })
	t.Run("JobIDHeader", func(t *testing.T) { t.Parallel(); testJobIDHeader(t, build) })
	t.Run("Unflushed", func(t *testing.T) { t.Parallel(); testUnflushed(t, build, false) })
	t.Run("UnflushedStrict", func(t *testing.T) { t.Parallel(); testUnflushed(t, build, true) })
	t.Run("InvalidData", func(t *testing.T) { t.Parallel(); testInvalidData(t, build) })
	t.Run("OnCommit", func(t *testing.T) { t.Parallel(); testOnCommit(t, build) })
}

// Row is the part of an outbox row the suite checks.
type Row struct {
	Topic, ActorID, ActorType, JobID, Key, Tenant, Traceparent string
}

// Rows returns the outbox rows, in insert order.
func (env *Env) Rows(t testing.TB) []Row {
	t.Helper()
	rows, _ := env.Pool.Query(t.Context(), `SELECT topic, actor_id, actor_type, job_id, key,
		coalesce(tenant, ''), coalesce(traceparent, '') FROM txoutbox_events ORDER BY seq`)
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Row])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (env *Env) invoiceExists(t testing.TB, id string) bool {
	t.Helper()
	var ok bool
	if err := env.Pool.QueryRow(t.Context(), `SELECT EXISTS (SELECT FROM invoices WHERE id = $1)`, id).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

type request struct {
	id, mode                           string
	userID, jobID, tenant, traceparent string
	jobHeader                          string // default X-Job-ID
}

type response struct {
	status      int
	jobID       string
	contentType string
	body        string
}

func do(t testing.TB, srv *httptest.Server, r request) response {
	t.Helper()
	res, err := send(t.Context(), srv, r)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// send is do for other goroutines than the test's, which must not call
// t.Fatal.
func send(ctx context.Context, srv *httptest.Server, r request) (response, error) {
	url := srv.URL + "/invoices/" + r.id
	if r.mode != "" {
		url += "?mode=" + r.mode
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return response{}, err
	}
	jobHeader := cmpOr(r.jobHeader, outboxJobHeader)
	for k, v := range map[string]string{"X-User-ID": r.userID, jobHeader: r.jobID, TenantHeader: r.tenant, "traceparent": r.traceparent} {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: res.StatusCode, jobID: res.Header.Get(jobHeader), contentType: res.Header.Get("Content-Type"), body: string(body)}, nil
}

const outboxJobHeader = "X-Job-ID"

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func serve(t testing.TB, build Builder, env *Env, opts Options) *httptest.Server {
	srv := httptest.NewServer(build(env, opts))
	t.Cleanup(srv.Close)
	return srv
}

func traceparent(i int) string { return fmt.Sprintf("00-%032x-%016x-01", i+1, i+1) }

// testConcurrent sends 50 requests at once, some failing, and checks that
// each committed request has exactly its events, stamped with its identity.
func testConcurrent(t *testing.T, build Builder) {
	env := NewEnv(t)
	srv := serve(t, build, env, Options{TenantHeader: TenantHeader})
	const n = 50
	reqs := make([]request, n)
	resps := make([]response, n)
	for i := range reqs {
		r := request{
			id:          fmt.Sprintf("inv-%03d", i),
			userID:      fmt.Sprintf("user-%03d", i),
			tenant:      fmt.Sprintf("tenant-%d", i%3),
			traceparent: traceparent(i),
		}
		switch i % 10 {
		case 3:
			r.mode = ModeError
		case 7:
			r.mode = ModePanic
		case 5:
			r.userID = "" // a service session
		}
		if i%2 == 0 {
			r.jobID = fmt.Sprintf("job-%03d", i)
		}
		reqs[i] = r
	}
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Go(func() {
			var err error
			if resps[i], err = send(t.Context(), srv, reqs[i]); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	rows := env.Rows(t)
	byJob := map[string][]Row{}
	for _, r := range rows {
		byJob[r.JobID] = append(byJob[r.JobID], r)
	}
	seenJobs := map[string]bool{}
	committed := 0
	for i, r := range reqs {
		res := resps[i]
		if r.jobID != "" && res.jobID != r.jobID {
			t.Errorf("%s: job id header = %q, want the request's %q", r.id, res.jobID, r.jobID)
		}
		if r.jobID == "" {
			if u, err := uuid.Parse(res.jobID); err != nil || u.Version() != 7 {
				t.Errorf("%s: generated job id %q is not a UUIDv7 (%v)", r.id, res.jobID, err)
			}
		}
		if seenJobs[res.jobID] {
			t.Errorf("%s: job id %q used by two requests", r.id, res.jobID)
		}
		seenJobs[res.jobID] = true
		got := byJob[res.jobID]
		if r.mode != ModeOK {
			if res.status != http.StatusInternalServerError || len(got) != 0 || env.invoiceExists(t, r.id) {
				t.Errorf("%s (%s): status %d, %d events, invoice kept=%v; want 500, none, no invoice", r.id, r.mode, res.status, len(got), env.invoiceExists(t, r.id))
			}
			if n := env.Session(t, r.id).Len(); n != 0 {
				t.Errorf("%s (%s): session still holds %d events after the request", r.id, r.mode, n)
			}
			continue
		}
		committed++
		if res.status != http.StatusCreated {
			t.Errorf("%s: status %d, want 201; body %s", r.id, res.status, res.body)
		}
		actorID, actorType := r.userID, outbox.ActorUser
		if r.userID == "" {
			actorID, actorType = Source, outbox.ActorService
		}
		want := []Row{
			{"billing.InvoiceCreated", actorID, actorType, res.jobID, r.id, r.tenant, r.traceparent},
			{"billing.PaymentReceived", actorID, actorType, res.jobID, r.id, r.tenant, r.traceparent},
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: events\n got  %+v\n want %+v", r.id, got, want)
		}
	}
	if len(rows) != 2*committed {
		t.Errorf("%d events in the outbox, want %d (2 for each of %d committed requests)", len(rows), 2*committed, committed)
	}
}

// testFailures checks that a handler that returns an error or panics after
// flushing leaves no events and no session behind.
func testFailures(t *testing.T, build Builder) {
	env := NewEnv(t)
	logs := &LogRecorder{}
	var hooked atomic.Int64
	srv := serve(t, build, env, Options{Strict: true, Logger: logs.Logger(),
		UnflushedFunc: func(context.Context, string, int) { hooked.Add(1) }})
	for _, mode := range []string{ModeError, ModePanic} {
		res := do(t, srv, request{id: "inv-" + mode, mode: mode, userID: "user-1"})
		if res.status != http.StatusInternalServerError {
			t.Errorf("%s: status %d, want 500", mode, res.status)
		}
		if n := env.Session(t, "inv-"+mode).Len(); n != 0 {
			t.Errorf("%s: session holds %d events after the request, want 0", mode, n)
		}
	}
	if rows := env.Rows(t); len(rows) != 0 {
		t.Errorf("failed requests left events: %+v", rows)
	}
	if w := logs.Warnings(); len(w) != 0 || hooked.Load() != 0 {
		t.Errorf("failed requests reported as unflushed: logs %v, hook called %d times", w, hooked.Load())
	}
}

// testOnCommit checks that the client's OnCommit hooks, where an embedded
// relay is woken, run once for a request whose handler committed what it
// flushed, with its events visible to another connection by then, and
// never for one that failed or flushed nothing.
func testOnCommit(t *testing.T, build Builder) {
	env := NewEnv(t)
	var mu sync.Mutex
	var seen []int // events another connection saw as each hook ran
	defer env.Client.OnCommit(func() {
		n := len(env.Rows(t))
		mu.Lock()
		seen = append(seen, n)
		mu.Unlock()
	})()
	srv := serve(t, build, env, Options{})
	for _, tc := range []struct {
		mode  string
		hooks int
	}{
		{ModeOK, 1},
		{ModeError, 0},
		{ModePanic, 0},
		{ModeUnflushed, 0},
		{ModeUnflushed422, 0},
		{ModeInvalid, 0},
		{ModeLate, 1},
	} {
		mu.Lock()
		seen = nil
		mu.Unlock()
		id := "inv-" + cmpOr(tc.mode, "ok")
		do(t, srv, request{id: id, mode: tc.mode, userID: "user-1"})
		rows := len(env.Rows(t))
		mu.Lock()
		got := slices.Clone(seen)
		mu.Unlock()
		if len(got) != tc.hooks || tc.hooks == 1 && got[0] != rows {
			t.Errorf("%s: hooks saw %v events; want %d hook(s), seeing all %d committed", id, got, tc.hooks, rows)
		}
	}
}

// testIdentity checks the defaults: a service session without a user, an
// invalid traceparent ignored, a generated job id echoed.
func testIdentity(t *testing.T, build Builder) {
	env := NewEnv(t)
	logs := &LogRecorder{}
	srv := serve(t, build, env, Options{Logger: logs.Logger()})
	res := do(t, srv, request{id: "inv-1", tenant: "tenant-ignored", traceparent: "00-not-a-trace"})
	if res.status != http.StatusCreated {
		t.Fatalf("status %d: %s", res.status, res.body)
	}
	if !strings.Contains(logs.Text(), "invalid traceparent") {
		t.Errorf("the ignored traceparent was not logged: %s", logs.Text())
	}
	for _, r := range env.Rows(t) {
		want := Row{r.Topic, Source, outbox.ActorService, res.jobID, "inv-1", "", ""}
		if r != want || res.jobID == "" {
			t.Errorf("row %+v, want %+v", r, want)
		}
	}
}

// testRefused checks that ids the middleware cannot accept are answered
// with 400 and a message naming them, before the handler runs.
func testRefused(t *testing.T, build Builder) {
	env := NewEnv(t)
	srv := serve(t, build, env, Options{TenantHeader: TenantHeader})
	long := strings.Repeat("x", 257)
	for _, tc := range []struct {
		name string
		req  request
		want string
	}{
		{"long job id", request{jobID: long}, "job id from X-Job-ID header is 257 bytes; at most 256"},
		{"long user id", request{userID: long}, "user id from X-User-ID header is 257 bytes"},
		{"short user id", request{userID: "ada"}, "user id from X-User-ID header"},
		{"long tenant", request{tenant: long}, "tenant from Config.TenantFunc is 257 bytes"},
		{"control character", request{jobID: "job\t1"}, "job id from X-Job-ID header has control characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.id = "inv-refused"
			res := do(t, srv, tc.req)
			if res.status != http.StatusBadRequest || !strings.Contains(res.body, tc.want) {
				t.Errorf("status %d, body %q; want 400 containing %q", res.status, res.body, tc.want)
			}
		})
	}
	// A traceparent longer than the limit is ignored, not refused.
	res := do(t, srv, request{id: "inv-long-trace", traceparent: traceparent(1) + "-" + long})
	if res.status != http.StatusCreated {
		t.Errorf("long traceparent: status %d, want 201", res.status)
	}
	for _, r := range env.Rows(t) {
		if r.Key != "inv-long-trace" || r.Traceparent != "" {
			t.Errorf("row %+v: want only inv-long-trace's events, without traceparent", r)
		}
	}
}

// testInvalidData checks that a handler whose Publish refused the data
// answers 422 through the package's helper, with a JSON body naming the
// topic and the failing place and nothing of the data or the error's text,
// and that a valid request still answers 201.
func testInvalidData(t *testing.T, build Builder) {
	env := NewEnv(t)
	srv := serve(t, build, env, Options{})
	if res := do(t, srv, request{id: "inv-valid", userID: "user-42"}); res.status != http.StatusCreated {
		t.Fatalf("valid request: status %d, body %s; want 201", res.status, res.body)
	}
	res := do(t, srv, request{id: "inv-invalid", userID: "user-42", mode: ModeInvalid})
	var body map[string]string
	if err := json.Unmarshal([]byte(res.body), &body); err != nil || res.status != http.StatusUnprocessableEntity || res.contentType != "application/json" {
		t.Fatalf("invalid data: status %d, %s body %q (%v); want 422 and JSON", res.status, res.contentType, res.body, err)
	}
	want := map[string]string{"message": reqsession.InvalidDataMessage, "topic": "billing.InvoiceCreated", "path": "/due_date"}
	if !maps.Equal(body, want) {
		t.Errorf("invalid data: body %s, want %v", res.body, want)
	}
	for _, secret := range []string{Secret, "Ada Lovelace", "got object", "invalid data for"} {
		if strings.Contains(res.body, secret) {
			t.Errorf("invalid data: body %s shows %q", res.body, secret)
		}
	}
	if env.invoiceExists(t, "inv-invalid") {
		t.Error("the refused request's invoice was committed")
	}
	for _, r := range env.Rows(t) {
		if r.Key != "inv-valid" {
			t.Errorf("row %+v: want only the valid request's events", r)
		}
	}
}

// testJobIDHeader checks a bc-events service's job id header.
func testJobIDHeader(t *testing.T, build Builder) {
	env := NewEnv(t)
	const header = "x-britecore-job-id"
	srv := serve(t, build, env, Options{JobIDHeader: header})
	res := do(t, srv, request{id: "inv-1", userID: "user-1", jobID: "job-from-britecore", jobHeader: header})
	if res.status != http.StatusCreated || res.jobID != "job-from-britecore" {
		t.Fatalf("status %d, %s = %q; want 201 and the request's job id", res.status, header, res.jobID)
	}
	rows := env.Rows(t)
	if len(rows) != 2 || rows[0].JobID != "job-from-britecore" || rows[1].JobID != "job-from-britecore" {
		t.Errorf("rows %+v: want 2 with job id job-from-britecore", rows)
	}
}

// testUnflushed checks the report of events published but never flushed:
// a warning per topic with the count and never the data, the hook, and in
// strict mode a 500 where the status can still change.
func testUnflushed(t *testing.T, build Builder, strict bool) {
	env := NewEnv(t)
	logs := &LogRecorder{}
	var mu sync.Mutex
	hooked := map[string]int{}
	srv := serve(t, build, env, Options{Strict: strict, Logger: logs.Logger(),
		UnflushedFunc: func(_ context.Context, topic string, n int) { mu.Lock(); hooked[topic] += n; mu.Unlock() }})
	both := map[string]int{"billing.InvoiceCreated": 1, "billing.PaymentReceived": 1}
	okStatus := func(s int) int {
		if strict {
			return http.StatusInternalServerError
		}
		return s
	}
	for _, tc := range []struct {
		mode       string
		wantStatus int
		wantReport map[string]int
		wantEvents int
	}{
		{ModeOK, http.StatusCreated, map[string]int{}, 2},
		{ModeUnflushed, okStatus(http.StatusCreated), both, 0},
		{ModeUnflushedNoWrite, okStatus(http.StatusOK), both, 0},
		{ModeUnflushed422, http.StatusUnprocessableEntity, map[string]int{}, 0},
		// Published after the answer went out: reported, but too late to change it.
		{ModeLate, http.StatusCreated, map[string]int{"billing.InvoicePaid": 1}, 2},
	} {
		t.Run(cmpOr(tc.mode, "ok"), func(t *testing.T) {
			logs.Reset()
			mu.Lock()
			clear(hooked)
			mu.Unlock()
			id := "inv-" + cmpOr(tc.mode, "ok")
			res := do(t, srv, request{id: id, mode: tc.mode, userID: "user-1"})
			if res.status != tc.wantStatus {
				t.Errorf("status %d, want %d; body %s", res.status, tc.wantStatus, res.body)
			}
			if tc.wantStatus == http.StatusInternalServerError && !strings.Contains(res.body, "2 events published but never flushed") {
				t.Errorf("body %q does not say what went wrong", res.body)
			}
			mu.Lock()
			gotHook := maps.Clone(hooked)
			mu.Unlock()
			if fmt.Sprint(gotHook) != fmt.Sprint(tc.wantReport) {
				t.Errorf("UnflushedFunc got %v, want %v", gotHook, tc.wantReport)
			}
			gotLog := map[string]int{}
			for _, w := range logs.Warnings() {
				gotLog[fmt.Sprint(w.Attrs["topic"])] += int(w.Attrs["count"].(int64))
				if w.Attrs["job_id"] != res.jobID {
					t.Errorf("warning job_id %v, want %s", w.Attrs["job_id"], res.jobID)
				}
			}
			if fmt.Sprint(gotLog) != fmt.Sprint(tc.wantReport) {
				t.Errorf("warnings per topic %v, want %v", gotLog, tc.wantReport)
			}
			if strings.Contains(logs.Text(), "Ada Lovelace") {
				t.Errorf("the log carries event data: %s", logs.Text())
			}
			n := 0
			for _, r := range env.Rows(t) {
				if r.Key == id {
					n++
				}
			}
			if n != tc.wantEvents {
				t.Errorf("%d events of %s in the outbox, want %d", n, id, tc.wantEvents)
			}
			if l := env.Session(t, id).Len(); l != 0 {
				t.Errorf("session holds %d events after the request", l)
			}
		})
	}
}

// LogRecord is one record a LogRecorder kept.
type LogRecord struct {
	Level slog.Level
	Msg   string
	Attrs map[string]any
}

// LogRecorder is a slog handler that keeps what it is given.
type LogRecorder struct {
	mu   sync.Mutex
	recs []LogRecord
}

// Logger returns a logger writing to r, at every level.
func (r *LogRecorder) Logger() *slog.Logger { return slog.New(r) }

func (r *LogRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *LogRecorder) Handle(_ context.Context, rec slog.Record) error {
	attrs := map[string]any{}
	rec.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.Any(); return true })
	r.mu.Lock()
	r.recs = append(r.recs, LogRecord{rec.Level, rec.Message, attrs})
	r.mu.Unlock()
	return nil
}

func (r *LogRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *LogRecorder) WithGroup(string) slog.Handler      { return r }

// Warnings returns the records at warning level and above.
func (r *LogRecorder) Warnings() []LogRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []LogRecord
	for _, rec := range r.recs {
		if rec.Level >= slog.LevelWarn {
			out = append(out, rec)
		}
	}
	return out
}

// Text returns every record as text, to search.
func (r *LogRecorder) Text() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprint(r.recs)
}

// Reset forgets the records kept so far.
func (r *LogRecorder) Reset() {
	r.mu.Lock()
	r.recs = nil
	r.mu.Unlock()
}
