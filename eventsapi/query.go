package eventsapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/txoutbox/txoutbox/internal/ingest"
)

// Limits of the query API.
const (
	// QueryLimitDefault is how many events GET /api/events returns when the
	// request does not say.
	QueryLimitDefault = 100
	// QueryLimitMax is the most events it returns; a larger limit is
	// lowered to it.
	QueryLimitMax = 1000
)

// EventsPage is the answer of GET /api/events: a page of events in the
// order asked for, and Next when more may follow.
type EventsPage struct {
	// Events are never null: an empty page is [].
	Events []Event `json:"events"`
	// Next is the position of the page's last event, in decimal, present
	// when there are more events after it (in the page's order): ask for
	// the next page with the same parameters and after=Next (ascending) or
	// before=Next (descending).
	Next string `json:"next,omitempty"`
}

// queryParams are the parameters GET /api/events takes.
var queryParams = func() map[string]bool {
	ps := map[string]bool{"tenant": true, "since": true, "until": true, "limit": true, "after": true, "before": true, "order": true}
	for _, name := range fieldNames {
		ps[name], ps["exclude_"+name] = true, true
	}
	for _, name := range targetNames {
		ps[name], ps["exclude_"+name] = true, true
	}
	return ps
}()

// single are the parameters that take one value.
var single = []string{"tenant", "since", "until", "limit", "after", "before", "order",
	"collection", "project", "layout", "exclude_collection", "exclude_project", "exclude_layout"}

func (s *Server) routeQuery() {
	s.mux.HandleFunc("GET /api/events", s.handleEvents)
	s.mux.HandleFunc("GET /api/events/{id}", s.handleEvent)
}

// handleEvents lists stored events: filtered (FilterFromQuery), in position
// order (order=asc, the default, or desc), between after and before
// (positions, exclusive), limit at a time.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	p, ok := s.authorize(w, r, RightQuery)
	if !ok {
		return
	}
	q := r.URL.Query()
	req, status, err := readRequest(q, p)
	if err != nil {
		code := ingest.CodeBadRequest
		if status == http.StatusForbidden {
			code = ingest.CodeForbidden
		}
		writeError(w, status, code, err.Error())
		return
	}
	limit := req.Limit
	req.Limit++ // one more, to know whether another page follows
	evs, err := s.cfg.Store.Read(r.Context(), req)
	if err != nil {
		s.storeFailed(w, r, "read events", err)
		return
	}
	page := EventsPage{Events: evs}
	if len(evs) > limit {
		page.Events = evs[:limit]
		page.Next = strconv.FormatInt(evs[limit-1].Position, 10)
	}
	if page.Events == nil {
		page.Events = []Event{}
	}
	ingest.WriteJSON(w, http.StatusOK, page)
}

// readRequest reads the parameters of GET /api/events, scoped to the
// principal's tenant. Its error is for the caller, with the status to
// answer.
func readRequest(q url.Values, p *Principal) (*ReadRequest, int, error) {
	var unknown []string
	for name := range q {
		if !queryParams[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, http.StatusBadRequest, fmt.Errorf("unknown parameter %s (see the query API in PROTOCOL.md)", strings.Join(unknown, ", "))
	}
	for _, name := range single {
		if len(q[name]) > 1 {
			return nil, http.StatusBadRequest, fmt.Errorf("%s: given %d times, at most once", name, len(q[name]))
		}
	}
	f, err := FilterFromQuery(q)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	if f.Tenant, err = scopeTenant(p, f.Tenant); err != nil {
		return nil, http.StatusForbidden, err
	}
	m, err := Compile(f)
	if err != nil {
		return nil, http.StatusBadRequest, err
	}
	req := &ReadRequest{Match: m, Limit: QueryLimitDefault}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, http.StatusBadRequest, fmt.Errorf("limit: %q is not a positive integer", v)
		}
		req.Limit = min(n, QueryLimitMax)
	}
	for _, b := range []struct {
		name string
		dst  *int64
	}{{"after", &req.After}, {"before", &req.Before}} {
		name, dst := b.name, b.dst
		if v := q.Get(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return nil, http.StatusBadRequest, fmt.Errorf("%s: %q is not a position (a non-negative integer)", name, v)
			}
			*dst = n
		}
	}
	switch q.Get("order") {
	case "", "asc":
	case "desc":
		req.Descending = true
	default:
		return nil, http.StatusBadRequest, fmt.Errorf("order: %q, want asc or desc", q.Get("order"))
	}
	return req, 0, nil
}

// scopeTenant returns the tenant a request may read: the principal's when
// it is bound to one, which a request may name but not change.
func scopeTenant(p *Principal, asked string) (string, error) {
	if p.Tenant == "" || asked == p.Tenant {
		return asked, nil
	}
	if asked == "" {
		return p.Tenant, nil
	}
	return "", fmt.Errorf("key %q may read only tenant %q's events, not %q's", p.Name, p.Tenant, asked)
}

// handleEvent answers one event by id; 404 when the store does not hold it
// or it belongs to a tenant the caller may not read.
func (s *Server) handleEvent(w http.ResponseWriter, r *http.Request) {
	p, ok := s.authorize(w, r, RightQuery)
	if !ok {
		return
	}
	q := r.URL.Query()
	for name, vs := range q {
		if name != "tenant" || len(vs) > 1 {
			writeError(w, http.StatusBadRequest, ingest.CodeBadRequest, fmt.Sprintf("parameter %s: this route takes only one tenant", name))
			return
		}
	}
	tenant, err := scopeTenant(p, q.Get("tenant"))
	if err != nil {
		writeError(w, http.StatusForbidden, ingest.CodeForbidden, err.Error())
		return
	}
	id := r.PathValue("id")
	ev, err := s.cfg.Store.Get(r.Context(), tenant, id)
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, ingest.CodeNotFound, fmt.Sprintf("no event %q", id))
	case err != nil:
		s.storeFailed(w, r, "get event", err)
	default:
		ingest.WriteJSON(w, http.StatusOK, ev)
	}
}

// storeFailed answers a request the store could not serve: 503, to retry.
func (s *Server) storeFailed(w http.ResponseWriter, r *http.Request, what string, err error) {
	if r.Context().Err() != nil {
		return // the caller is gone
	}
	s.cfg.Logger.Error("events API: "+what, "path", r.URL.Path, "error", err)
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusServiceUnavailable, ingest.CodeUnavailable, what+": the store is unavailable; retry")
}
