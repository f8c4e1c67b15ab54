package eventsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/internal/pgtest"
)

// jobStoreKinds open n JobStores sharing one fresh storage: handles on one
// MemoryStore, or PostgresStores on separate pools of one database, as
// separate processes would have.
var jobStoreKinds = []struct {
	name string
	open func(t *testing.T, n int, clock *testClock) []Store
}{
	{"memory", func(t *testing.T, n int, clock *testClock) []Store {
		st := newTestMemoryStore(t, &MemoryStoreConfig{NowFunc: clock.Now})
		return slices.Repeat([]Store{st}, n)
	}},
	{"postgres", func(t *testing.T, n int, clock *testClock) []Store {
		dbURL := pgtest.NewDB(t)
		stores := make([]Store, n)
		for i := range stores {
			pool, err := pgxpool.New(context.Background(), dbURL)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			cfg := &PostgresStoreConfig{NowFunc: clock.Now}
			if i == 0 {
				if err := MigratePostgres(t.Context(), pool, cfg); err != nil {
					t.Fatal(err)
				}
			}
			stores[i] = newPgStore(t, pool, cfg)
		}
		return stores
	}},
}

func forEachJobStore(t *testing.T, n int, test func(t *testing.T, stores []Store, clock *testClock)) {
	t.Helper()
	for _, k := range jobStoreKinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			clock := newTestClock()
			test(t, k.open(t, n, clock), clock)
		})
	}
}

// sourceEvent is an event of topic orders.OrderApproved with data.
func sourceEvent(tenant, key, data string) Event {
	ev := testEvent("orders", "Order", "Approved", key)
	ev.Tenant, ev.Data = tenant, json.RawMessage(data)
	return ev
}

// newJob is the job template the server would make.
func newJob(sender string) Event {
	return Event{ID: fmt.Sprintf("job-%s-%d", sender, jobSeq.next()), Topic: "orders.ShipmentRequested",
		Category: "orders", Entity: "Shipment", Action: "Requested", Sender: sender, Format: "api"}
}

var jobSeq counter

type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) next() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n
}

var shipReq = EnrollRequest{SourceTopic: "orders.OrderApproved", TargetTopic: "orders.ShipmentRequested"}

func TestEnrollExactlyOnce(t *testing.T) {
	t.Parallel()
	const workers, sources = 8, 1000
	forEachJobStore(t, workers, func(t *testing.T, stores []Store, _ *testClock) {
		evs := make([]Event, 0, sources+sources/10)
		want := map[string]bool{}
		for i := range sources {
			ev := sourceEvent("", fmt.Sprint("o-", i), `{"n":1}`)
			want[ev.ID] = true
			evs = append(evs, ev)
			if i%10 == 0 {
				evs = append(evs, testEvent("orders", "Order", "Created", "other"))
			}
		}
		for chunk := range slices.Chunk(evs, 250) {
			appendEvents(t, stores[0], chunk...)
		}
		var mu sync.Mutex
		got := map[string]int{}
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Go(func() {
				js := stores[w].(JobStore)
				for n := 0; n <= sources; n++ { // bounded: never more than every source
					req := shipReq
					res, ok, err := js.Enroll(t.Context(), &req, newJob(fmt.Sprint("w", w)))
					if err != nil {
						errs <- err
						return
					}
					if !ok {
						return
					}
					if res.Job.DependsOn != res.Source.ID || res.Job.Status != JobPending || res.Job.Key != res.Source.Key {
						errs <- fmt.Errorf("job %+v for source %s", res.Job, res.Source.ID)
						return
					}
					mu.Lock()
					got[res.Source.ID]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if len(got) != sources {
			t.Errorf("%d sources enrolled, want %d", len(got), sources)
		}
		for id, n := range got {
			if n != 1 || !want[id] {
				t.Errorf("source %s enrolled %d times (a source: %v)", id, n, want[id])
			}
		}
		jobs, err := stores[0].Read(t.Context(), &ReadRequest{Limit: 10_000, Match: MustCompile(Filter{Include: []Selector{{Topic: []string{shipReq.TargetTopic}}}})})
		if err != nil || len(jobs) != sources {
			t.Errorf("%d jobs stored, %v; want %d", len(jobs), err, sources)
		}
	})
}

func TestEnrollConditions(t *testing.T) {
	t.Parallel()
	forEachJobStore(t, 1, func(t *testing.T, stores []Store, _ *testClock) {
		st := stores[0]
		js := st.(JobStore)
		evs := []Event{
			sourceEvent("acme", "o-1", `{"newValue":"Draft"}`),
			sourceEvent("acme", "o-2", `{"newValue":"Approved","lines":[{"sku":"a/b"}],"n":1}`),
			sourceEvent("globex", "o-3", `{"newValue":"Approved","n":1.0}`),
			sourceEvent("acme", "o-4", `{"newValue":"Approved","n":2}`),
			sourceEvent("acme", "o-5", `not-an-object-but-a-string`),
		}
		evs[4].Data = json.RawMessage(`"Approved"`)
		appendEvents(t, st, evs...)
		enroll := func(tenant string, conds ...Condition) string {
			t.Helper()
			req := shipReq
			req.Tenant, req.Conditions = tenant, conds
			res, ok, err := js.Enroll(t.Context(), &req, newJob("w"))
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				return ""
			}
			return res.Source.Key
		}
		approved := Condition{Key: "payload/newValue", Value: json.RawMessage(`"Approved"`)}
		for _, c := range []struct {
			tenant string
			conds  []Condition
			want   string
		}{
			{"acme", []Condition{approved}, "o-2"},                                                   // oldest approved of acme
			{"acme", []Condition{{Key: "data/n", Value: json.RawMessage(`2`)}}, "o-4"},               // data is payload
			{"", []Condition{approved, {Key: "payload/n", Value: json.RawMessage(` 1 `)}}, "o-3"},    // 1 = 1.0; o-2 is taken
			{"acme", []Condition{{Key: "payload/lines/0/sku", Value: json.RawMessage(`"a/b"`)}}, ""}, // o-2 is taken
			{"acme", []Condition{{Key: "payload", Value: json.RawMessage(`"Approved"`)}}, "o-5"},     // the whole data
			{"acme", []Condition{{Key: "payload/missing", Value: json.RawMessage(`null`)}}, ""},      // leads nowhere
			{"globex", nil, ""}, // o-3 is taken
			{"acme", []Condition{{Key: "payload/newValue", Value: json.RawMessage(`"Draft"`)}}, "o-1"}, //
			{"acme", nil, ""}, // all taken
		} {
			if got := enroll(c.tenant, c.conds...); got != c.want {
				t.Errorf("enroll %s %+v: got %q, want %q", c.tenant, c.conds, got, c.want)
			}
		}
		for _, bad := range []Condition{
			{Key: "newValue", Value: json.RawMessage(`"x"`)},
			{Key: "payload/x", Value: json.RawMessage(`{`)},
			{Key: "payload/x"},
		} {
			req := shipReq
			req.Conditions = []Condition{bad}
			if _, _, err := js.Enroll(t.Context(), &req, newJob("w")); !errors.Is(err, ErrInvalidJobRequest) {
				t.Errorf("condition %+v: %v, want ErrInvalidJobRequest", bad, err)
			}
		}
	})
}

func TestJobLifecycle(t *testing.T) {
	t.Parallel()
	forEachJobStore(t, 1, func(t *testing.T, stores []Store, clock *testClock) {
		st := stores[0]
		js := st.(JobStore)
		appendEvents(t, st, sourceEvent("acme", "o-1", `{}`))
		req := shipReq
		res, ok, err := js.Enroll(t.Context(), &req, newJob("w"))
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		job := res.Job
		update := func(u JobUpdate) (Event, error) {
			t.Helper()
			clock.Add(time.Second)
			return js.UpdateJob(t.Context(), "", job.ID, u, 2)
		}
		desc := "packing"
		ev, err := update(JobUpdate{Status: JobInProgress, Description: &desc})
		if err != nil {
			t.Fatal(err)
		}
		if ev.Position <= job.Position || ev.Status != JobInProgress || ev.Description != desc || !ev.UpdatedAt.Equal(clock.Now()) {
			t.Errorf("after update: %+v; want a new position after %d, in_progress, %q, updated now", ev, job.Position, desc)
		}
		// The job moved: the store holds it once, at its new position.
		all, err := st.Read(t.Context(), &ReadRequest{})
		if err != nil || len(all) != 2 || all[1].ID != job.ID || all[1].Position != ev.Position {
			t.Errorf("store holds %+v, %v", all, err)
		}
		if got, err := st.Get(t.Context(), "acme", job.ID); err != nil || got.Position != ev.Position {
			t.Errorf("Get: %+v, %v", got, err)
		}
		if _, err := js.UpdateJob(t.Context(), "globex", job.ID, JobUpdate{Status: JobFinished}, 2); !errors.Is(err, ErrNotFound) {
			t.Errorf("another tenant's update: %v, want ErrNotFound", err)
		}
		if _, err := js.UpdateJob(t.Context(), "", all[0].ID, JobUpdate{Status: JobFinished}, 2); !errors.Is(err, ErrNotAJob) {
			t.Errorf("update of a source event: %v, want ErrNotAJob", err)
		}
		// Restarts count retries, up to the limit, then fail the job.
		for i, want := range []struct {
			to, status JobStatus
			retries    int
		}{
			{JobRestarted, JobRestarted, 1}, {JobInProgress, JobInProgress, 1}, {JobRestarted, JobRestarted, 2},
			{JobInProgress, JobInProgress, 2}, {JobRestarted, JobFailed, 2},
		} {
			ev, err = update(JobUpdate{Status: want.to})
			if err != nil || ev.Status != want.status || ev.Retries != want.retries {
				t.Fatalf("step %d → %s: %s with %d retries, %v; want %s with %d", i, want.to, ev.Status, ev.Retries, err, want.status, want.retries)
			}
		}
		_, err = update(JobUpdate{Status: JobRestarted})
		var ite *IllegalTransitionError
		if !errors.As(err, &ite) || !errors.Is(err, ErrIllegalTransition) || !strings.Contains(err.Error(), "2 retries") {
			t.Errorf("restart past the limit: %v", err)
		}
		_, err = update(JobUpdate{Status: JobFinished})
		if !errors.As(err, &ite) || ite.From != JobFailed || ite.To != JobFinished || !slices.Equal(ite.Allowed, []JobStatus{JobRestarted}) ||
			!strings.Contains(err.Error(), "failed → finished is not allowed; from failed a job moves to restarted") {
			t.Errorf("failed → finished: %v", err)
		}
	})
}

func TestRestartStale(t *testing.T) {
	t.Parallel()
	forEachJobStore(t, 2, func(t *testing.T, stores []Store, clock *testClock) {
		st := stores[0]
		appendEvents(t, st, sourceEvent("", "o-1", `{}`), sourceEvent("", "o-2", `{}`))
		enroll := func(js JobStore) EnrollResult {
			t.Helper()
			req := shipReq
			res, ok, err := js.Enroll(t.Context(), &req, newJob("w"))
			if err != nil || !ok {
				t.Fatal(ok, err)
			}
			return res
		}
		first := enroll(st.(JobStore))
		if _, err := st.(JobStore).UpdateJob(t.Context(), "", first.Job.ID, JobUpdate{Status: JobInProgress}, 1); err != nil {
			t.Fatal(err)
		}
		restart := func() int {
			t.Helper()
			clock.Add(time.Minute)
			n := 0
			for _, s := range stores { // two servers at once
				m, err := s.(JobStore).RestartStale(t.Context(), clock.Now().Add(-30*time.Second), 1)
				if err != nil {
					t.Fatal(err)
				}
				n += m
			}
			return n
		}
		if n := restart(); n != 1 {
			t.Fatalf("restarted %d, want 1", n)
		}
		got, _ := st.Get(t.Context(), "", first.Job.ID)
		if got.Status != JobRestarted || got.Retries != 1 {
			t.Fatalf("stale job: %s, %d retries; want restarted, 1", got.Status, got.Retries)
		}
		// A restarted job is enrolled again before new sources.
		again := enroll(stores[1].(JobStore))
		if again.Job.ID != first.Job.ID || again.Source.ID != first.Source.ID || again.Job.Status != JobPending || again.Job.Retries != 1 || again.Job.Position <= got.Position {
			t.Fatalf("enrolled again: %+v; want job %s pending with 1 retry at a new position", again.Job, first.Job.ID)
		}
		// Stale again, past the limit: failed.
		if n := restart(); n != 1 {
			t.Fatalf("restarted %d, want 1", n)
		}
		got, _ = st.Get(t.Context(), "", first.Job.ID)
		if got.Status != JobFailed || got.Retries != 1 {
			t.Fatalf("stale job past the limit: %s, %d retries; want failed, 1", got.Status, got.Retries)
		}
		if n := restart(); n != 0 {
			t.Errorf("restarted %d of no stale job", n)
		}
		if second := enroll(st.(JobStore)); second.Source.Key != "o-2" {
			t.Errorf("enrolled %s, want o-2", second.Source.Key)
		}
	})
}

// jobKeys are keys for the job routes: one per tenant, one for every
// tenant, one without the jobs right.
func jobKeys(t testing.TB) *Keys {
	t.Helper()
	keys, err := NewKeys(
		Key{Name: "worker", Rights: []Right{RightJobs, RightSubscribe, RightQuery}, SecretSHA256: HashSecret("worker-secret-0123456789")},
		Key{Name: "acme-worker", Tenant: "acme", Rights: []Right{RightJobs}, SecretSHA256: HashSecret("acme-worker-0123456789")},
		Key{Name: "globex-worker", Tenant: "globex", Rights: []Right{RightJobs}, SecretSHA256: HashSecret("globex-worker-0123456789")},
		Key{Name: "reader", Rights: []Right{RightSubscribe, RightQuery}, SecretSHA256: HashSecret("reader-secret-0123456789")},
	)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// call makes a request with secret and returns the status and body.
func call(t testing.TB, env *testEnv, method, path, secret, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, env.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := env.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestJobRoutes(t *testing.T) {
	t.Parallel()
	forEachSubscriptionStore(t, func(t *testing.T, st Store) {
		env := newTestEnv(t, &Config{Store: st, Keys: jobKeys(t)}, envOptions{})
		const worker, acme, globex, reader = "worker-secret-0123456789", "acme-worker-0123456789", "globex-worker-0123456789", "reader-secret-0123456789"
		appendEvents(t, st, sourceEvent("acme", "o-1", `{"newValue":"Approved"}`), sourceEvent("globex", "o-2", `{"newValue":"Draft"}`))
		stream := openStream(t, env, "/api/stream?topic=orders.Shipment*", bearer(worker))
		if _, err := stream.read(); err != nil { // the opening id
			t.Fatal(err)
		}

		enrollBody := `{"sourceTopic":"orders.OrderApproved","targetTopic":"orders.ShipmentRequested","description":"ship it",
			"conditions":[{"key":"payload/newValue","value":"Approved"}]}`
		if code, body := call(t, env, "POST", "/api/enroll", reader, enrollBody); code != http.StatusForbidden {
			t.Errorf("enroll without the jobs right: %d %s", code, body)
		}
		if code, body := call(t, env, "POST", "/api/enroll", globex, enrollBody); code != http.StatusNoContent {
			t.Errorf("globex enrolls acme's event: %d %s", code, body)
		}
		code, body := call(t, env, "POST", "/api/enroll", acme, enrollBody)
		var ans enrollAnswer
		if code != http.StatusCreated || json.Unmarshal([]byte(body), &ans) != nil {
			t.Fatalf("enroll: %d %s", code, body)
		}
		job := ans.Job
		if ans.SourceID != ans.Source.ID || ans.JobID != job.ID || job.DependsOn != ans.SourceID || job.Status != JobPending ||
			job.Tenant != "acme" || job.Key != "o-1" || job.Sender != "acme-worker" || job.Format != "api" || job.Description != "ship it" ||
			job.Category != "orders" || job.Entity != "Shipment" || job.Action != "Requested" {
			t.Errorf("enrolled %+v", ans)
		}
		if code, body := call(t, env, "POST", "/api/enroll", acme, enrollBody); code != http.StatusNoContent || body != "" {
			t.Errorf("nothing left: %d %q", code, body)
		}
		if got := stream.events(1)[0]; got.ID != job.ID || got.Position != job.Position {
			t.Errorf("stream got %+v, want the new job", got)
		}

		for _, c := range []struct {
			name, secret, body string
			code               int
			want               string
		}{
			{"another tenant", globex, `{"status":"in_progress"}`, http.StatusNotFound, "NotFound"},
			{"unknown status", acme, `{"status":"done"}`, http.StatusBadRequest, "want one of pending, in_progress"},
			{"unknown field", acme, `{"state":"finished"}`, http.StatusBadRequest, "unknown field"},
			{"empty", acme, `{}`, http.StatusBadRequest, "give a status"},
			{"illegal", acme, `{"status":"finished"}`, http.StatusConflict, "pending → finished is not allowed; from pending a job moves to in_progress, restarted, failed, aborted"},
		} {
			if code, body := call(t, env, "PATCH", "/api/events/"+job.ID, c.secret, c.body); code != c.code || !strings.Contains(body, c.want) {
				t.Errorf("%s: %d %s; want %d with %q", c.name, code, body, c.code, c.want)
			}
		}
		if code, body := call(t, env, "PATCH", "/api/events/"+ans.SourceID, acme, `{"status":"in_progress"}`); code != http.StatusConflict || !strings.Contains(body, "Conflict") {
			t.Errorf("PATCH a source event: %d %s", code, body)
		}

		code, body = call(t, env, "PATCH", "/api/events/"+job.ID, acme, `{"status":"in_progress","description":"packing"}`)
		var moved Event
		if code != http.StatusOK || json.Unmarshal([]byte(body), &moved) != nil || moved.Status != JobInProgress || moved.Description != "packing" || moved.UpdatedAt.IsZero() {
			t.Fatalf("PATCH: %d %s", code, body)
		}
		if got := stream.events(1)[0]; got.ID != job.ID || got.Position != moved.Position || got.Position <= job.Position || got.Status != JobInProgress {
			t.Errorf("stream got %+v, want the update at a new position", got)
		}

		// Progress: live, without an id, never stored.
		if code, body := call(t, env, "POST", "/api/events/"+job.ID+"/progress", globex, `{"done":1}`); code != http.StatusNotFound {
			t.Errorf("globex's progress on acme's job: %d %s", code, body)
		}
		if code, body := call(t, env, "POST", "/api/events/"+job.ID+"/progress", acme, `{"done": 1, "of": 3}`); code != http.StatusAccepted {
			t.Fatalf("progress: %d %s", code, body)
		}
		m, err := stream.next()
		var live Event
		if err != nil || m.hasID || json.Unmarshal([]byte(m.data), &live) != nil {
			t.Fatalf("progress on the stream: %+v, %v", m, err)
		}
		if !live.Live || live.Position != 0 || string(live.Progress) != `{"done":1,"of":3}` || live.ID != job.ID || live.Status != JobInProgress {
			t.Errorf("progress event %s", m.data)
		}
		if code, body := call(t, env, "GET", "/api/events?topic=orders.ShipmentRequested", worker, ""); code != http.StatusOK ||
			strings.Count(body, `"id"`) != 1 || strings.Contains(body, `"progress"`) {
			t.Errorf("query after progress: %d %s", code, body)
		}

		if code, body := call(t, env, "PATCH", "/api/events/"+job.ID, acme, `{"status":"finished"}`); code != http.StatusOK {
			t.Fatalf("finish: %d %s", code, body)
		}
		if code, body := call(t, env, "POST", "/api/events/"+job.ID+"/progress", acme, `{}`); code != http.StatusConflict {
			t.Errorf("progress after the end: %d %s", code, body)
		}
		if code, body := call(t, env, "PATCH", "/api/events/"+job.ID, acme, `{"description":"again"}`); code != http.StatusConflict || !strings.Contains(body, "finished is final") {
			t.Errorf("change a finished job: %d %s", code, body)
		}
		if code, body := call(t, env, "POST", "/api/enroll", worker, `{"sourceTopic":"a.BC","targetTopic":"a.BC"}`); code != http.StatusBadRequest {
			t.Errorf("source = target: %d %s", code, body)
		}
	})
}

func TestStaleJobsLoop(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, &Config{JobStaleAfter: 20 * time.Millisecond, JobMaxRetries: 1}, envOptions{})
	appendEvents(t, env.store, sourceEvent("", "o-1", `{}`))
	res, ok, err := env.srv.enroll(t.Context(), &Principal{Name: "w", rights: allRights}, shipReq)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	waitStatus := func(want JobStatus) Event {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			ev, err := env.store.Get(t.Context(), "", res.Job.ID)
			if err == nil && ev.Status == want {
				return ev
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %+v, %v; want %s", ev, err, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if ev := waitStatus(JobRestarted); ev.Retries != 1 {
		t.Errorf("restarted with %d retries", ev.Retries)
	}
	res2, ok, err := env.srv.enroll(t.Context(), &Principal{Name: "w", rights: allRights}, shipReq)
	if err != nil || !ok || res2.Job.ID != res.Job.ID {
		t.Fatalf("enrolled again: %+v %v %v", res2.Job, ok, err)
	}
	if ev := waitStatus(JobFailed); ev.Retries != 1 {
		t.Errorf("failed with %d retries", ev.Retries)
	}
}

func TestLiveAcrossInstances(t *testing.T) {
	t.Parallel()
	stores := jobStoreKinds[1].open(t, 2, newTestClock())
	keys := e2eKeys(t)
	two := struct{ a, b *testEnv }{
		newTestEnv(t, &Config{Store: stores[0], Keys: keys}, envOptions{}),
		newTestEnv(t, &Config{Store: stores[1], Keys: keys}, envOptions{}),
	}
	s := openStream(t, two.b, "/api/stream?topic=orders.*", bearer(e2eWatch))
	if _, err := s.read(); err != nil {
		t.Fatal(err)
	}
	ev := testEvent("orders", "Order", "Packed", "o-1")
	ev.Progress = json.RawMessage(`{"pct":50}`)
	// B's store listens on a connection of its own, which may not listen
	// yet: live events reach the listeners of the time, so A publishes
	// until one arrives.
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			if err := two.a.srv.publishLive(ctx, []Event{ev}); err != nil && ctx.Err() == nil {
				t.Error(err)
			}
			sleep(ctx, 50*time.Millisecond)
		}
	})
	m, err := s.next()
	cancel()
	wg.Wait()
	var got Event
	if err != nil || m.hasID || json.Unmarshal([]byte(m.data), &got) != nil || got.ID != ev.ID || !got.Live || got.Position != 0 {
		t.Fatalf("live event on the other instance: %+v, %v", m, err)
	}
	if all, err := two.b.store.Read(t.Context(), &ReadRequest{}); err != nil || len(all) != 0 {
		t.Errorf("store holds %d events, %v", len(all), err)
	}
	big := ev
	big.Data = json.RawMessage(`"` + strings.Repeat("x", PostgresMaxLiveBytes) + `"`)
	var tooLarge *LiveTooLargeError
	if err := two.a.srv.publishLive(t.Context(), []Event{big}); !errors.As(err, &tooLarge) || !errors.Is(err, ErrLiveTooLarge) || tooLarge.Max != PostgresMaxLiveBytes {
		t.Errorf("large live event: %v", err)
	}
	// The stream goes on after the live events (A may have sent more),
	// from its position.
	stored := appendEvents(t, two.a.store, testEvent("orders", "Order", "Shipped", "o-1"))
	for {
		m, err := s.next()
		if err != nil {
			t.Fatal(err)
		}
		if m.hasID {
			if got := s.decode(m); got.Position != stored[0] {
				t.Errorf("after the live event: %+v", got)
			}
			break
		}
	}
}
