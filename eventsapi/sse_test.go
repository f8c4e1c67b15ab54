package eventsapi

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestStreamBasic(t *testing.T) {
	t.Parallel()
	forEachSubscriptionStore(t, testStreamBasic)
}

func testStreamBasic(t *testing.T, st Store) {
	env := newTestEnv(t, &Config{Store: st}, envOptions{})
	appendEvents(t, env.store, testEvent("billing", "Invoice", "Created", "old"))

	s := openStream(t, env, "/api/stream", nil)
	if got := s.resp.Header.Get("Cache-Control"); got != "no-cache" {
		t.Errorf("Cache-Control %q", got)
	}
	m, err := s.read()
	if err != nil || m.retry != "2000" || m.id != "1" || m.data != "" {
		t.Fatalf("opening: %+v, %v; want retry 2000 and id 1 (the head), no data", m, err)
	}
	// HEAD answers the headers and ends.
	head, err := env.client.Head(env.url + "/api/stream")
	if err != nil || head.StatusCode != http.StatusOK || head.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("HEAD: %v %v", head, err)
	}
	head.Body.Close()

	want := []Event{
		testEvent("billing", "Invoice", "Created", "inv-1"),
		testEvent("billing", "Invoice", "Paid", "inv-1"),
		testEvent("shipping", "Parcel", "Sent", "p-1"),
	}
	want[0].Tenant, want[0].ActorID = "acme", "user-1"
	pos := appendEvents(t, env.store, want...)
	got := s.events(3)
	for i := range want {
		stored, err := env.store.Get(context.Background(), "", want[i].ID)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := json.Marshal(stored)
		b, _ := json.Marshal(got[i])
		if string(a) != string(b) || got[i].Position != pos[i] {
			t.Errorf("event %d:\n got %s\nwant %s", i, b, a)
		}
	}
}

func TestStreamResume(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil, envOptions{})
	var evs []Event
	for i := range 5 {
		evs = append(evs, testEvent("billing", "Invoice", "Created", strconv.Itoa(i)))
	}
	appendEvents(t, env.store, evs...)
	tests := []struct {
		name   string
		path   string
		header http.Header
		want   []int64
	}{
		{"header", "/api/stream", http.Header{"Last-Event-Id": {"2"}}, []int64{3, 4, 5}},
		{"parameter", "/api/stream?last_event_id=3", nil, []int64{4, 5}},
		{"from the start", "/api/stream?last_event_id=0", nil, []int64{1, 2, 3, 4, 5}},
		// EventSource reconnects to the same URL with the header: it wins.
		{"header over parameter", "/api/stream?last_event_id=1", http.Header{"Last-Event-Id": {"4"}}, []int64{5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStream(t, env, tt.path, tt.header)
			if got := positions(s.events(len(tt.want))); !slices.Equal(got, tt.want) {
				t.Errorf("positions %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStreamFilter(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil, envOptions{})
	s := openStream(t, env, "/api/stream?category=billing,shipping&exclude_action=Deleted", nil)
	appendEvents(t, env.store,
		testEvent("billing", "Invoice", "Created", "inv-1"), // 1 in
		testEvent("audit", "Login", "Done", "u-1"),          // 2 out: category
		testEvent("billing", "Invoice", "Deleted", "inv-1"), // 3 out: excluded action
		testEvent("shipping", "Parcel", "Sent", "p-1"),      // 4 in
		testEvent("shipping", "Parcel", "Returned", "p-1"),  // 5 in
		testEvent("billing", "Invoice", "Paid", "inv-2"),    // 6 in
	)
	if got := positions(s.events(4)); !slices.Equal(got, []int64{1, 4, 5, 6}) {
		t.Errorf("positions %v, want [1 4 5 6]", got)
	}
}

func TestStreamBadRequest(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil, envOptions{})
	long := make([]byte, MaxPatternBytes+1)
	for i := range long {
		long[i] = 'a'
	}
	tests := []struct{ name, path, code string }{
		{"bad time", "/api/stream?since=yesterday", codeInvalidFilter},
		{"pattern too long", "/api/stream?topic=" + string(long), codeInvalidFilter},
		{"until before since", "/api/stream?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", codeInvalidFilter},
		{"bad position", "/api/stream?last_event_id=abc", codeBadRequest},
		{"negative position", "/api/stream?last_event_id=-1", codeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, resp := tryStream(t, env, tt.path, nil)
			if s != nil {
				t.Fatal("a stream opened")
			}
			var body subscribeError
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Content-Type") != "application/json" || body.Code != tt.code || body.Message == "" {
				t.Errorf("%s %s %+v; want 400 application/json code %s and a message", resp.Status, resp.Header.Get("Content-Type"), body, tt.code)
			}
		})
	}
}

func TestStreamHeartbeat(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, &Config{Heartbeat: 20 * time.Millisecond}, envOptions{})
	s := openStream(t, env, "/api/stream?category=billing", nil)
	if _, err := s.read(); err != nil { // the opening
		t.Fatal(err)
	}
	m, err := s.read()
	if err != nil || len(m.comments) != 1 || m.comments[0] != "heartbeat" || m.hasID {
		t.Fatalf("got %+v, %v; want a heartbeat comment", m, err)
	}
	// Events the filter passes over move the stream's id on with the next
	// heartbeat, so that a reconnect does not pass over them again.
	appendEvents(t, env.store, testEvent("audit", "Login", "Done", "u-1"), testEvent("audit", "Login", "Done", "u-2"))
	for {
		m, err := s.read()
		if err != nil {
			t.Fatal(err)
		}
		if m.data != "" {
			t.Fatalf("unexpected %+v", m)
		}
		if m.hasID {
			if m.id != "2" || len(m.comments) != 1 {
				t.Fatalf("got %+v; want id 2 with the heartbeat", m)
			}
			break
		}
	}
}

func TestStreamGap(t *testing.T) {
	t.Parallel()
	forEachSubscriptionStore(t, testStreamGap)
}

func testStreamGap(t *testing.T, st Store) {
	// The ring holds the last 4 events; the store keeps 3 of 10.
	env := newTestEnv(t, &Config{Store: st, SubscriberBuffer: 4}, envOptions{})
	for i := range 10 {
		appendEvents(t, env.store, testEvent("billing", "Invoice", "Created", strconv.Itoa(i)))
	}
	eventually(t, 10*time.Second, "the pump reads the events", func() bool { return pumped(env.srv) == 10 })
	if _, err := env.store.Prune(context.Background(), time.Time{}, 3); err != nil {
		t.Fatal(err)
	}
	s := openStream(t, env, "/api/stream?last_event_id=2", nil)
	n := s.notice(codeGap)
	t.Log(n.Message)
	if got := positions(s.events(3)); !slices.Equal(got, []int64{8, 9, 10}) {
		t.Errorf("positions %v, want [8 9 10]", got)
	}

	// Resuming from a position held: no notice.
	s = openStream(t, env, "/api/stream?last_event_id=8", nil)
	if got := positions(s.events(2)); !slices.Equal(got, []int64{9, 10}) {
		t.Errorf("positions %v, want [9 10]", got)
	}

	// A position beyond the newest: the store was reset; start over.
	s = openStream(t, env, "/api/stream?last_event_id=1000", nil)
	s.notice(codeGap)
	if got := positions(s.events(3)); !slices.Equal(got, []int64{8, 9, 10}) {
		t.Errorf("positions %v, want [8 9 10]", got)
	}
}

// TestStreamResumeUnderIngest drops the connection 100 times while 8
// goroutines append, resuming each time from the last id received: the
// events received are every event appended, once each, in order.
func TestStreamResumeUnderIngest(t *testing.T) {
	t.Parallel()
	for _, st := range subscriptionStores {
		for _, buffer := range []int{SubscriberBufferDefault, 64} {
			if st.name != "memory" && buffer != 64 {
				continue // the store's part is the catch-up, which the small buffer makes
			}
			t.Run(fmt.Sprintf("%s/buffer %d", st.name, buffer), func(t *testing.T) {
				t.Parallel()
				// A small buffer makes reconnects catch up from the store and
				// join the ring, and cuts subscribers that fall behind.
				env := newTestEnv(t, &Config{Store: st.new(t), SubscriberBuffer: buffer}, envOptions{})
				testResumeUnderIngest(t, env, 100)
			})
		}
	}
}

func testResumeUnderIngest(t *testing.T, env *testEnv, drops int) {
	const writers, maxPerWriter = 8, 500
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var appended []int64
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < maxPerWriter; {
				select {
				case <-stop:
					return
				default:
				}
				batch := make([]Event, 1+rand.IntN(5))
				for i := range batch {
					batch[i] = testEvent("billing", "Invoice", "Updated", fmt.Sprintf("w%d-%d", w, n))
					n++
				}
				pos := appendEvents(t, env.store, batch...)
				mu.Lock()
				appended = append(appended, pos...)
				mu.Unlock()
				time.Sleep(time.Duration(2+rand.IntN(8)) * time.Millisecond)
			}
		}()
	}

	var got []int64
	last := "0"
	slow := 0
	receive := func(max int) (ended bool) {
		s := openStream(t, env, "/api/stream?last_event_id="+last, nil)
		defer s.close()
		for n := 0; n < max; {
			m, err := s.read()
			if err != nil {
				t.Fatalf("after %d events: %v", len(got), err)
			}
			if m.hasID {
				last = m.id
			}
			switch {
			case m.event == "notice":
				var n subscribeError
				_ = json.Unmarshal([]byte(m.data), &n)
				if n.Code != codeSlowConsumer {
					t.Fatalf("notice %s", m.data)
				}
				slow++
				s.expectEnd()
				return true
			case m.data != "":
				got = append(got, s.decode(m).Position)
				n++
			}
		}
		return false
	}
	for range drops {
		receive(rand.IntN(12)) // 0 drops right after the opening
	}
	close(stop)
	wg.Wait()
	head, err := env.store.Head(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for len(got) == 0 || got[len(got)-1] < head {
		want := 0
		if len(got) > 0 {
			want = int(head - got[len(got)-1])
		}
		receive(want)
	}
	slices.Sort(appended)
	if !slices.Equal(got, appended) {
		missing, dup := diffPositions(appended, got)
		t.Fatalf("received %d events, appended %d; missing %v; duplicated or out of order %v", len(got), len(appended), missing, dup)
	}
	t.Logf("%d events appended by %d goroutines, received over %d connections (%d cut as slow)", len(appended), writers, drops+1, slow)
}

// diffPositions returns what want has that got lacks, and what got repeats
// or has out of order.
func diffPositions(want, got []int64) (missing, wrong []int64) {
	seen := make(map[int64]bool, len(got))
	var prev int64
	for _, p := range got {
		if seen[p] || p <= prev {
			wrong = append(wrong, p)
		}
		seen[p] = true
		prev = max(prev, p)
	}
	for _, p := range want {
		if !seen[p] {
			missing = append(missing, p)
		}
	}
	return missing, wrong
}

func TestStreamShutdown(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t, nil, envOptions{})
	s := openStream(t, env, "/api/stream", nil)
	if _, err := s.read(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- env.srv.Close() }()
	s.notice(codeShutdown)
	s.expectEnd()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	_, resp := tryStream(t, env, "/api/stream", nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("after Close: %s, want 503", resp.Status)
	}
}

// TestStreamSlowConsumer: a client that stops reading during a burst is
// told it is too slow and disconnected; it resumes from the store.
func TestStreamSlowConsumer(t *testing.T) {
	t.Parallel()
	forEachSubscriptionStore(t, testStreamSlowConsumer)
}

func testStreamSlowConsumer(t *testing.T, st Store) {
	env := newTestEnv(t, &Config{Store: st, SubscriberBuffer: 200, WriteTimeout: 30 * time.Second}, envOptions{tinySockets: true})
	s := openStream(t, env, "/api/stream", nil)
	if _, err := s.read(); err != nil {
		t.Fatal(err)
	}
	// More than the socket buffers hold, so that the server's writes block
	// while the client does not read.
	total := burst(t, env.store, 2000, 256)

	var got []int64
	for {
		m, err := s.next()
		if err != nil {
			t.Fatalf("after %d events: %v", len(got), err)
		}
		if m.event == "notice" {
			var n subscribeError
			if err := json.Unmarshal([]byte(m.data), &n); err != nil || n.Code != codeSlowConsumer {
				t.Fatalf("notice %s", m.data)
			}
			break
		}
		got = append(got, s.decode(m).Position)
	}
	s.expectEnd()
	t.Logf("%d events of %d received before the notice", len(got), total)
	if len(got) >= total {
		t.Fatalf("received all %d events before the notice", total)
	}
	// Resume until caught up: a resumed stream that joins the ring while the
	// burst goes on may be cut again.
	for len(got) < total {
		s = openStream(t, env, "/api/stream", http.Header{"Last-Event-Id": {s.lastID}})
		for len(got) < total {
			m, err := s.next()
			if err != nil {
				t.Fatalf("after %d events: %v", len(got), err)
			}
			if m.event == "notice" {
				s.expectEnd()
				break
			}
			got = append(got, s.decode(m).Position)
		}
	}
	for i, p := range got {
		if p != int64(i+1) {
			t.Fatalf("position %d at %d", p, i)
		}
	}
}

// burst appends n events of about size bytes each and returns n.
func burst(t testing.TB, st Store, n, size int) int {
	t.Helper()
	pad := make([]byte, size)
	for i := range pad {
		pad[i] = 'x'
	}
	for i := 0; i < n; i += 100 {
		batch := make([]Event, min(100, n-i))
		for j := range batch {
			batch[j] = testEvent("billing", "Invoice", "Updated", strconv.Itoa(i+j))
			batch[j].Data = json.RawMessage(`{"pad":"` + string(pad) + `"}`)
		}
		appendEvents(t, st, batch...)
	}
	return n
}
