package eventsapi

import (
	"context"
	"sync"
	"time"

	"github.com/txoutbox/txoutbox/internal/ingest"
	"github.com/txoutbox/txoutbox/internal/wire"
)

// Rejections are kept for people watching what arrives: the live page shows
// them among the events, and Server.Rejections returns them.
const (
	// RejectionsHeld is how many rejections a Server keeps, the newest.
	RejectionsHeld = 1000
	// rejectionsOnOpen is how many of them a stream asking for rejections
	// gets when it opens.
	rejectionsOnOpen = 100
)

// Rejection is a post the ingest routes refused, or one event of it. Only
// principals bound to no tenant see rejections: one may concern any tenant.
type Rejection struct {
	// Seq numbers a Server's rejections from 1, apart from event positions.
	Seq        int64     `json:"seq"`
	ReceivedAt time.Time `json:"received_at"`
	// Format is the wire format of the post: briteevents or cloudevents.
	Format string `json:"format"`
	// Sender names the key that posted it ("development" without keys).
	Sender string `json:"sender,omitempty"`
	// Status is the HTTP status of the answer: 400, 413 or 415 for a post
	// refused unread, 403 for one with events of another tenant, 422 for
	// events failing validation, 201 for a record of a bc-events bulk post
	// taken in part.
	Status int `json:"status"`
	// Index is the event's place in a bulk post or batch; nil for a single
	// event, or a post refused as a whole.
	Index *int `json:"index,omitempty"`
	// ID and Topic are the event's, when known.
	ID    string `json:"id,omitempty"`
	Topic string `json:"topic,omitempty"`
	// Code is the error code of the answer (ValidationError, BadRequest,
	// ...) and Error why.
	Code  string `json:"code"`
	Error string `json:"error"`
}

// rejections is a server's ring of the last RejectionsHeld rejections.
type rejections struct {
	mu     sync.Mutex
	ring   []Rejection // ring[(seq-1)%len] holds seq
	next   int64       // seq of the next rejection
	notify chan struct{}
}

func newRejections() *rejections {
	return &rejections{ring: make([]Rejection, RejectionsHeld), next: 1, notify: make(chan struct{})}
}

// add keeps rs, numbering them, and wakes the streams waiting for them.
func (r *rejections) add(rs []Rejection) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range rs {
		rs[i].Seq = r.next
		r.ring[(r.next-1)%int64(len(r.ring))] = rs[i]
		r.next++
	}
	close(r.notify)
	r.notify = make(chan struct{})
}

// since returns up to limit held rejections with Seq > after, oldest first,
// and a channel closed when more are added.
func (r *rejections) since(after int64, limit int) ([]Rejection, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Rejection
	oldest := max(1, r.next-int64(len(r.ring)))
	for seq := max(after+1, oldest); seq < r.next && len(out) < limit; seq++ {
		out = append(out, r.ring[(seq-1)%int64(len(r.ring))])
	}
	return out, r.notify
}

// last is the Seq of the newest rejection, 0 when there is none.
func (r *rejections) last() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next - 1
}

// Rejections returns up to limit of the rejections the server holds (the
// last RejectionsHeld) with Seq > after, oldest first.
func (s *Server) Rejections(after int64, limit int) []Rejection {
	rs, _ := s.rejections.since(after, limit)
	return rs
}

// recordRejections logs what the ingest routes refused, naming the key,
// keeps it for the live page and tells Config.RejectFunc.
func (s *Server) recordRejections(ctx context.Context, format wire.Format, irs []ingest.Rejection) {
	sender := ""
	if p := principalFrom(ctx); p != nil {
		sender = p.Name
	}
	now := time.Now().UTC()
	rs := make([]Rejection, len(irs))
	for i := range irs {
		ir := &irs[i]
		s.cfg.Logger.Warn("events API: rejected", append([]any{"key", sender, "format", format}, ir.LogAttrs()...)...)
		rs[i] = Rejection{ReceivedAt: now, Format: string(format), Sender: sender, Status: ir.Status,
			Index: ir.Index, ID: ir.ID, Topic: ir.Topic, Code: ir.Code, Error: ir.Error}
	}
	s.rejections.add(rs)
	if s.cfg.RejectFunc != nil {
		s.cfg.RejectFunc(rs)
	}
}
