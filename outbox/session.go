package outbox

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/txoutbox/txoutbox/internal/envelope"
)

// Session buffers the events of one unit of work — a web request or a
// background job — and writes them into the caller's transaction with Flush.
// It is safe for concurrent Publish from the goroutines of one request.
type Session struct {
	client      *Client
	actorID     string
	actorType   string
	jobID       string
	tenant      string
	traceparent string
	immediate   bool

	flushMu sync.Mutex // serializes Flush, so two flushes never write the same events
	mu      sync.Mutex // guards buffer and flushed
	buffer  []*Event
	// flushed: Flush wrote events since the last Committed or Rollback.
	flushed bool
}

// SessionOption configures a session.
type SessionOption func(*Session)

// WithTenant stamps every event of the session with a tenant id.
func WithTenant(tenant string) SessionOption {
	return func(s *Session) { s.tenant = tenant }
}

// WithTraceparent stamps every event of the session with a W3C traceparent,
// so the relay's delivery span links to the request that published it. An
// invalid value makes Publish fail with ErrInvalidTraceparent. The outbox
// middleware stores a request's traceparent header only when it is valid.
func WithTraceparent(traceparent string) SessionOption {
	return func(s *Session) { s.traceparent = traceparent }
}

// PublishImmediately makes each Publish write its event at once, in its own
// statement on the client's pool, for code that has no transaction. Such
// events are NOT atomic with any business write: prefer Flush in a
// transaction wherever there is one.
func PublishImmediately() SessionOption {
	return func(s *Session) { s.immediate = true }
}

func (c *Client) newSession(actorType, actorID, jobID string, opts []SessionOption) *Session {
	if jobID == "" {
		jobID = uuid.Must(uuid.NewV7()).String()
	}
	s := &Session{client: c, actorType: actorType, actorID: actorID, jobID: jobID}
	for _, o := range opts {
		o(s)
	}
	return s
}

// checkActorID checks an actor id the way the events API does; the error
// matches ErrInvalidActor.
func checkActorID(id string) error {
	if err := envelope.CheckActorID(id); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidActor, err)
	}
	return nil
}

// JobID returns the session's correlation id.
func (s *Session) JobID() string { return s.jobID }

// ActorID returns the id of the user, service or third party the session acts for.
func (s *Session) ActorID() string { return s.actorID }

// ActorType returns ActorUser, ActorService or ActorThirdParty.
func (s *Session) ActorType() string { return s.actorType }

// PublishOption configures one Publish.
type PublishOption func(*publishOptions)

type publishOptions struct {
	key, dedupe, causation string
	target                 Target
}

// WithKey overrides the ordering key, which defaults to the value at the
// topic's Key pointer in the data (/id unless the topic says otherwise).
func WithKey(key string) PublishOption {
	return func(o *publishOptions) { o.key = key }
}

// WithDedupeKey makes a second publish with the same key a no-op: within the
// session's buffer, and in the outbox table for as long as the first event's
// row is kept there.
func WithDedupeKey(key string) PublishOption {
	return func(o *publishOptions) { o.dedupe = key }
}

// WithCausation records the id of the event that caused this one.
func WithCausation(eventID string) PublishOption {
	return func(o *publishOptions) { o.causation = eventID }
}

// WithTarget scopes the event to a place: a collection, a project of a
// collection, or a layout of a project (see Target). The events API
// delivers it to the subscribers of that place and of the places above and
// below it. A target that skips a level, or has a level longer than
// MaxTargetBytes or that Postgres cannot store, makes Publish fail with a
// *TargetError.
func WithTarget(t Target) PublishOption {
	return func(o *publishOptions) { o.target = t }
}

// Publish validates an event of the session's default category and buffers
// it until Flush. action and entity may be spelled as in the topic file or in
// any common variant ("Created", "created"; "MyEntity", "my_entity",
// "myEntity"). data is any value encoding/json can marshal, or a
// json.RawMessage. An unknown topic (*topics.UnknownTopicError), data that
// fails the topic's schema (*topics.ValidationError), data that cannot be
// encoded (*EncodeError) or is too large (ErrEventTooLarge), an envelope
// field Postgres cannot store (*FieldError), and an invalid target
// (*TargetError), is refused and nothing is buffered.
func (s *Session) Publish(ctx context.Context, action, entity string, data any, opts ...PublishOption) error {
	return s.PublishCategory(ctx, "", action, entity, data, opts...)
}

// PublishCategory is Publish for a topic of another category than the
// registry's DefaultCategory.
func (s *Session) PublishCategory(ctx context.Context, category, action, entity string, data any, opts ...PublishOption) error {
	e, err := s.newEvent(category, action, entity, data, opts)
	if err != nil {
		return err
	}
	if s.immediate {
		if err := s.client.write(ctx, s.client.pool, []*Event{e}); err != nil {
			return err
		}
		s.client.commitHooks.run() // the statement committed on its own
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.DedupeKey != "" {
		for _, b := range s.buffer {
			if b.DedupeKey == e.DedupeKey {
				return nil
			}
		}
	}
	s.buffer = append(s.buffer, e)
	return nil
}

func (s *Session) newEvent(category, action, entity string, data any, opts []PublishOption) (*Event, error) {
	t, err := s.client.registry.Lookup(category, entity, action)
	if err != nil {
		return nil, err
	}
	raw, err := encode(data)
	if err != nil {
		return nil, &EncodeError{Topic: t.Name, Err: err}
	}
	if max := s.client.cfg.MaxEventBytes; len(raw) > max {
		return nil, fmt.Errorf("%w: %s data is %d bytes, the limit (Config.MaxEventBytes) is %d", ErrEventTooLarge, t.Name, len(raw), max)
	}
	key, err := t.Validate(raw)
	if err != nil {
		return nil, err
	}
	if err := checkActorID(s.actorID); err != nil {
		return nil, fmt.Errorf("outbox: publish %s: %s actor: %w", t.Name, s.actorType, err)
	}
	if s.traceparent != "" && !envelope.ValidTraceparent(s.traceparent) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidTraceparent, s.traceparent)
	}
	var o publishOptions
	for _, opt := range opts {
		opt(&o)
	}
	key = cmp.Or(o.key, key)
	for _, f := range [...]struct{ name, value string }{
		{"key", key}, {"dedupe key", o.dedupe}, {"tenant", s.tenant}, {"job id", s.jobID}, {"actor id", s.actorID},
	} {
		if reason := unstorable(f.value); reason != "" {
			return nil, &FieldError{Topic: t.Name, Field: f.name, Reason: reason}
		}
	}
	if err := envelope.CheckTarget(o.target.Collection, o.target.Project, o.target.Layout); err != nil {
		return nil, &TargetError{Topic: t.Name, Target: o.target, Reason: err.Error()}
	}
	if o.causation != "" {
		if _, err := uuid.Parse(o.causation); err != nil {
			return nil, fmt.Errorf("outbox: publish %s: causation id %q is not a UUID: %w", t.Name, o.causation, err)
		}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("outbox: event id: %w", err)
	}
	return &Event{
		ID:          id,
		Topic:       t.Name,
		Category:    t.Category,
		Entity:      t.Entity,
		Action:      t.Action,
		Data:        raw,
		ActorID:     s.actorID,
		ActorType:   s.actorType,
		JobID:       s.jobID,
		Source:      s.client.cfg.Source,
		Key:         key,
		Traceparent: s.traceparent,
		Tenant:      s.tenant,
		CausationID: o.causation,
		DedupeKey:   o.dedupe,
		Target:      o.target,
		Time:        time.Now(),
	}, nil
}

// encode marshals data, keeping a json.RawMessage's bytes as they are (after
// checking they are valid JSON) so what is stored is what was published.
func encode(data any) ([]byte, error) {
	var raw []byte
	switch d := data.(type) {
	case json.RawMessage:
		raw = d
	case []byte:
		raw = d
	default:
		b, err := json.Marshal(data)
		if err != nil {
			return nil, err
		}
		return b, nil
	}
	if !json.Valid(raw) {
		return nil, fmt.Errorf("data is not valid JSON")
	}
	return bytes.Clone(raw), nil
}

// Flush writes every buffered event into the outbox table inside tx, in one
// round trip, so the events commit or roll back with the caller's business
// writes. It never commits or rolls back tx: call Committed once tx has
// committed, so that an embedded relay delivers the events at once. Flush
// may be called again for events published later; with nothing buffered it
// does no I/O. On error the events stay buffered (tx is then aborted; roll
// it back).
func (s *Session) Flush(ctx context.Context, tx pgx.Tx) error {
	if tx == nil {
		return fmt.Errorf("outbox: flush: tx is nil")
	}
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	events := s.buffer[:len(s.buffer):len(s.buffer)]
	s.mu.Unlock()
	if len(events) == 0 {
		return nil
	}
	if err := s.client.write(ctx, tx, events); err != nil {
		return fmt.Errorf("outbox: flush %d events: %w", len(events), err)
	}
	s.mu.Lock()
	// Drop what was written, unless Rollback emptied the buffer meanwhile.
	if len(s.buffer) >= len(events) && s.buffer[0] == events[0] {
		s.buffer = s.buffer[len(events):]
	}
	s.flushed = true
	s.mu.Unlock()
	return nil
}

// Committed tells the session that the transaction its events were flushed
// into has committed. When Flush wrote events since the last Committed or
// Rollback, it runs the client's OnCommit hooks, once: an embedded relay
// then delivers the events at once rather than at its next poll. Call it
// after tx.Commit returns nil; InTx and the outbox middleware call it for
// you. Forgetting it loses nothing, the relay's next poll finds the events;
// calling it after a rollback costs the relay one poll that finds nothing.
//
//	if err := sess.Flush(ctx, tx); err != nil { ... }
//	if err := tx.Commit(ctx); err != nil { ... }
//	sess.Committed()
func (s *Session) Committed() {
	s.mu.Lock()
	flushed := s.flushed
	s.flushed = false
	s.mu.Unlock()
	if flushed {
		s.client.commitHooks.run()
	}
}

// Rollback drops the events published and not yet flushed, and forgets
// that any were flushed, so that Committed runs no hook for them. Call it
// when the unit of work fails, before or after Flush, so that a later Flush
// on the same session does not write its events.
func (s *Session) Rollback() {
	s.mu.Lock()
	s.buffer = nil
	s.flushed = false
	s.mu.Unlock()
}

// Unflushed returns copies of the events published and not yet flushed. The
// middleware uses it to report events a handler forgot to flush.
func (s *Session) Unflushed() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Event, len(s.buffer))
	for i, e := range s.buffer {
		out[i] = *e
	}
	return out
}

// Len returns the number of events published and not yet flushed.
func (s *Session) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.buffer)
}

// unstorable says why Postgres cannot store v as text, or "" when it can.
func unstorable(v string) string {
	switch {
	case strings.IndexByte(v, 0) >= 0:
		return "contains a NUL byte"
	case !utf8.ValidString(v):
		return "is not valid UTF-8"
	}
	return ""
}
