package outboxtest

import (
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/outbox"
)

// TB is the part of *testing.T the assertions use. *testing.T, *testing.B
// and *testing.F satisfy it; so can a fake that records the failure, for
// testing helpers built on these assertions. After Fatalf an assertion
// returns at once (with nil results), so a fake need not stop the goroutine.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// Querier runs the assertions' query with pgx's Exec, Query and QueryRow.
// pgx.Tx, *pgx.Conn, *pgxpool.Conn and *pgxpool.Pool satisfy it: pass the
// transaction a test flushed into to see its events before commit, or the
// pool to see committed events only. It is the one executor interface of the
// outbox's SQL layer, also named relay.Executor.
type Querier = outboxsql.DB

// Want describes the events an assertion looks for. Every field that is set
// must match and zero fields match anything, so Want{} matches every event;
// a Want without a Topic matches events of any topic.
type Want struct {
	// Topic is the full topic name, e.g. billing.InvoiceCreated.
	Topic string

	// Key is the ordering key: the value at the topic's Key pointer in the
	// data, or what outbox.WithKey set.
	Key string

	// ActorType is outbox.ActorUser, outbox.ActorService or
	// outbox.ActorThirdParty; any other value is a mistake and fails the test.
	ActorType string

	// ActorID is the user, service or third party the session acted for.
	ActorID string

	// JobID is the session's correlation id. Matching on it scopes an
	// assertion to one request or job when other tests share the database.
	JobID string

	// Tenant, Source, CausationID and DedupeKey match the envelope fields of
	// the same names: outbox.WithTenant, the client's Config.Source,
	// outbox.WithCausation and outbox.WithDedupeKey.
	Tenant      string
	Source      string
	CausationID string
	DedupeKey   string

	// Target, when not zero, is the event's whole target
	// (outbox.WithTarget): every level, named or not, must be equal.
	Target outbox.Target

	// Data is a JSON subset the event's data must contain: each object
	// member it names, with a matching value, recursively. Arrays must have
	// the same length and match element by element; numbers compare by
	// value, so 1250 matches 1250.0. A json.RawMessage or []byte is JSON
	// text; any other value is encoded with encoding/json, so a struct's zero
	// fields must match too (use a map, or omitempty, to leave them out).
	Data any

	// DataFunc is called with the data of an event that matches every other
	// field; an error means no match and is shown in the failure message.
	// Use it for what a subset cannot say, e.g. unmarshal into the event's
	// type and check a computed field. It may be called more than once for
	// an event, so it should not count or record calls.
	DataFunc func(data json.RawMessage) error
}

// RequireOpts says where the assertions read events. A nil *RequireOpts
// reads the outbox table, txoutbox_events, on the connection's search_path,
// which is where outbox.Migrate with a nil config creates it.
type RequireOpts struct {
	// Schema holds the outbox table: the value of the client's
	// outbox.Config.Schema. Defaults to the connection's search_path.
	Schema string
}

// RequirePublished fails t unless exactly one event in the outbox table
// matches want, and returns that event for further checks.
//
//	ev := outboxtest.RequirePublished(ctx, t, tx, outboxtest.Want{
//		Topic: "billing.InvoiceCreated",
//		Key:   inv.ID,
//		Data:  map[string]any{"status": "open"},
//	}, nil)
//
// db decides what is visible: the test's transaction shows events flushed
// into it and not yet committed; a pool shows committed events. More than
// one match fails too, since which one to return would be a guess: narrow
// want (by Key or JobID) or use RequirePublishedMany. The failure message
// lists the events the table holds and why those of the topic differ.
func RequirePublished(ctx context.Context, t TB, db Querier, want Want, opts *RequireOpts) *outbox.Event {
	t.Helper()
	r, w, found, ok := find(ctx, t, "RequirePublished", db, want, opts)
	switch {
	case !ok:
	case len(found) == 1:
		return found[0]
	case len(found) == 0:
		r.failMissing(ctx, w)
	default:
		t.Fatalf("outboxtest: %s match %s, want exactly one (narrow the Want, e.g. by Key or JobID, or use RequirePublishedMany):\n%s",
			eventCount(len(found)), w, list(found, len(found), nil))
	}
	return nil
}

// RequireNotPublished fails t if any event in the outbox table matches
// want: RequireNotPublished(ctx, t, tx, Want{Topic: "billing.InvoicePaid"},
// nil) after a refused payment, or Want{JobID: id} for a request that must
// have published nothing at all.
func RequireNotPublished(ctx context.Context, t TB, db Querier, want Want, opts *RequireOpts) {
	t.Helper()
	_, w, found, ok := find(ctx, t, "RequireNotPublished", db, want, opts)
	if ok && len(found) > 0 {
		t.Fatalf("outboxtest: want no event matching %s, found %d:\n%s", w, len(found), list(found, len(found), nil))
	}
}

// find returns the events in the table that match want; ok is false when t
// has been failed.
func find(ctx context.Context, t TB, fn string, db Querier, want Want, opts *RequireOpts) (r *reader, w *compiled, found []*outbox.Event, ok bool) {
	t.Helper()
	if r, ok = newReader(t, fn, db, opts); !ok {
		return nil, nil, nil, false
	}
	w, err := compile(want)
	if err != nil {
		t.Fatalf("outboxtest: %s: %v", fn, err)
		return nil, nil, nil, false
	}
	events, ok := r.read(ctx, w.topics())
	if !ok {
		return nil, nil, nil, false
	}
	for _, e := range events {
		if w.matches(e) {
			found = append(found, e)
		}
	}
	return r, w, found, true
}

// RequirePublishedMany fails t unless the events of the topics named in want
// are, in insert order, exactly want: as many, in that order, each matching
// its Want. An event of those topics that want does not list fails the test,
// so an event published twice must be listed twice; events of other topics
// are ignored, unless a Want has no Topic, which brings every event in. It
// returns the events in want's order.
//
// Insert order is the order of Flush (and, within one Flush, of Publish).
// Across transactions it is the order the flushes ran, not the order of
// commit.
func RequirePublishedMany(ctx context.Context, t TB, db Querier, want []Want, opts *RequireOpts) []*outbox.Event {
	t.Helper()
	r, ok := newReader(t, "RequirePublishedMany", db, opts)
	if !ok {
		return nil
	}
	if len(want) == 0 {
		t.Fatalf("outboxtest: RequirePublishedMany: want is empty (to require that nothing was published, use RequireNotPublished with Want{})")
		return nil
	}
	ws, ok := compileAll(t, "RequirePublishedMany", want)
	if !ok {
		return nil
	}
	found, ok := r.read(ctx, topicsOf(ws))
	if !ok {
		return nil
	}
	if !matchAll(ws, found) {
		t.Fatalf("outboxtest: want %s of %s in insert order, found %d:\n%s",
			eventCount(len(ws)), describeTopics(ws), len(found), listSequence(ws, found))
		return nil
	}
	return found
}

// RequireUnflushed fails t unless the events sess has buffered and not yet
// flushed are exactly want, in publish order, and returns them. It needs no
// database, so code that publishes can be tested without one: build the
// client with outbox.New(nil, registry, cfg), hand the session to the code,
// then check what it published. An empty want requires an empty buffer.
func RequireUnflushed(t TB, sess *outbox.Session, want []Want) []*outbox.Event {
	t.Helper()
	if sess == nil {
		t.Fatalf("outboxtest: RequireUnflushed: session is nil")
		return nil
	}
	ws, ok := compileAll(t, "RequireUnflushed", want)
	if !ok {
		return nil
	}
	buffered := sess.Unflushed()
	found := make([]*outbox.Event, len(buffered))
	for i := range buffered {
		found[i] = &buffered[i]
	}
	if !matchAll(ws, found) {
		t.Fatalf("outboxtest: want %s unflushed, the session holds %d:\n%s",
			eventCount(len(ws)), len(found), listSequence(ws, found))
		return nil
	}
	return found
}

// matchAll reports whether events match ws one to one, in order.
func matchAll(ws []*compiled, events []*outbox.Event) bool {
	if len(events) != len(ws) {
		return false
	}
	for i, w := range ws {
		if !w.matches(events[i]) {
			return false
		}
	}
	return true
}

func compileAll(t TB, fn string, want []Want) ([]*compiled, bool) {
	t.Helper()
	ws := make([]*compiled, len(want))
	for i, w := range want {
		c, err := compile(w)
		if err != nil {
			t.Fatalf("outboxtest: %s: want[%d]: %v", fn, i, err)
			return nil, false
		}
		ws[i] = c
	}
	return ws, true
}

// topicsOf returns the topics ws names, or nil when a Want has no topic and
// every event counts.
func topicsOf(ws []*compiled) []string {
	var topics []string
	for _, w := range ws {
		if w.Topic == "" {
			return nil
		}
		topics = append(topics, w.Topic)
	}
	return topics
}

func describeTopics(ws []*compiled) string {
	topics := topicsOf(ws)
	if topics == nil {
		return "any topic"
	}
	var uniq []string
	for _, tp := range topics {
		if !slices.Contains(uniq, tp) {
			uniq = append(uniq, tp)
		}
	}
	return strings.Join(uniq, ", ")
}
