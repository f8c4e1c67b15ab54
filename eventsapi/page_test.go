package eventsapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/internal/wire"
)

// pageDo sends a request to env with the bearer secret ("" for none) and
// returns the answer's status, headers and body.
func pageDo(t *testing.T, env *testEnv, method, path, secret, contentType, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, env.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := env.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func pageGet(t *testing.T, env *testEnv, path, secret string) (int, http.Header, string) {
	t.Helper()
	return pageDo(t, env, http.MethodGet, path, secret, "", "")
}

func pagePost(t *testing.T, env *testEnv, path, secret, contentType, body string) (int, string) {
	t.Helper()
	status, _, answer := pageDo(t, env, http.MethodPost, path, secret, contentType, body)
	return status, answer
}

// badActorEvents is a CloudEvents batch of n events that every server
// refuses (an unknown actor type): n rejections in one post.
func badActorEvents(n int) string {
	evs := make([]string, n)
	for i := range evs {
		evs[i] = fmt.Sprintf(`{"specversion":"1.0","id":"bad-%d","source":"s","type":"billing.InvoiceCreated","actortype":"robot","data":{"id":"x"}}`, i)
	}
	return "[" + strings.Join(evs, ",") + "]"
}

// TestPageAssets: GET / serves the live page; everything it loads comes
// from the same server (no CDN: it works offline), under a policy that
// forbids anything else; its script only ever sets text, never HTML, and
// talks to the API by relative paths; it needs no key.
func TestPageAssets(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil, envOptions{})
	status, h, html := pageGet(t, env, "/", "")
	if status != http.StatusOK || h.Get("Content-Type") != "text/html; charset=utf-8" ||
		h.Get("Content-Security-Policy") != pagePolicy || h.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("GET /: %d %v", status, h)
	}
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(pagePolicy, want) {
			t.Errorf("the page's policy lacks %s", want)
		}
	}
	if strings.Contains(html, "<script>") || strings.Contains(html, " style=") || regexp.MustCompile(`\son[a-z]+=`).MatchString(html) {
		t.Error("the page has inline script or style, which its policy forbids")
	}

	refs := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(html, -1)
	if len(refs) != 2 {
		t.Fatalf("the page loads %d assets, want its script and style: %q", len(refs), refs)
	}
	wantType := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
	bodies := map[string]string{}
	for _, m := range refs {
		ref := m[1]
		if u, err := url.Parse(ref); err != nil || u.Scheme != "" || u.Host != "" || strings.HasPrefix(ref, "/") {
			t.Errorf("the page loads %q: want a path relative to the page", ref)
			continue
		}
		status, h, body := pageGet(t, env, "/"+ref, "")
		if status != http.StatusOK || h.Get("Content-Type") != wantType[path.Ext(ref)] || h.Get("Content-Security-Policy") != pagePolicy {
			t.Errorf("GET /%s: %d %v", ref, status, h)
		}
		bodies[path.Ext(ref)] = body
	}

	js := bodies[".js"]
	for _, banned := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "://"} {
		if strings.Contains(js, banned) {
			t.Errorf("the page's script uses %s", banned)
		}
	}
	if regexp.MustCompile("[\"'`]//").MatchString(js) {
		t.Error("the page's script names a protocol-relative URL")
	}
	calls := regexp.MustCompile(`(?m)(?:(?:^|[^.\w])(?:get|fetch)|new EventSource)\(\s*([^,)]+)`).FindAllStringSubmatch(js, -1)
	if len(calls) < 4 {
		t.Fatalf("found %d requests in the page's script, want the query API, the ticket and the stream", len(calls))
	}
	for _, c := range calls {
		if arg := c[1]; arg != "path" && !strings.HasPrefix(arg, `"api/`) {
			t.Errorf("the page's script requests %s: want a relative api/ path", arg)
		}
	}
	css := bodies[".css"]
	if strings.Contains(css, "url(") || strings.Contains(css, "@import") {
		t.Error("the page's style loads something")
	}

	for _, p := range []string{"/page/index.html", "/page/nothing.js", "/page/", "/page/live.js/x"} {
		if status, _, _ := pageGet(t, env, p, ""); status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, status)
		}
	}

	// With keys, the page and its assets are served to anyone (they hold
	// no events); the API behind them asks for a key.
	keys, err := NewKeys(Key{Name: "admin", Rights: []Right{RightSubscribe, RightQuery}, SecretSHA256: HashSecret("admin-secret-0123456789")})
	if err != nil {
		t.Fatal(err)
	}
	withKeys := newTestEnv(t, &Config{Keys: keys}, envOptions{})
	for _, p := range []string{"/", "/page/live.js", "/page/live.css"} {
		if status, _, _ := pageGet(t, withKeys, p, ""); status != http.StatusOK {
			t.Errorf("with keys, GET %s: %d", p, status)
		}
	}
	if status, _, _ := pageGet(t, withKeys, "/api/events", ""); status != http.StatusUnauthorized {
		t.Errorf("with keys, GET /api/events without a key: %d", status)
	}
}

// TestPageFilterParams: the filter fields of the page's form, and the
// parameters its script passes on from the page's URL, are exactly filter
// parameters of the API.
func TestPageFilterParams(t *testing.T) {
	t.Parallel()
	html, err := pageFiles.ReadFile("page/index.html")
	if err != nil {
		t.Fatal(err)
	}
	form := regexp.MustCompile(`(?s)<form id="filter".*?</form>`).Find(html)
	names := regexp.MustCompile(`<input name="([^"]+)"`).FindAllSubmatch(form, -1)
	if len(names) < 3 {
		t.Fatalf("the filter form has %d fields", len(names))
	}
	for _, n := range names {
		name := string(n[1])
		f, err := FilterFromQuery(url.Values{name: {"x"}})
		if err != nil || (len(f.Include) == 0 && len(f.Exclude) == 0 && f.Tenant == "") {
			t.Errorf("the form's field %s is not a filter parameter: %+v, %v", name, f, err)
		}
	}

	js, err := pageFiles.ReadFile("page/live.js")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`const FIELDS = \[([^\]]*)\]`).FindSubmatch(js)
	if m == nil {
		t.Fatal("no FIELDS in the page's script")
	}
	var fields []string
	if err := json.Unmarshal([]byte("["+string(m[1])+"]"), &fields); err != nil {
		t.Fatal(err)
	}
	want := slices.Clone(fieldNames[:])
	slices.Sort(fields)
	slices.Sort(want)
	if !slices.Equal(fields, want) {
		t.Errorf("the page passes the fields %v, the API takes %v", fields, want)
	}
	if !strings.Contains(string(js), `"exclude_" + f), "tenant", "since", "until"]`) {
		t.Error("the page does not pass exclude_ fields, tenant, since and until")
	}
}

// TestPageStream runs what the page does, with a filter of several fields
// as its URL gives it: the newest position, then the history up to it
// (filtered, newest first), then the stream after it with rejections. The
// history and the stream together give every matching event once; the
// stream carries the rejections, those held when it opens and new ones.
func TestPageStream(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil, envOptions{})
	ev := func(action, key, tenant string) Event {
		e := testEvent("billing", "Invoice", action, key)
		e.Tenant = tenant
		return e
	}
	appendEvents(t, env.store,
		ev("Created", "inv-1", "acme"),   // 1: matches
		ev("Created", "inv-2", "acme"),   // 2: another key
		ev("Paid", "inv-1", "globex"),    // 3: another tenant
		ev("Paid", "inv-1", "acme"),      // 4: matches
		ev("Deleted", "inv-1", "acme"),   // 5: excluded
		ev("Created", "inv-9", "globex"), // 6: another tenant, newest
	)
	if status, _ := pagePost(t, env, "/", "", wire.ContentTypeCloudEventBatch, badActorEvents(1)); status != http.StatusUnprocessableEntity {
		t.Fatalf("a bad batch: %d", status)
	}
	filter := "topic=billing.Invoice*&key=inv-1&tenant=acme&exclude_topic=*Deleted"

	var newest EventsPage
	status, _, body := pageGet(t, env, "/api/events?order=desc&limit=1&tenant=acme", "")
	if status != http.StatusOK || json.Unmarshal([]byte(body), &newest) != nil || len(newest.Events) != 1 || newest.Events[0].Position != 5 {
		t.Fatalf("the newest of the tenant: %d %s", status, body)
	}
	head := newest.Events[0].Position
	var history EventsPage
	status, _, body = pageGet(t, env, "/api/events?"+filter+"&order=desc&limit=100&before="+strconv.FormatInt(head+1, 10), "")
	if status != http.StatusOK || json.Unmarshal([]byte(body), &history) != nil || fmt.Sprint(positions(history.Events)) != "[4 1]" {
		t.Fatalf("the history: %d %s", status, body)
	}

	s := openStream(t, env, "/api/stream?"+filter+"&rejections=true&last_event_id="+strconv.FormatInt(head, 10), nil)
	m, err := s.read()
	if err != nil || m.id != "5" || m.data != "" {
		t.Fatalf("the stream opens with %+v, %v; want id 5", m, err)
	}
	var rejected []Rejection
	var events []Event
	collect := func(n int) {
		t.Helper()
		for len(rejected)+len(events) < n {
			m, err := s.next()
			if err != nil {
				t.Fatal(err)
			}
			switch m.event {
			case "rejected":
				if m.hasID {
					t.Errorf("a rejection with an id: %+v", m)
				}
				var r Rejection
				if err := json.Unmarshal([]byte(m.data), &r); err != nil {
					t.Fatal(err)
				}
				rejected = append(rejected, r)
			default:
				events = append(events, s.decode(m))
			}
		}
	}
	collect(1)
	if len(rejected) != 1 || rejected[0].Seq != 1 || rejected[0].ID != "bad-0" || rejected[0].Code != "ValidationError" ||
		rejected[0].Status != http.StatusUnprocessableEntity || rejected[0].Index == nil || *rejected[0].Index != 0 || rejected[0].Sender != "development" {
		t.Fatalf("the rejection held: %+v", rejected)
	}

	appendEvents(t, env.store,
		ev("Created", "inv-1", "globex"), // 7: another tenant
		ev("Sent", "inv-1", "acme"),      // 8: matches
		ev("Deleted", "inv-1", "acme"),   // 9: excluded
	)
	if status, _ := pagePost(t, env, "/events", "", "application/json", `{"category":`); status != http.StatusBadRequest {
		t.Fatalf("a malformed post: %d", status)
	}
	appendEvents(t, env.store, ev("Paid", "inv-1", "acme")) // 10: matches
	collect(4)
	if fmt.Sprint(positions(events)) != "[8 10]" {
		t.Errorf("streamed %v, want [8 10]", positions(events))
	}
	if len(rejected) != 2 || rejected[1].Seq != 2 || rejected[1].Code != "BadRequest" || rejected[1].Status != http.StatusBadRequest {
		t.Errorf("rejections %+v", rejected)
	}
}

// TestStreamRejections: rejections go to principals of every tenant who
// ask, over a ticket as the page opens its stream; a principal bound to a
// tenant asking gets the events alone. A stream opens with the last 100
// held; the server holds the last RejectionsHeld; RejectFunc hears of
// each.
func TestStreamRejections(t *testing.T) {
	t.Parallel()
	const adminSecret, acmeSecret, relaySecret = "admin-secret-0123456789", "acme-secret-0123456789", "relay-secret-0123456789"
	keys, err := NewKeys(
		Key{Name: "admin", Rights: []Right{RightSubscribe, RightQuery}, SecretSHA256: HashSecret(adminSecret)},
		Key{Name: "acme", Tenant: "acme", Rights: []Right{RightSubscribe}, SecretSHA256: HashSecret(acmeSecret)},
		Key{Name: "relay", Rights: []Right{RightIngest}, SecretSHA256: HashSecret(relaySecret)},
	)
	if err != nil {
		t.Fatal(err)
	}
	heard := make(chan int, 16)
	env := newTestEnv(t, &Config{Keys: keys, RejectFunc: func(rs []Rejection) { heard <- len(rs) }}, envOptions{})

	const many = RejectionsHeld + 100
	if status, body := pagePost(t, env, "/", relaySecret, wire.ContentTypeCloudEventBatch, badActorEvents(many)); status != http.StatusUnprocessableEntity {
		t.Fatalf("a bad batch: %d %s", status, body)
	}
	if n := <-heard; n != many {
		t.Errorf("RejectFunc heard of %d rejections, want %d", n, many)
	}
	held := env.srv.Rejections(0, 2*many)
	if len(held) != RejectionsHeld || held[0].Seq != many-RejectionsHeld+1 || held[len(held)-1].Seq != many || held[0].Sender != "relay" {
		t.Fatalf("held %d rejections, seq %d..%d", len(held), held[0].Seq, held[len(held)-1].Seq)
	}
	if got := env.srv.Rejections(many-3, 2); len(got) != 2 || got[0].Seq != many-2 {
		t.Errorf("Rejections(%d, 2) = %+v", many-3, got)
	}

	ticket := func(secret string) string {
		status, body := pagePost(t, env, "/api/tickets", secret, "", "")
		var tk struct{ Ticket string }
		if status != http.StatusCreated || json.Unmarshal([]byte(body), &tk) != nil {
			t.Fatalf("POST /api/tickets: %d %s", status, body)
		}
		return tk.Ticket
	}
	admin := openStream(t, env, "/api/stream?rejections=true&ticket="+ticket(adminSecret), nil)
	acme := openStream(t, env, "/api/stream?rejections=1&ticket="+ticket(acmeSecret), nil)

	// On opening: the last 100 held.
	for i := range rejectionsOnOpen {
		m, err := admin.next()
		var r Rejection
		if err != nil || m.event != "rejected" || json.Unmarshal([]byte(m.data), &r) != nil || r.Seq != int64(many-rejectionsOnOpen+1+i) {
			t.Fatalf("rejection %d on opening: %+v, %v", i, m, err)
		}
	}
	// Then new ones, more than a batch at once, without waiting for an
	// event or a heartbeat; then the events (the tenant-bound stream gets
	// only its tenant's events).
	const burst = 3 * deliverBatch / 2
	if status, _ := pagePost(t, env, "/", relaySecret, wire.ContentTypeCloudEventBatch, badActorEvents(burst)); status != http.StatusUnprocessableEntity {
		t.Fatal("a bad batch was taken")
	}
	start := time.Now()
	for i := range burst {
		m, err := admin.next()
		if err != nil || m.event != "rejected" || !strings.Contains(m.data, fmt.Sprintf(`"seq":%d,`, many+1+i)) {
			t.Fatalf("admin, new rejection %d: %+v, %v", i, m, err)
		}
	}
	if d := time.Since(start); d > HeartbeatDefault/3 {
		t.Errorf("%d new rejections took %s to arrive", burst, d)
	}
	e := testEvent("billing", "Invoice", "Created", "inv-1")
	e.Tenant = "acme"
	appendEvents(t, env.store, e)
	if got := admin.events(1); got[0].ID != e.ID {
		t.Errorf("admin: %+v", got)
	}
	if got := acme.events(1); got[0].ID != e.ID {
		t.Errorf("acme: %+v", got)
	}

	// A stream that does not ask gets none; a value that is not a boolean
	// is refused.
	plain := openStream(t, env, "/api/stream?ticket="+ticket(adminSecret), nil)
	if status, body := pagePost(t, env, "/", relaySecret, wire.ContentTypeCloudEventBatch, badActorEvents(1)); status != http.StatusUnprocessableEntity {
		t.Fatalf("a bad batch: %d %s", status, body)
	}
	e2 := testEvent("billing", "Invoice", "Paid", "inv-1")
	appendEvents(t, env.store, e2)
	if got := plain.events(1); got[0].ID != e2.ID {
		t.Errorf("a stream without rejections: %+v", got)
	}
	if s, resp := tryStream(t, env, "/api/stream?rejections=maybe&ticket="+ticket(adminSecret), nil); s != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("rejections=maybe: %v", resp.Status)
	}
}
