package eventsapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// noticeTimeout bounds the write of a last notice to a stream that ends.
const noticeTimeout = time.Second

// serveStream serves GET /api/stream to p: server-sent events, as
// PROTOCOL.md describes.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request, p *Principal) {
	q := r.URL.Query()
	f, err := FilterFromQuery(q)
	if err != nil {
		writeSubscribeError(w, http.StatusBadRequest, codeInvalidFilter, err.Error())
		return
	}
	if err := scopeFilter(p, &f); err != nil {
		writeSubscribeError(w, http.StatusForbidden, codeForbidden, err.Error())
		return
	}
	m, err := Compile(f)
	if err != nil {
		writeSubscribeError(w, http.StatusBadRequest, codeInvalidFilter, err.Error())
		return
	}
	var after *int64
	if v, name := r.Header.Get("Last-Event-ID"), "Last-Event-ID"; v != "" || q.Has("last_event_id") {
		if v == "" {
			v, name = q.Get("last_event_id"), "last_event_id"
		}
		pos, err := parsePosition(name, v)
		if err != nil {
			writeSubscribeError(w, http.StatusBadRequest, codeBadRequest, err.Error())
			return
		}
		after = &pos
	}
	// Rejections go to principals that see every tenant: one may concern
	// any tenant. A tenant-bound principal asking gets the events alone.
	var rejected bool
	if v := q.Get("rejections"); v != "" {
		want, err := strconv.ParseBool(v)
		if err != nil {
			writeSubscribeError(w, http.StatusBadRequest, codeBadRequest, fmt.Sprintf("rejections: %q, want true or false", v))
			return
		}
		rejected = want && p.Tenant == ""
	}
	if err := s.hub.acquire(); err != nil {
		s.admitError(w, err)
		return
	}
	defer s.hub.release()

	ctx, cancel := s.streamContext(r.Context())
	defer cancel()
	cur, err := s.hub.openCursor(ctx, after)
	if err != nil {
		if s.ctx.Err() != nil {
			writeSubscribeError(w, http.StatusServiceUnavailable, codeShutdown, "the server is shutting down; reconnect")
			return
		}
		s.cfg.Logger.Error("events API: open a stream", "error", err)
		writeSubscribeError(w, http.StatusServiceUnavailable, codeUnavailable, "the event store is unavailable; retry later")
		return
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // proxies: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	// The opening id gives a client that connected without one the position
	// it starts from, so that reconnecting before the first event misses
	// nothing.
	sw := &sseWriter{w: w, rc: http.NewResponseController(w), timeout: s.cfg.WriteTimeout, bufs: &s.hub.bufs}
	sw.grab()
	sw.buf = append(sw.buf, "retry: 2000\n"...)
	sw.id(cur.pos)
	sw.buf = append(sw.buf, '\n')
	if sw.flush() != nil {
		return
	}

	sel := selectionOf(m)
	batch := make([]entry, 0, deliverBatch)
	heartbeat := time.NewTicker(s.cfg.Heartbeat)
	defer heartbeat.Stop()
	wrote := false // since the last heartbeat tick
	// The rejections sent so far, and a channel closed when more come (nil,
	// never closed, when the stream does not carry them).
	var rjSeq int64
	var rjWait <-chan struct{}
	if rejected {
		rjSeq = max(0, s.rejections.last()-rejectionsOnOpen)
	}
	for {
		rjMore := false // more rejections than a batch are waiting
		if rejected {
			var rjs []Rejection
			rjs, rjWait = s.rejections.since(rjSeq, deliverBatch)
			for i := range rjs {
				sw.rejection(&rjs[i])
				rjSeq = rjs[i].Seq
			}
			rjMore = len(rjs) == deliverBatch
		}
		var wait <-chan struct{}
		var g *gap
		batch, wait, g, err = cur.next(ctx, sel, batch)
		if g != nil {
			sw.notice(codeGap, g.message())
		}
		for _, e := range batch {
			sw.event(e)
		}
		if len(sw.buf) > 0 || len(batch) > 0 { // events, a gap, rejections
			if sw.flush() != nil {
				return
			}
			wrote = true
		}
		switch {
		case errors.Is(err, errSlowConsumer):
			s.cfg.Logger.Warn("events API: stream too slow, disconnected", "principal", p.Name, "remote", r.RemoteAddr, "position", cur.pos, "error", err)
			sw.last(codeSlowConsumer, "this stream fell too far behind the newest events and is closed; reconnect to resume from the last event received: "+err.Error())
			return
		case err != nil && s.ctx.Err() != nil:
			sw.last(codeShutdown, "the server is shutting down; reconnect")
			return
		case err != nil && ctx.Err() != nil:
			return // the client went away
		case err != nil:
			s.cfg.Logger.Error("events API: stream", "principal", p.Name, "error", err)
			sw.last(codeUnavailable, "the event store is unavailable; reconnect to resume")
			return
		case wait == nil || rjMore:
			continue
		}
		select {
		case <-wait:
		case <-rjWait:
		case <-heartbeat.C:
			if !wrote {
				sw.heartbeat(cur.pos)
				if sw.flush() != nil {
					return
				}
			}
			wrote = false
		case <-ctx.Done():
			if s.ctx.Err() != nil {
				sw.last(codeShutdown, "the server is shutting down; reconnect")
			}
			return
		}
	}
}

// sseWriter frames a stream's events into a bounded buffer and writes it
// with a deadline. The buffer comes from the server's pool while there is
// something to write and goes back once written, so that an idle stream
// holds none and a new one does not grow its own.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	bufs    *writeBuffers
	buf     []byte // nil between writes
	lastID  int64  // the last id: sent
}

// grab takes a buffer from the pool when the writer has none.
func (sw *sseWriter) grab() {
	if sw.buf == nil {
		sw.buf = sw.bufs.get()
	}
}

// event adds e to the buffer, writing first when the buffer is full.
func (sw *sseWriter) event(e entry) {
	if len(sw.buf) > 0 && len(sw.buf)+len(e.data) > deliverBytes {
		_ = sw.flush() // an error shows again at the next flush
	}
	sw.grab()
	if !e.live { // a live-only event is no position to resume from
		sw.id(e.pos)
	}
	sw.buf = append(sw.buf, "data: "...)
	sw.buf = append(sw.buf, e.data...)
	sw.buf = append(sw.buf, "\n\n"...)
}

// heartbeat adds a keep-alive comment. When the filter passed over events
// since the last id sent, it carries the position reached as an id without
// data: EventSource takes it as its last event id and dispatches nothing,
// so a reconnect does not pass over them again.
func (sw *sseWriter) heartbeat(pos int64) {
	sw.grab()
	if pos > sw.lastID {
		sw.id(pos)
	}
	sw.buf = append(sw.buf, ": heartbeat\n\n"...)
}

// id adds an id line.
func (sw *sseWriter) id(pos int64) {
	sw.buf = append(sw.buf, "id: "...)
	sw.buf = strconv.AppendInt(sw.buf, pos, 10)
	sw.buf = append(sw.buf, '\n')
	sw.lastID = pos
}

// rejection adds an "event: rejected", without an id: rejections are not
// positions of the stream.
func (sw *sseWriter) rejection(r *Rejection) {
	b, _ := json.Marshal(r)
	sw.buf = append(sw.buf, "event: rejected\ndata: "...)
	sw.buf = append(sw.buf, b...)
	sw.buf = append(sw.buf, "\n\n"...)
}

// notice adds an "event: notice".
func (sw *sseWriter) notice(code, message string) {
	b, _ := json.Marshal(subscribeError{Code: code, Message: message})
	sw.grab()
	sw.buf = append(sw.buf, "event: notice\ndata: "...)
	sw.buf = append(sw.buf, b...)
	sw.buf = append(sw.buf, "\n\n"...)
}

// last writes a notice that ends the stream, briefly: the client may not be
// reading.
func (sw *sseWriter) last(code, message string) {
	sw.notice(code, message)
	sw.timeout = min(sw.timeout, noticeTimeout)
	_ = sw.flush()
}

// flush writes the buffer and flushes the response, within the write
// timeout, and gives the buffer back.
func (sw *sseWriter) flush() error {
	if len(sw.buf) == 0 {
		return nil
	}
	// Not every ResponseWriter can set a deadline (ErrNotSupported): the
	// stream then relies on the http.Server's own timeouts.
	_ = sw.rc.SetWriteDeadline(time.Now().Add(sw.timeout))
	_, err := sw.w.Write(sw.buf)
	if err == nil {
		err = sw.rc.Flush()
	}
	sw.bufs.put(sw.buf)
	sw.buf = nil
	return err
}

// writeBuffers pools the buffers streams gather their events in: as many
// as streams are writing at once, each of deliverBytes and a little more.
type writeBuffers struct{ pool sync.Pool }

func (p *writeBuffers) get() []byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, deliverBytes+4<<10)
}

// put gives b back, unless a large event grew it: that one is let go.
func (p *writeBuffers) put(b []byte) {
	if cap(b) <= 2*deliverBytes {
		p.pool.Put(&b)
	}
}
