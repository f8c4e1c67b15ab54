package eventsapi

import (
	"container/list"
	"crypto/rand"
	"sync"
	"time"
)

// How long and how many WebSocket sessions are kept after their connection
// ends, for a resume to restore them.
const (
	sessionKeep  = 5 * time.Minute
	sessionsKept = 1000
)

// sessions are the WebSocket sessions of a Server: those attached to a
// connection, and for a while those whose connection ended.
type sessions struct {
	keep time.Duration
	max  int // detached sessions kept

	mu   sync.Mutex
	byID map[string]*session
	idle list.List // detached sessions, longest detached first
}

// session is a WebSocket session: its subscriptions and position outlive a
// connection. The connection that owns it keeps its own copies, and hands
// them over under sessions.mu.
type session struct {
	id string
	// The principal that started it; only the same may resume it.
	name, tenant string

	owner    *wsConn // nil when detached
	subs     []*subscription
	pos      int64 // the position sent up to, when detached; -1 when unknown
	detached time.Time
	elem     *list.Element // in sessions.idle when detached
}

func newSessions(keep time.Duration, max int) *sessions {
	return &sessions{keep: keep, max: max, byID: make(map[string]*session)}
}

// create starts a session owned by owner.
func (ss *sessions) create(p *Principal, owner *wsConn) *session {
	s := &session{id: rand.Text(), name: p.Name, tenant: p.Tenant, owner: owner, pos: -1}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.sweepLocked(time.Now())
	ss.byID[s.id] = s
	return s
}

// resume hands session id to owner with its subscriptions and position (-1
// when unknown), when the session is held and p started it. A connection that owned it is told
// to end.
func (ss *sessions) resume(id string, p *Principal, owner *wsConn) (*session, []*subscription, int64, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.sweepLocked(time.Now())
	s, ok := ss.byID[id]
	if !ok || s.name != p.Name || s.tenant != p.Tenant {
		return nil, nil, 0, false
	}
	pos := s.pos
	if s.owner != nil {
		s.owner.kick()
		if sent := s.owner.sentPos(); sent >= 0 {
			pos = sent
		}
	}
	if s.elem != nil {
		ss.idle.Remove(s.elem)
		s.elem = nil
	}
	s.owner = owner
	return s, s.subs, pos, true
}

// setSubs records the subscriptions of s, when owner still owns it.
func (ss *sessions) setSubs(s *session, owner *wsConn, subs []*subscription) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s.owner == owner {
		s.subs = subs
	}
}

// detach keeps s, sent up to pos (-1 when unknown: the position stays), for
// a later resume, when owner still owns it.
func (ss *sessions) detach(s *session, owner *wsConn, pos int64) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s.owner != owner {
		return
	}
	now := time.Now()
	s.owner, s.detached = nil, now
	if pos >= 0 {
		s.pos = pos
	}
	s.elem = ss.idle.PushBack(s)
	ss.sweepLocked(now)
}

// sweepLocked forgets the detached sessions kept too long or beyond the
// count.
func (ss *sessions) sweepLocked(now time.Time) {
	for e := ss.idle.Front(); e != nil; e = ss.idle.Front() {
		s := e.Value.(*session)
		if ss.idle.Len() <= ss.max && now.Sub(s.detached) < ss.keep {
			return
		}
		ss.idle.Remove(e)
		delete(ss.byID, s.id)
	}
}
