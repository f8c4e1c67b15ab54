package eventsapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/internal/testlog"
	"github.com/txoutbox/txoutbox/topics"
)

// apiStores are the stores the ingest, query and access tests run on, each
// test on a fresh one. A store implementation adds itself here (from an
// init function in its own test file) to run them on it too.
var apiStores = []struct {
	name string
	new  func(t *testing.T) eventsapi.Store
}{
	{"memory", func(t *testing.T) eventsapi.Store {
		st, err := eventsapi.NewMemoryStore(nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}},
}

// forEachStore runs test as a parallel subtest per store of apiStores.
func forEachStore(t *testing.T, test func(t *testing.T, newStore func(t *testing.T) eventsapi.Store)) {
	t.Helper()
	for _, st := range apiStores {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			test(t, st.new)
		})
	}
}

// Keys of the test servers: a relay for any tenant, tenant-bound keys, and
// keys with one right each.
const (
	relaySecret   = "relay-secret-0123456789"
	acmeSecret    = "acme-secret-0123456789"
	globexSecret  = "globex-secret-0123456789"
	acmeIngest    = "acme-ingest-0123456789"
	querySecret   = "query-only-0123456789"
	watchSecret   = "subscribe-only-0123456789"
	adminSecret   = "admin-all-0123456789"
	unknownSecret = "not-a-key-0123456789"
)

func testKeys(t testing.TB) *eventsapi.Keys {
	t.Helper()
	all := []eventsapi.Right{eventsapi.RightIngest, eventsapi.RightSubscribe, eventsapi.RightQuery}
	keys, err := eventsapi.NewKeys(
		eventsapi.Key{Name: "relay", Rights: []eventsapi.Right{eventsapi.RightIngest}, SecretSHA256: eventsapi.HashSecret(relaySecret)},
		eventsapi.Key{Name: "acme", Tenant: "acme", Rights: []eventsapi.Right{eventsapi.RightQuery, eventsapi.RightSubscribe}, SecretSHA256: eventsapi.HashSecret(acmeSecret)},
		eventsapi.Key{Name: "globex", Tenant: "globex", Rights: []eventsapi.Right{eventsapi.RightQuery}, SecretSHA256: eventsapi.HashSecret(globexSecret)},
		eventsapi.Key{Name: "acme-relay", Tenant: "acme", Rights: []eventsapi.Right{eventsapi.RightIngest}, SecretSHA256: eventsapi.HashSecret(acmeIngest)},
		eventsapi.Key{Name: "reader", Rights: []eventsapi.Right{eventsapi.RightQuery}, SecretSHA256: eventsapi.HashSecret(querySecret)},
		eventsapi.Key{Name: "watcher", Rights: []eventsapi.Right{eventsapi.RightSubscribe}, SecretSHA256: eventsapi.HashSecret(watchSecret)},
		eventsapi.Key{Name: "admin", Rights: all, SecretSHA256: eventsapi.HashSecret(adminSecret)},
	)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// apiBundle is a Server over real HTTP on 127.0.0.1, and what its logger
// wrote.
type apiBundle struct {
	srv   *eventsapi.Server
	url   string
	store eventsapi.Store
	log   *testlog.Buffer
}

// apiOptions vary setupAPI's server.
type apiOptions struct {
	store    eventsapi.Store
	registry bool // check events against testdata/ingest_topics.yaml
	devMode  bool // no keys
	config   func(*eventsapi.Config)
}

func setupAPI(t *testing.T, o apiOptions) *apiBundle {
	t.Helper()
	logger, log := testlog.New()
	b := &apiBundle{log: log, store: o.store}
	cfg := &eventsapi.Config{Store: o.store, Logger: logger}
	if !o.devMode {
		cfg.Keys = testKeys(t)
	}
	if o.registry {
		reg, err := topics.Load("testdata/ingest_topics.yaml")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Registry = reg
	}
	if o.config != nil {
		o.config(cfg)
	}
	srv, err := eventsapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		_ = srv.Close()
		hs.Close()
	})
	b.srv, b.url = srv, hs.URL
	if b.store == nil {
		b.store = srv.Store()
	}
	return b
}

// answer is an HTTP answer, read whole.
type answer struct {
	status int
	header http.Header
	body   string
}

// decode decodes the answer's body into v, failing the test when it is not
// JSON of that shape.
func (a answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(a.body), v); err != nil {
		t.Fatalf("answer %d %s: %v", a.status, a.body, err)
	}
}

// errorCode returns the code of an error answer, failing the test unless
// the body is the API's error object.
func (a answer) errorCode(t *testing.T) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	a.decode(t, &e)
	if e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("answer %d %s: not an error object", a.status, a.body)
	}
	return e.Error.Code
}

// do sends a request with the secret as a bearer key ("" for none) and
// headers as key, value pairs.
func (b *apiBundle) do(t *testing.T, method, path, secret, contentType, body string, headers ...string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, b.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(data)}
}

func (b *apiBundle) get(t *testing.T, path, secret string) answer {
	t.Helper()
	return b.do(t, http.MethodGet, path, secret, "", "")
}

// page gets a page of GET /api/events, failing the test unless it is 200.
func (b *apiBundle) page(t *testing.T, query, secret string) eventsapi.EventsPage {
	t.Helper()
	a := b.get(t, "/api/events?"+query, secret)
	if a.status != http.StatusOK {
		t.Fatalf("GET /api/events?%s: %d %s", query, a.status, a.body)
	}
	var p eventsapi.EventsPage
	a.decode(t, &p)
	return p
}

// all returns every stored event, oldest first.
func (b *apiBundle) all(t *testing.T) []eventsapi.Event {
	t.Helper()
	evs, err := b.store.Read(t.Context(), &eventsapi.ReadRequest{Limit: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func ids(evs []eventsapi.Event) string {
	out := make([]string, len(evs))
	for i := range evs {
		out[i] = evs[i].ID
	}
	return strings.Join(out, ",")
}

// cloudEvent is one CloudEvent of topic with data and extension attributes
// given as name, value pairs.
func cloudEvent(id, topic, data string, ext ...string) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"specversion":"1.0","id":%q,"source":"billing-service","type":%q,"actorid":"user-4711","actortype":"user"`, id, topic)
	for i := 0; i+1 < len(ext); i += 2 {
		fmt.Fprintf(&b, ",%q:%q", ext[i], ext[i+1])
	}
	fmt.Fprintf(&b, `,"data":%s}`, data)
	return b.String()
}

func batch(events ...string) string { return "[" + strings.Join(events, ",") + "]" }

// briteInvoice is a bc-events body of billing.InvoiceCreated.
func briteInvoice(id string, amount int) string {
	return fmt.Sprintf(`{"category":"billing","entity":"Invoice","action":"Created","data":{"id":%q,"amount_cents":%d},"actor":{"id":"billing-service","type":"service"}}`, id, amount)
}

func invoiceData(id string, amount int) string {
	return fmt.Sprintf(`{"id":%q,"amount_cents":%d}`, id, amount)
}
