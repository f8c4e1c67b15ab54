package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Kinds of subscription.
const (
	viaSSE = "sse"
	viaWS  = "ws"
)

// subscriber is one lean stream reader in this process, on a connection of
// its own: it counts the events it reads and, when stamped, records each
// one's latency; it decodes nothing else.
type subscriber struct {
	n       atomic.Int64 // events read
	stamped bool
	clock   monoClock

	// target, when > 0: at is set and reached closed once n reaches it.
	target  int64
	reached chan struct{}
	at      time.Time

	// Owned by the reading goroutine until done is closed.
	samples []sample
	err     error
	done    chan struct{}
}

// sample is one event's latency: when it was sent and how long it took to
// arrive, on the maker's monotonic clock.
type sample struct{ sent, took int64 }

func (s *subscriber) got(k int) {
	if n := s.n.Add(int64(k)); s.target > 0 && n >= s.target && n-int64(k) < s.target {
		s.at = time.Now()
		close(s.reached)
	}
}

// stamp records the latency of every stamped event in b.
func (s *subscriber) stamp(b []byte) {
	now := s.clock.now()
	for {
		i := bytes.Index(b, sentKey)
		if i < 0 {
			return
		}
		b = b[i+len(sentKey):]
		var sent int64
		j := 0
		for ; j < len(b) && b[j] >= '0' && b[j] <= '9'; j++ {
			sent = sent*10 + int64(b[j]-'0')
		}
		b = b[j:]
		s.samples = append(s.samples, sample{sent: sent, took: now - sent})
	}
}

var (
	sentKey     = []byte(`"sent_ns":`)
	ssePrefixes = struct{ data, notice []byte }{[]byte("data: "), []byte("event: notice")}
	wsPrefixes  = struct{ events, position []byte }{[]byte(`{"type":"events"`), []byte(`{"position":`)}
)

// subscribers is a set of subscribers to one server.
type subscribers struct {
	list    []*subscriber
	closers []func()
	closing atomic.Bool
}

// subscribe opens n streams of every event to a, over SSE, WebSocket or gRPC,
// starting after position after (after the newest event when negative), and
// returns once every stream has its position: what is ingested from then on
// reaches every one. target, when > 0, is the events each waits for (see
// subscriber.target).
func subscribe(ctx context.Context, a *apiServer, keys *apiKeys, kind string, n int, after, target int64, stamped bool, clock monoClock) (*subscribers, error) {
	set := &subscribers{list: make([]*subscriber, n), closers: make([]func(), n)}
	idx := make(chan int, n)
	for i := range n {
		idx <- i
	}
	close(idx)
	var g errgroup
	for range min(n, 8) {
		g.Go(func() error {
			for i := range idx {
				s := &subscriber{stamped: stamped, clock: clock, target: target, reached: make(chan struct{}), done: make(chan struct{})}
				var err error
				switch kind {
				case viaWS:
					set.closers[i], err = s.dialWS(ctx, a.addr, keys.consumer, after, &set.closing)
				case viaGRPC:
					set.closers[i], err = s.dialGRPC(ctx, a.addr, keys.consumer, after, &set.closing)
				default:
					set.closers[i], err = s.dialSSE(ctx, a.addr, keys.consumer, after, &set.closing)
				}
				if err != nil {
					return fmt.Errorf("subscriber %d: %w", i, err)
				}
				set.list[i] = s
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		_ = set.close()
		return nil, err
	}
	return set, nil
}

// total returns the events every subscriber read, together.
func (set *subscribers) total() int64 {
	var t int64
	for _, s := range set.list {
		t += s.n.Load()
	}
	return t
}

// least returns the fewest events a subscriber read.
func (set *subscribers) least() int64 {
	least := int64(-1)
	for _, s := range set.list {
		if n := s.n.Load(); least < 0 || n < least {
			least = n
		}
	}
	return max(least, 0)
}

// err returns the first failure of a stream still open.
func (set *subscribers) err() error {
	for i, s := range set.list {
		select {
		case <-s.done:
			if s.err != nil {
				return fmt.Errorf("subscriber %d: %w", i, s.err)
			}
			return fmt.Errorf("subscriber %d: the stream ended", i)
		default:
		}
	}
	return nil
}

// waitAll waits until every subscriber read want events, failing when none
// arrives for stall or a stream fails.
func (set *subscribers) waitAll(ctx context.Context, want int64, stall time.Duration) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	last, since := set.total(), time.Now()
	for set.least() < want {
		if err := set.err(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		if n := set.total(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) > stall {
			return fmt.Errorf("subscribers stalled: the slowest has %d of %d events", set.least(), want)
		}
	}
	return nil
}

// close closes every stream, waits for the readers and returns the first
// failure one had before.
func (set *subscribers) close() error {
	set.closing.Store(true)
	for _, c := range set.closers {
		if c != nil {
			c()
		}
	}
	var first error
	for i, s := range set.list {
		if s == nil {
			continue
		}
		<-s.done
		if s.err != nil && first == nil {
			first = fmt.Errorf("subscriber %d: %w", i, s.err)
		}
	}
	return first
}

// samples returns every subscriber's latencies of the events sent in
// [from, to), sorted.
func (set *subscribers) samples(from, to int64) []time.Duration {
	var out []time.Duration
	for _, s := range set.list {
		for _, x := range s.samples {
			if x.sent >= from && x.sent < to {
				out = append(out, time.Duration(max(x.took, 0)))
			}
		}
	}
	slices.Sort(out)
	return out
}

// dialSSE opens GET /api/stream on a connection of its own and starts
// reading it: an HTTP/1.1 request written by hand, the response's chunks
// undone by net/http, the events counted line by line.
func (s *subscriber) dialSSE(ctx context.Context, addr, secret string, after int64, closing *atomic.Bool) (func(), error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	req := "GET /api/stream HTTP/1.1\r\nHost: " + addr + "\r\nAuthorization: Bearer " + secret + "\r\nAccept: text/event-stream\r\n"
	if after >= 0 {
		req += "Last-Event-ID: " + strconv.FormatInt(after, 10) + "\r\n"
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(conn, 32<<10)
	resp, err := func() (*http.Response, error) {
		if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
			return nil, err
		}
		return http.ReadResponse(br, nil)
	}()
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("open stream: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		_ = conn.Close()
		return nil, fmt.Errorf("open stream: %s: %s", resp.Status, b)
	}
	_ = conn.SetDeadline(time.Time{})
	go func() {
		defer close(s.done)
		if err := s.readSSE(resp.Body); err != nil && !closing.Load() {
			s.err = err
		}
	}()
	return func() { _ = conn.Close() }, nil
}

func (s *subscriber) readSSE(body io.Reader) error {
	r := bufio.NewReaderSize(body, 32<<10)
	notice := false
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("read stream: %w", err)
		}
		switch {
		case bytes.HasPrefix(line, ssePrefixes.data):
			if notice {
				return fmt.Errorf("stream notice: %s", bytes.TrimSpace(line[len(ssePrefixes.data):]))
			}
			if s.stamped {
				s.stamp(line)
			}
			s.got(1)
		case bytes.HasPrefix(line, ssePrefixes.notice):
			notice = true
		}
	}
}

// dialWS opens GET /api/ws, starts a session after position after with one
// subscription to every event, and starts reading it.
func (s *subscriber) dialWS(ctx context.Context, addr, secret string, after int64, closing *atomic.Bool) (func(), error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, "ws://"+addr+"/api/ws", &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + secret}},
	})
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	c.SetReadLimit(16 << 20)
	start := `{"type":"start"}`
	if after >= 0 {
		start = `{"type":"start","last_event_id":` + strconv.FormatInt(after, 10) + `}`
	}
	for _, m := range []struct{ send, want string }{
		{start, `{"type":"session"`},
		{`{"type":"subscribe","id":"all"}`, `{"type":"subscribed"`},
	} {
		if err := c.Write(dctx, websocket.MessageText, []byte(m.send)); err != nil {
			_ = c.CloseNow()
			return nil, fmt.Errorf("write %s: %w", m.send, err)
		}
		_, b, err := c.Read(dctx)
		if err == nil && !bytes.HasPrefix(b, []byte(m.want)) {
			err = fmt.Errorf("answered %s", b)
		}
		if err != nil {
			_ = c.CloseNow()
			return nil, fmt.Errorf("%s: %w", m.send, err)
		}
	}
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer close(s.done)
		if err := s.readWS(rctx, c); err != nil && !closing.Load() {
			s.err = err
		}
	}()
	return func() {
		stop()
		_ = c.CloseNow()
	}, nil
}

func (s *subscriber) readWS(ctx context.Context, c *websocket.Conn) error {
	var buf bytes.Buffer
	for {
		_, r, err := c.Reader(ctx)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		buf.Reset()
		if _, err := buf.ReadFrom(r); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		msg := buf.Bytes()
		if !bytes.HasPrefix(msg, wsPrefixes.events) {
			return errors.New("message: " + string(msg[:min(len(msg), 512)]))
		}
		if s.stamped {
			s.stamp(msg)
		}
		s.got(bytes.Count(msg, wsPrefixes.position))
	}
}
