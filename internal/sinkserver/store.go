package sinkserver

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/txoutbox/txoutbox/internal/ingest"
)

// Event is an event as the server received and kept it.
type Event struct {
	// Seq numbers accepted events from 1 in the order they were stored.
	Seq        int64     `json:"seq"`
	ReceivedAt time.Time `json:"received_at"`
	Format     string    `json:"format"` // briteevents or cloudevents

	ID          string          `json:"id"`
	Topic       string          `json:"topic"`
	Category    string          `json:"category"`
	Entity      string          `json:"entity"`
	Action      string          `json:"action"`
	Key         string          `json:"key"`
	JobID       string          `json:"job_id,omitempty"`
	ActorID     string          `json:"actor_id,omitempty"`
	ActorType   string          `json:"actor_type,omitempty"`
	Source      string          `json:"source,omitempty"`
	Traceparent string          `json:"traceparent,omitempty"`
	Tenant      string          `json:"tenant,omitempty"`
	CausationID string          `json:"causation_id,omitempty"`
	Time        time.Time       `json:"time,omitzero"` // publish time, when the format carries it
	Data        json.RawMessage `json:"data"`
}

// Rejection is an event the server refused, or a post it refused before it
// could tell the events apart. The server keeps the last RejectionsHeld.
type Rejection struct {
	// Seq numbers rejections from 1, apart from events.
	Seq        int64     `json:"seq"`
	ReceivedAt time.Time `json:"received_at"`
	Format     string    `json:"format"` // briteevents or cloudevents
	// Rejection says what was refused and why: the status of the answer
	// (201 for a record of a bulk post that was taken in part), the index
	// of the record in a bulk post or batch, the event's id and topic, the
	// code (ValidationError, BadRequest, ...) and the error.
	ingest.Rejection
}

// RejectionsHeld is how many rejections the server keeps for the live page
// and [Server.Rejections].
const RejectionsHeld = 1000

// store keeps the last events in a ring and the last ids in a second, larger
// ring for duplicate detection. Callers hold mu.
type store struct {
	events  []Event // ring; events[(seq-1)%len] holds seq
	next    int64   // seq of the next event
	ids     []string
	idsNext int
	seen    map[string]struct{}
	notify  chan struct{} // closed and replaced on every append

	rejects    []Rejection // ring; rejects[(seq-1)%len] holds seq
	rejectNext int64
}

func newStore(capacity, dedupeWindow int) *store {
	return &store{
		events: make([]Event, capacity),
		next:   1,
		ids:    make([]string, dedupeWindow),
		seen:   make(map[string]struct{}, min(dedupeWindow, 1<<16)),
		notify: make(chan struct{}),

		rejects:    make([]Rejection, RejectionsHeld),
		rejectNext: 1,
	}
}

// addRejection stores r, assigning its Seq.
func (s *store) addRejection(r Rejection) Rejection {
	r.Seq = s.rejectNext
	s.rejects[(r.Seq-1)%int64(len(s.rejects))] = r
	s.rejectNext++
	return r
}

// rejectionsSince returns up to limit held rejections with seq > after,
// oldest first.
func (s *store) rejectionsSince(after int64, limit int) []Rejection {
	out := []Rejection{}
	oldest := max(1, s.rejectNext-int64(len(s.rejects)))
	for seq := max(after+1, oldest); seq < s.rejectNext && len(out) < limit; seq++ {
		out = append(out, s.rejects[(seq-1)%int64(len(s.rejects))])
	}
	return out
}

func (s *store) has(id string) bool {
	_, ok := s.seen[id]
	return ok
}

// add stores ev, assigning its Seq, and remembers its id.
func (s *store) add(ev Event) Event {
	ev.Seq = s.next
	s.events[(s.next-1)%int64(len(s.events))] = ev
	s.next++
	if old := s.ids[s.idsNext]; old != "" {
		delete(s.seen, old)
	}
	s.ids[s.idsNext] = ev.ID
	s.idsNext = (s.idsNext + 1) % len(s.ids)
	s.seen[ev.ID] = struct{}{}
	return ev
}

// wake tells waiting streams that events or rejections were added.
func (s *store) wake() {
	close(s.notify)
	s.notify = make(chan struct{})
}

// oldest is the seq of the oldest event held.
func (s *store) oldest() int64 {
	return max(1, s.next-int64(len(s.events)))
}

// since returns up to limit held events with seq > after, oldest first,
// matching topic when it is not empty.
func (s *store) since(after int64, limit int, topic string) []Event {
	out := []Event{}
	for seq := max(after+1, s.oldest()); seq < s.next && len(out) < limit; seq++ {
		ev := s.events[(seq-1)%int64(len(s.events))]
		if topic == "" || ev.Topic == topic {
			out = append(out, ev)
		}
	}
	return out
}

// latencies returns publish→receipt durations of the held events that carry
// a publish time, sorted.
func (s *store) latencies() []time.Duration {
	var ds []time.Duration
	for seq := s.oldest(); seq < s.next; seq++ {
		ev := &s.events[(seq-1)%int64(len(s.events))]
		if !ev.Time.IsZero() {
			ds = append(ds, ev.ReceivedAt.Sub(ev.Time))
		}
	}
	slices.Sort(ds)
	return ds
}

// percentile of sorted durations, p in [0,1].
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted)) + 0.5)
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

// faults are the injected failures still to come.
type faults struct {
	requests   int
	status     int
	retryAfter time.Duration
	records    int
	recordCode string
}
