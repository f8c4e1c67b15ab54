package listener

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/txoutbox/txoutbox/eventsapi"
)

// ErrInvalidConfig is wrapped by the errors of New about its Config.
var ErrInvalidConfig = errors.New("listener: invalid config")

// Defaults of Config.
const (
	BackoffBaseDefault  = 100 * time.Millisecond
	BackoffMaxDefault   = 30 * time.Second
	DedupeWindowDefault = 10_000
	// IdleTimeoutDefault is how long a stream may stay silent (no event,
	// no heartbeat) before the listener takes it for dead and reconnects.
	// The server sends a heartbeat every 15 s by default.
	IdleTimeoutDefault = 45 * time.Second
	// MaxEventBytes bounds one event as the stream carries it.
	MaxEventBytes = 16 << 20
)

// Handler handles one event. An error makes the listener reconnect, after a
// backoff, from the last event a handler finished, so the event comes
// again. Its context ends when Run's does; the time it takes is not taken
// for silence of the stream (IdleTimeout).
type Handler func(ctx context.Context, ev *eventsapi.Event) error

// Config configures a Listener.
type Config struct {
	// URL is the events API's base URL, e.g. http://127.0.0.1:8642.
	// Required.
	URL string
	// Filter selects the events, as the server's subscription filters do.
	// Only its first Include and Exclude selectors can be sent over the
	// stream's query parameters; more is a config error.
	Filter eventsapi.Filter
	// Token is sent as "Authorization: Bearer <Token>" when not empty. It
	// is never logged.
	Token string
	// After is the position to start after: where a previous run got to
	// (see Listener.Position). Zero starts at the newest event.
	After int64
	// HTTPClient makes the requests. It must not set a Timeout, which would
	// cut the stream: the listener watches the stream with IdleTimeout.
	// Defaults to a client of its own.
	HTTPClient *http.Client
	// BackoffBase and BackoffMax bound the wait before a reconnection:
	// random in [0, min(BackoffMax, base·2^attempt)] ("full jitter"), base
	// being BackoffBase or the server's retry hint (the stream's "retry:"
	// field, 2 s from this server) when larger, and attempt counting the
	// failures in a row (a connection that delivered an event resets it).
	// Default to BackoffBaseDefault and BackoffMaxDefault.
	BackoffBase, BackoffMax time.Duration
	// IdleTimeout: see IdleTimeoutDefault.
	IdleTimeout time.Duration
	// DedupeWindow is how many recent event ids are remembered to drop an
	// event delivered again. Defaults to DedupeWindowDefault.
	DedupeWindow int
	// Logger receives connection problems and notices. Defaults to
	// slog.Default().
	Logger *slog.Logger
}

// Listener follows the events API's stream and calls its Handler for every
// event, one at a time, in stream order.
//
// Delivery: every event the server stores and the filter selects reaches
// the handler, in position order; a reconnection resumes after the last
// event a handler finished. An event is handed to the handler again only if
// its handler failed, or when a new process starts from a position saved
// before its last event was finished — at least once across restarts,
// exactly once within one Listener's life (ids seen recently are dropped).
// Save Position where the handler's effects are saved, in the same
// transaction, to make restarts exact too.
//
// What the server no longer holds cannot reach the handler: when the
// position resumed from is older than the oldest event the server keeps
// (retention removed the ones after it), or beyond its newest (a
// development server restarted with an empty store), the server says so in
// a gap notice, which the listener logs as a warning, and the stream goes
// on from the oldest event held. After a reset, positions start over and
// the listener follows them.
type Listener struct {
	cfg     Config
	handler Handler
	query   url.Values
	stream  *url.URL

	mu       sync.Mutex
	position int64
	// known: position is where to resume, even 0 (a stream opened on an
	// empty store); not known, the stream starts at the newest event.
	known bool
	seen  map[string]struct{}
	ring  []string
	ringI int
}

// New returns a Listener. Call Run to start it.
func New(cfg *Config, h Handler) (*Listener, error) {
	if cfg == nil || h == nil {
		return nil, fmt.Errorf("%w: a Config and a Handler are required", ErrInvalidConfig)
	}
	c := *cfg
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return nil, fmt.Errorf("%w: listener.Config.URL is empty", ErrInvalidConfig)
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return nil, fmt.Errorf("%w: listener.Config.URL: want an http or https URL, e.g. http://127.0.0.1:8642", ErrInvalidConfig)
	case u.User != nil:
		return nil, fmt.Errorf("%w: listener.Config.URL: credentials go in Token, not in the URL", ErrInvalidConfig)
	case len(c.Filter.Include) > 1 || len(c.Filter.Exclude) > 1:
		return nil, fmt.Errorf("%w: listener.Config.Filter: at most one include and one exclude selector", ErrInvalidConfig)
	case c.After < 0:
		return nil, fmt.Errorf("%w: listener.Config.After: %d is negative", ErrInvalidConfig, c.After)
	case c.BackoffBase < 0 || c.BackoffMax < 0 || c.IdleTimeout < 0 || c.DedupeWindow < 0:
		return nil, fmt.Errorf("%w: listener.Config: negative duration or window", ErrInvalidConfig)
	case c.HTTPClient != nil && c.HTTPClient.Timeout > 0:
		return nil, fmt.Errorf("%w: listener.Config.HTTPClient: a client Timeout would cut the stream; leave it zero (IdleTimeout watches the stream)", ErrInvalidConfig)
	}
	if _, err := eventsapi.Compile(c.Filter); err != nil {
		return nil, fmt.Errorf("%w: listener.Config.Filter: %w", ErrInvalidConfig, err)
	}
	c.BackoffBase = cmp.Or(c.BackoffBase, BackoffBaseDefault)
	c.BackoffMax = cmp.Or(c.BackoffMax, BackoffMaxDefault)
	c.IdleTimeout = cmp.Or(c.IdleTimeout, IdleTimeoutDefault)
	c.DedupeWindow = cmp.Or(c.DedupeWindow, DedupeWindowDefault)
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	stream := u.JoinPath("api", "stream")
	return &Listener{
		cfg:      c,
		handler:  h,
		query:    filterQuery(c.Filter),
		stream:   stream,
		position: c.After,
		known:    c.After > 0,
		seen:     make(map[string]struct{}, c.DedupeWindow),
		ring:     make([]string, c.DedupeWindow),
	}, nil
}

// filterQuery writes f as the stream's query parameters.
func filterQuery(f eventsapi.Filter) url.Values {
	q := url.Values{}
	add := func(prefix string, s eventsapi.Selector) {
		for name, ps := range map[string][]string{
			"topic": s.Topic, "category": s.Category, "entity": s.Entity, "action": s.Action,
			"key": s.Key, "actor_id": s.ActorID, "actor_type": s.ActorType, "job_id": s.JobID,
			"causation_id": s.CausationID,
		} {
			for _, p := range ps {
				q.Add(prefix+name, p)
			}
		}
		for name, level := range map[string]string{"collection": s.Target.Collection, "project": s.Target.Project, "layout": s.Target.Layout} {
			if level != "" {
				q.Set(prefix+name, level)
			}
		}
	}
	if len(f.Include) == 1 {
		add("", f.Include[0])
	}
	if len(f.Exclude) == 1 {
		add("exclude_", f.Exclude[0])
	}
	if f.Tenant != "" {
		q.Set("tenant", f.Tenant)
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.Format(time.RFC3339Nano))
	}
	return q
}

// Position returns where the stream was handled up to: the position of the
// last event a handler finished, or a later one when the server said the
// events up to it are not for this listener (the filter passed over them)
// or that its stream starts there. It is the place to start the next run
// from (Config.After).
func (l *Listener) Position() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.position
}

// StatusError is a stream request the server refused.
type StatusError struct {
	StatusCode int
	Message    string // the server's error message, if it sent one
	// RetryAfter is the server's Retry-After on a 429 or 503: Run waits at
	// least that long (plus up to half again, at random) before it
	// reconnects.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("events API answered %d %s", e.StatusCode, http.StatusText(e.StatusCode))
	}
	return fmt.Sprintf("events API answered %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// retryAfter reads the Retry-After of a 429 or 503 answer, in seconds or
// as an HTTP date; 0 when there is none.
func retryAfter(resp *http.Response) time.Duration {
	if resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable {
		return 0
	}
	v := strings.TrimSpace(resp.Header.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		return time.Duration(max(secs, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// permanent reports whether retrying the request cannot help: the server
// refused the credentials or the filter.
func (e *StatusError) permanent() bool {
	switch e.StatusCode {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
		return true
	}
	return false
}

// Run follows the stream until ctx ends, reconnecting by itself. It returns
// ctx's error, or an error that retrying cannot fix: the server refusing
// the credentials or the filter (*StatusError, 400, 401, 403 or 404).
func (l *Listener) Run(ctx context.Context) error {
	failures := 0
	retry := time.Duration(0) // the server's retry hint
	for {
		got, err := l.follow(ctx, &retry)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var se *StatusError
		if errors.As(err, &se) && se.permanent() {
			return err
		}
		if got {
			failures = 0
		}
		wait := l.backoff(failures, retry)
		if se != nil && se.RetryAfter > 0 {
			// The server said when to come back; the jitter on top keeps
			// the listeners it turned away from coming back together.
			wait = min(max(wait, se.RetryAfter+rand.N(se.RetryAfter/2+1)), max(l.cfg.BackoffMax, se.RetryAfter))
		}
		failures++
		l.cfg.Logger.Warn("events listener: stream ended; reconnecting", "error", err, "after", wait.Round(time.Millisecond), "position", l.Position())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// backoff returns the wait before a reconnection after failures failures
// in a row, the server's retry hint being retry (see Config.BackoffBase).
func (l *Listener) backoff(failures int, retry time.Duration) time.Duration {
	return fullJitter(max(l.cfg.BackoffBase, retry), l.cfg.BackoffMax, failures)
}

// fullJitter is a random wait in [0, min(maxWait, base·2^attempt)].
func fullJitter(base, maxWait time.Duration, attempt int) time.Duration {
	ceiling := maxWait
	if attempt < 30 {
		ceiling = min(maxWait, base<<attempt)
	}
	return rand.N(ceiling + 1)
}

// follow opens the stream once and handles its events until it ends. It
// reports whether it handled an event, so that Run resets its backoff.
func (l *Listener) follow(ctx context.Context, retry *time.Duration) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	u := *l.stream
	q := make(url.Values, len(l.query)+1)
	for k, v := range l.query {
		q[k] = v
	}
	l.mu.Lock()
	pos, known := l.position, l.known
	l.mu.Unlock()
	if known {
		q.Set("last_event_id", strconv.FormatInt(pos, 10))
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if known {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(pos, 10))
	}
	if l.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+l.cfg.Token)
	}
	resp, err := l.cfg.HTTPClient.Do(req)
	if err != nil {
		return false, fmt.Errorf("connect to the events API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, &StatusError{StatusCode: resp.StatusCode, Message: errorMessage(resp.Body), RetryAfter: retryAfter(resp)}
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return false, fmt.Errorf("events API answered Content-Type %q, want text/event-stream", ct)
	}

	// A watchdog cancels the request when the stream stays silent longer
	// than IdleTimeout; every read resets it, and it waits while a handler
	// runs (the server is not silent then: the listener is not reading).
	alive := make(chan struct{}, 1)
	var handling atomic.Bool
	go func() {
		t := time.NewTimer(l.cfg.IdleTimeout)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-alive:
				t.Reset(l.cfg.IdleTimeout)
			case <-t.C:
				if handling.Load() {
					t.Reset(l.cfg.IdleTimeout)
					continue
				}
				l.cfg.Logger.Warn("events listener: stream silent; reconnecting", "idle", l.cfg.IdleTimeout)
				cancel()
				return
			}
		}
	}()
	rd := newSSEReader(&aliveReader{r: resp.Body, alive: alive}, MaxEventBytes)
	got := false
	for opening := true; ; opening = false {
		m, err := rd.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the events API closed the stream")
			}
			return got, err
		}
		if m.retry > 0 {
			*retry = time.Duration(m.retry) * time.Millisecond
		}
		switch {
		case m.event == "notice":
			l.notice(m.data)
		case m.event != "" && m.event != "message":
			// Not an event of the protocol: passed over.
		case len(m.data) > 0:
			handling.Store(true)
			err := l.deliver(ctx, m.data)
			handling.Store(false)
			select {
			case alive <- struct{}{}:
			default:
			}
			if err != nil {
				return got, err
			}
			got = true
		case m.id != "":
			// An id without data: the position the stream starts after (its
			// opening), or one the filter passed over events up to.
			if pos, err := strconv.ParseInt(m.id, 10, 64); err == nil && pos >= 0 {
				l.reached(pos, opening)
			}
		}
	}
}

// reached records that the stream was handled up to pos: the events up to
// it were handled or are not for this listener. The position only grows,
// except at a stream's opening, which is where the server starts the
// stream: lower than asked after a reset, when positions start over.
func (l *Listener) reached(pos int64, opening bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if opening || pos > l.position {
		l.position, l.known = pos, true
	}
}

// errorMessage reads the message of an error answer, bounded.
func errorMessage(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 4<<10))
	var body struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &body) == nil && body.Error.Message != "" {
		return body.Error.Message
	}
	return strings.TrimSpace(string(b))
}

// notice logs what the server said about the stream.
func (l *Listener) notice(data []byte) {
	var n struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(data, &n)
	level := slog.LevelInfo
	if n.Code == "gap" || n.Code == "slow_consumer" {
		level = slog.LevelWarn
	}
	l.cfg.Logger.Log(context.Background(), level, "events listener: server notice", "code", n.Code, "message", n.Message)
}

// deliver decodes one event and hands it to the handler unless it was
// handled before.
func (l *Listener) deliver(ctx context.Context, data []byte) error {
	var ev eventsapi.Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return fmt.Errorf("decode event: %w", err)
	}
	l.mu.Lock()
	_, dup := l.seen[ev.ID]
	stale := ev.Position <= l.position
	l.mu.Unlock()
	if dup || stale {
		return nil
	}
	if err := l.handler(ctx, &ev); err != nil {
		return fmt.Errorf("handler: event %s (position %d): %w", ev.ID, ev.Position, err)
	}
	l.mu.Lock()
	l.position, l.known = ev.Position, true
	if old := l.ring[l.ringI]; old != "" {
		delete(l.seen, old)
	}
	l.ring[l.ringI] = ev.ID
	l.ringI = (l.ringI + 1) % len(l.ring)
	l.seen[ev.ID] = struct{}{}
	l.mu.Unlock()
	return nil
}

// aliveReader signals alive on every read that returns data.
type aliveReader struct {
	r     io.Reader
	alive chan<- struct{}
}

func (a *aliveReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if n > 0 {
		select {
		case a.alive <- struct{}{}:
		default:
		}
	}
	return n, err
}
