package ingest_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/txoutbox/txoutbox/internal/ingest"
	"github.com/txoutbox/txoutbox/internal/wire"
)

const brite = `{"category":"billing","entity":"Invoice","action":"Created","data":{"id":"inv-1"},"actor":{"id":"user-4711","type":"user"}}`

const cloudEvent = `{"specversion":"1.0","id":"c1","source":"s","type":"billing.InvoiceCreated","data":{"id":"inv-1"}}`

// recorder is a Handler whose StoreFunc answers what the test says and
// remembers what it was given, as RejectFunc does.
type recorder struct {
	mu       sync.Mutex
	posts    []*ingest.Post
	rejected []ingest.Rejection
	answer   func(p *ingest.Post) ([]ingest.Outcome, error)
}

func (rec *recorder) handler(t *testing.T) http.Handler {
	t.Helper()
	h, err := ingest.New(ingest.Config{
		MaxBodyBytes: 1 << 20,
		StoreFunc: func(_ context.Context, p *ingest.Post) ([]ingest.Outcome, error) {
			rec.mu.Lock()
			rec.posts = append(rec.posts, p)
			rec.mu.Unlock()
			return rec.answer(p)
		},
		RejectFunc: func(_ context.Context, _ wire.Format, rs []ingest.Rejection) {
			rec.mu.Lock()
			rec.rejected = append(rec.rejected, rs...)
			rec.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux, nil)
	return mux
}

func post(h http.Handler, path, contentType, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

// TestStoreAnswers: what the store answers becomes the answer to the post.
func TestStoreAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		what, path, contentType, body string
		answer                        func(p *ingest.Post) ([]ingest.Outcome, error)
		want                          int
		mention                       string
	}{
		{"a record fault on a single post", "/events", "application/json", brite,
			func(*ingest.Post) ([]ingest.Outcome, error) {
				return []ingest.Outcome{{Code: wire.BriteErrThroughputExceeded, Message: "busy"}}, nil
			}, http.StatusServiceUnavailable, wire.BriteErrThroughputExceeded},
		{"a record fault on a CloudEvent", "/", wire.ContentTypeCloudEvent, cloudEvent,
			func(*ingest.Post) ([]ingest.Outcome, error) {
				return []ingest.Outcome{{Code: "Busy", Message: "busy"}}, nil
			},
			http.StatusServiceUnavailable, "Busy"},
		{"a record fault in a bulk post", "/events/bulk/", "application/json", "[" + brite + "," + brite + "]",
			func(*ingest.Post) ([]ingest.Outcome, error) {
				return []ingest.Outcome{{}, {Code: wire.BriteErrInternalFailure, Message: "failed"}}, nil
			}, http.StatusCreated, `"records":["Success","InternalFailureException"]`},
		{"a refusal", "/", wire.ContentTypeCloudEventBatch, "[" + cloudEvent + "]",
			func(*ingest.Post) ([]ingest.Outcome, error) {
				return nil, &ingest.Error{Status: http.StatusForbidden, Code: ingest.CodeForbidden, Message: "not yours"}
			}, http.StatusForbidden, "not yours"},
		{"a failure", "/events", "application/json", brite,
			func(*ingest.Post) ([]ingest.Outcome, error) { return nil, errors.New("connection refused") },
			http.StatusServiceUnavailable, ingest.CodeUnavailable},
		{"too few outcomes", "/events/bulk", "application/json", "[" + brite + "," + brite + "]",
			func(*ingest.Post) ([]ingest.Outcome, error) { return []ingest.Outcome{{}}, nil },
			http.StatusInternalServerError, "1 of 2"},
	} {
		rec := &recorder{answer: tc.answer}
		w := post(rec.handler(t), tc.path, tc.contentType, tc.body)
		if w.Code != tc.want || !strings.Contains(w.Body.String(), tc.mention) {
			t.Errorf("%s: %d %s, want %d mentioning %s", tc.what, w.Code, w.Body, tc.want, tc.mention)
		}
		if strings.Contains(w.Body.String(), "connection refused") {
			t.Errorf("%s: the store's error is shown to the caller: %s", tc.what, w.Body)
		}
		if (w.Code == http.StatusForbidden) != (len(rec.rejected) == 1) {
			t.Errorf("%s: rejections %+v", tc.what, rec.rejected)
		}
	}
}

// TestEmptyPosts: an empty bulk post or batch is answered without a store
// call.
func TestEmptyPosts(t *testing.T) {
	t.Parallel()
	rec := &recorder{answer: func(*ingest.Post) ([]ingest.Outcome, error) { return nil, errors.New("called") }}
	h := rec.handler(t)
	if w := post(h, "/events/bulk/", "application/json", "[]"); w.Code != http.StatusCreated || !strings.Contains(w.Body.String(), `"failedRecords":0`) {
		t.Errorf("empty bulk post: %d %s", w.Code, w.Body)
	}
	if w := post(h, "/cloudevents", wire.ContentTypeCloudEventBatch, "[]"); w.Code != http.StatusAccepted {
		t.Errorf("empty batch: %d %s", w.Code, w.Body)
	}
	if len(rec.posts) != 0 {
		t.Errorf("%d store calls", len(rec.posts))
	}
}

// TestBriteEnvelopeFromHeaders: what a bc-events post's headers carry
// reaches the store on each event.
func TestBriteEnvelopeFromHeaders(t *testing.T) {
	t.Parallel()
	rec := &recorder{answer: func(p *ingest.Post) ([]ingest.Outcome, error) { return make([]ingest.Outcome, len(p.Events)), nil }}
	w := post(rec.handler(t), "/events/bulk/", "application/json", "["+brite+","+brite+"]",
		wire.HeaderEventIDs, "e1, e2", wire.HeaderJobID, "job-1", wire.HeaderTenant, "acme",
		wire.HeaderTraceparent, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", wire.HeaderDedupeKeys, "e2=pay%2C+once")
	if w.Code != http.StatusCreated || len(rec.posts) != 1 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	p := rec.posts[0]
	if !p.Batch || p.Format != wire.FormatBriteEvents || len(p.Events) != 2 {
		t.Fatalf("post %+v", p)
	}
	for i, ev := range p.Events {
		if ev.ID != []string{"e1", "e2"}[i] || ev.JobID != "job-1" || ev.Tenant != "acme" || !strings.HasPrefix(ev.Traceparent, "00-4bf9") ||
			ev.DedupeKey != []string{"", "pay, once"}[i] || ev.Topic != "billing.InvoiceCreated" {
			t.Errorf("event %d: %+v", i, ev)
		}
	}
	w = post(rec.handler(t), "/events", "application/json", brite)
	if w.Code != http.StatusCreated || !strings.Contains(w.Body.String(), `"eventId":"0`) {
		t.Errorf("a post without an id is given a UUIDv7: %d %s", w.Code, w.Body)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	store := func(context.Context, *ingest.Post) ([]ingest.Outcome, error) { return nil, nil }
	for _, cfg := range []ingest.Config{{StoreFunc: store}, {MaxBodyBytes: 1}} {
		if _, err := ingest.New(cfg); err == nil {
			t.Errorf("New(%+v): no error", cfg)
		}
	}
}

// TestTargets: a bc-events post's target header reaches every event, and a
// CloudEvent's target extensions its event; Check refuses levels too long
// to store; CheckFunc completes events, fails one (422 naming it), or
// answers for the whole post.
func TestTargets(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var stored []wire.Event
	h, err := ingest.New(ingest.Config{
		MaxBodyBytes: 1 << 20,
		CheckFunc: func(_ context.Context, ev *wire.Event) error {
			switch ev.Target.Layout {
			case "unknown":
				return errors.New("no such layout")
			case "down":
				return &ingest.Error{Status: http.StatusServiceUnavailable, Code: ingest.CodeUnavailable, Message: "resolver down"}
			case "l1":
				ev.Target.Collection, ev.Target.Project = "c1", "p1"
			}
			return nil
		},
		StoreFunc: func(_ context.Context, p *ingest.Post) ([]ingest.Outcome, error) {
			mu.Lock()
			stored = append(stored, p.Events...)
			mu.Unlock()
			return make([]ingest.Outcome, len(p.Events)), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux, nil)
	ce := func(id, ext string) string {
		return `{"specversion":"1.0","id":"` + id + `","source":"s","type":"billing.InvoiceCreated","data":{"id":"inv-1"}` + ext + `}`
	}
	long := strings.Repeat("x", 257)
	for _, tc := range []struct {
		what, path, contentType, body, target string
		want                                  int
		mention                               string
		stored                                string // the target stored, as collection/project/layout
	}{
		{"single with a target", "/events", "application/json", brite, "collection=c1; project=p%3B1", http.StatusCreated, "eventId", "c1/p;1/"},
		{"bulk with a target", "/events/bulk/", "application/json", "[" + brite + "]", "collection=c2", http.StatusCreated, `"failedRecords":0`, "c2//"},
		{"a layout completed", "/events", "application/json", brite, "layout=l1", http.StatusCreated, "eventId", "c1/p1/l1"},
		{"a malformed header", "/events", "application/json", brite, "collection", http.StatusBadRequest, wire.HeaderTarget, ""},
		{"a level too long", "/events", "application/json", brite, "collection=" + long, http.StatusUnprocessableEntity, "collection of 257 bytes", ""},
		{"a level too long in bulk", "/events/bulk/", "application/json", "[" + brite + "]", "collection=" + long, http.StatusCreated, `"records":["ValidationError"]`, ""},
		{"refused by CheckFunc", "/events", "application/json", brite, "layout=unknown", http.StatusUnprocessableEntity, "no such layout", ""},
		{"CheckFunc answers", "/events/bulk/", "application/json", "[" + brite + "]", "layout=down", http.StatusServiceUnavailable, "resolver down", ""},
		{"a CloudEvent", "/", wire.ContentTypeCloudEvent, ce("ce-1", `,"targetcollection":"c3","targetproject":"p3"`), "", http.StatusCreated, "accepted", "c3/p3/"},
		{"a CloudEvent refused", "/", wire.ContentTypeCloudEventBatch, "[" + ce("ce-2", "") + "," + ce("ce-3", `,"targetlayout":"unknown"`) + "]", "", http.StatusUnprocessableEntity, `"id":"ce-3"`, ""},
	} {
		mu.Lock()
		stored = nil
		mu.Unlock()
		var header []string
		if tc.target != "" {
			header = []string{wire.HeaderTarget, tc.target}
		}
		w := post(mux, tc.path, tc.contentType, tc.body, header...)
		if w.Code != tc.want || !strings.Contains(w.Body.String(), tc.mention) {
			t.Errorf("%s: %d %s, want %d mentioning %s", tc.what, w.Code, w.Body, tc.want, tc.mention)
		}
		mu.Lock()
		switch {
		case tc.stored == "" && len(stored) > 0:
			t.Errorf("%s: stored %+v", tc.what, stored)
		case tc.stored != "" && (len(stored) != 1 || stored[0].Target.Collection+"/"+stored[0].Target.Project+"/"+stored[0].Target.Layout != tc.stored):
			t.Errorf("%s: stored %+v, want target %s", tc.what, stored, tc.stored)
		}
		mu.Unlock()
	}
}
