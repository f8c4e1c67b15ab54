package outboxconsole

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/txoutbox/txoutbox/internal/outboxsql"
	"github.com/txoutbox/txoutbox/relay"
)

// assets are the console's templates, script and style: no other origin,
// no CDN, no build step, so it works offline.
//
//go:embed assets
var assets embed.FS

// chartWindow is how far back the overview's charts go.
const chartWindow = time.Hour

type pages struct {
	t *template.Template
}

func newPages(base string) *pages {
	funcs := template.FuncMap{
		"base":  func() string { return base },
		"age":   age,
		"bytes": outboxsql.ByteSize,
		"ts": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05")
		},
		"tsp": func(t *time.Time) string {
			if t == nil {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05")
		},
		"state": func(s string) string { return strings.ReplaceAll(s, "_", "-") },
		"q": func(kv ...string) string {
			v := url.Values{}
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i+1] != "" {
					v.Set(kv[i], kv[i+1])
				}
			}
			return v.Encode()
		},
		"states": States,
		"dict": func(kv ...any) map[string]any {
			m := make(map[string]any, len(kv)/2)
			for i := 0; i+1 < len(kv); i += 2 {
				m[kv[i].(string)] = kv[i+1]
			}
			return m
		},
		"fields": query,
	}
	return &pages{t: template.Must(template.New("").Funcs(funcs).ParseFS(assets, "assets/*.html"))}
}

// age renders a duration for people: 850ms, 12s, 4m10s, 3h5m, 2d4h.
func age(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	}
	days := d / (24 * time.Hour)
	return fmt.Sprintf("%dd%dh", days, (d-days*24*time.Hour)/time.Hour)
}

// page is what every page's layout needs.
type page struct {
	Title    string
	Actor    string
	CSRF     string
	ReadOnly bool
	Open     bool
	Body     any
}

func (h *Handler) render(w http.ResponseWriter, status int, name string, req request, title string, body any) {
	var b bytes.Buffer
	err := h.pages.t.ExecuteTemplate(&b, name, page{Title: title, Actor: req.actor, CSRF: req.csrf,
		ReadOnly: h.cfg.ReadOnly, Open: h.access.open(), Body: body})
	if err != nil {
		h.log.Error("outboxconsole: render", "page", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// fail shows err: a bad filter as 400 with its message; anything else as
// 500 without details, which go to the log.
func (h *Handler) fail(w http.ResponseWriter, req request, err error) {
	status, msg := http.StatusInternalServerError, "The database could not answer; see the console's log."
	switch {
	case errors.Is(err, ErrInvalidFilter), errors.Is(err, ErrNoFilter):
		status, msg = http.StatusBadRequest, err.Error()
	case errors.Is(err, ErrReadOnly):
		status, msg = http.StatusForbidden, "This console is read-only: it shows the outbox and changes nothing."
	case errors.Is(err, ErrNotMigrated):
		msg = err.Error()
	default:
		h.log.Error("outboxconsole", "err", err)
	}
	h.render(w, status, "error.html", req, "Error", msg)
}

// chart is one line chart's SVG geometry.
type chart struct {
	Lines []chartLine
	Max   int64
	Unit  string
}

type chartLine struct {
	Name   string
	Class  string
	Points string
	Last   int64
}

const chartW, chartH = 600.0, 120.0

// lineOf scales values at times (seconds before now, within chartWindow)
// into an SVG polyline, with y from 0 to top.
func lineOf(name, class string, xs []float64, ys []int64, top int64) chartLine {
	var b strings.Builder
	for i := range xs {
		x := chartW * (1 - xs[i]/chartWindow.Seconds())
		y := chartH * (1 - float64(ys[i])/float64(max(top, 1)))
		fmt.Fprintf(&b, "%.1f,%.1f ", x, y)
	}
	l := chartLine{Name: name, Class: class, Points: strings.TrimSpace(b.String())}
	if len(ys) > 0 {
		l.Last = ys[len(ys)-1]
	}
	return l
}

type overviewBody struct {
	*Overview
	Backlog, Throughput chart
	Partitions          int
	LiveTTL             time.Duration
}

// overviewView derives the charts from the samples: the backlog as
// sampled, and per minute what was published (the growth of the last seq)
// and delivered (what was published less what the backlog and the dead
// grew by; replays and discards blur it).
func overviewView(o *Overview) overviewBody {
	v := overviewBody{Overview: o, Partitions: outboxsql.Partitions, LiveTTL: relay.LeaseTTLDefault}
	var xs, rx []float64
	var pending, published, delivered []int64
	var top, rateTop int64
	for i, s := range o.Samples {
		ago := o.At.Sub(s.At).Seconds()
		xs = append(xs, ago)
		pending = append(pending, s.Pending)
		top = max(top, s.Pending)
		if i == 0 {
			continue
		}
		p := o.Samples[i-1]
		dt := s.At.Sub(p.At).Minutes()
		if dt <= 0 || dt > 5 { // a gap: no console was sampling
			continue
		}
		pub := max(s.LastSeq-p.LastSeq, 0)
		del := max(pub-(s.Pending-p.Pending)-(s.Dead-p.Dead), 0)
		rp, rd := int64(math.Round(float64(pub)/dt)), int64(math.Round(float64(del)/dt))
		rx = append(rx, ago)
		published, delivered = append(published, rp), append(delivered, rd)
		rateTop = max(rateTop, rp, rd)
	}
	v.Backlog = chart{Max: top, Unit: "events", Lines: []chartLine{lineOf("pending", "pending", xs, pending, top)}}
	v.Throughput = chart{Max: rateTop, Unit: "events/min", Lines: []chartLine{
		lineOf("published", "published", rx, published, rateTop),
		lineOf("delivered", "delivered", rx, delivered, rateTop),
	}}
	return v
}

func (h *Handler) serveOverview(w http.ResponseWriter, r *http.Request, req request) {
	frag, err := h.overviewFragment(r.Context())
	if err != nil {
		h.fail(w, req, err)
		return
	}
	h.render(w, http.StatusOK, "overview.html", req, "Overview", template.HTML(frag)) //nolint:gosec // rendered by html/template
}

type eventsBody struct {
	Filter      *Filter
	Query       string
	Events      []Event
	Next, Prev  int64
	Dead        bool
	StateChoice []string
}

func (h *Handler) serveEvents(w http.ResponseWriter, r *http.Request, req request) {
	f, err := parseFilter(r.URL.Query())
	if err != nil {
		h.fail(w, req, err)
		return
	}
	f.MaxSeq = 0
	evs, more, err := h.store.list(r.Context(), f, h.cfg.PageSize)
	if err != nil {
		h.fail(w, req, err)
		return
	}
	body := eventsBody{Filter: f, Query: query(f).Encode(), Events: evs, Dead: f.State == outboxsql.StatusDead, StateChoice: States()}
	if len(evs) > 0 {
		if more || f.Before > 0 {
			body.Next = evs[len(evs)-1].Seq
		}
		if f.After > 0 || (f.Before > 0 && more) {
			body.Prev = evs[0].Seq
		}
	}
	h.render(w, http.StatusOK, "events.html", req, "Events", body)
}

type eventBody struct {
	Event        *EventDetail
	KeyEvents    []Event
	KeyDead      int
	ShowPayloads bool
}

// keyEventsLimit bounds the key's events an event's page lists.
const keyEventsLimit = 20

func (h *Handler) serveEvent(w http.ResponseWriter, r *http.Request, req request) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		h.fail(w, req, fmt.Errorf("%w: %q is not an event id", ErrInvalidFilter, r.PathValue("id")))
		return
	}
	e, err := h.store.event(r.Context(), id, h.cfg.ShowPayloads)
	if err != nil {
		h.fail(w, req, err)
		return
	}
	if e == nil {
		h.render(w, http.StatusNotFound, "error.html", req, "Not found",
			"No event has this id: it may have been delivered and removed after the relay's retention.")
		return
	}
	kev, err := h.store.keyEvents(r.Context(), e.Key, keyEventsLimit)
	if err != nil {
		h.fail(w, req, err)
		return
	}
	body := eventBody{Event: e, ShowPayloads: h.cfg.ShowPayloads}
	for _, k := range kev {
		if k.ID != e.ID {
			body.KeyEvents = append(body.KeyEvents, k)
		}
		if k.State == outboxsql.StatusDead {
			body.KeyDead++
		}
	}
	h.render(w, http.StatusOK, "event.html", req, "Event "+e.ID.String(), body)
}

// The actions a console offers; unblock discards the dead events of a key.
const (
	actionReplay  = outboxsql.ActionReplay
	actionDiscard = outboxsql.ActionDiscard
	actionUnblock = "unblock"
)

type confirmBody struct {
	Action   string
	Verb     string
	Filter   *Filter
	Fields   url.Values
	Count    int64
	MaxSeq   int64
	ActionID uuid.UUID
	Sample   []Event
}

type doneBody struct {
	Record ActionRecord
	Again  bool
	Verb   string
	Query  string
}

// serveAction confirms an action, showing how many dead events it would
// change and changing nothing (the dry run); the confirmation's form, sent
// with confirm=yes, runs it once, however often it is sent.
func (h *Handler) serveAction(w http.ResponseWriter, r *http.Request, req request) {
	action := r.PathValue("action")
	verb, ok := map[string]string{actionReplay: "Replay", actionDiscard: "Discard", actionUnblock: "Unblock"}[action]
	if !ok {
		http.NotFound(w, r)
		return
	}
	if h.cfg.ReadOnly {
		h.fail(w, req, ErrReadOnly)
		return
	}
	if err := r.ParseForm(); err != nil {
		h.fail(w, req, fmt.Errorf("%w: %w", ErrInvalidFilter, err))
		return
	}
	f, err := parseFilter(r.PostForm)
	if err != nil {
		h.fail(w, req, err)
		return
	}
	f.After, f.Before = 0, 0
	switch {
	case action == actionUnblock && f.Key == "":
		h.fail(w, req, fmt.Errorf("%w: unblock needs a key", ErrNoFilter))
		return
	case action == actionUnblock:
		*f = Filter{Key: f.Key, State: outboxsql.StatusDead, MaxSeq: f.MaxSeq}
	case len(f.IDs) == 0 && f.State != outboxsql.StatusDead:
		h.fail(w, req, fmt.Errorf("%w: select events, or filter on state dead", ErrNoFilter))
		return
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if len(reason) > maxReason {
		h.fail(w, req, fmt.Errorf("%w: reason: longer than %d bytes", ErrInvalidFilter, maxReason))
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		n, maxSeq, err := h.store.count(r.Context(), f)
		if err != nil {
			h.fail(w, req, err)
			return
		}
		f.MaxSeq = maxSeq
		sample, _, err := h.store.list(r.Context(), &Filter{IDs: f.IDs, State: outboxsql.StatusDead, Topic: f.Topic,
			Key: f.Key, Tenant: f.Tenant, JobID: f.JobID, Error: f.Error, From: f.From, To: f.To, MaxSeq: maxSeq}, 10)
		if err != nil {
			h.fail(w, req, err)
			return
		}
		fields := query(f)
		for _, id := range f.IDs {
			fields.Add("id", id.String())
		}
		fields.Set("max_seq", strconv.FormatInt(maxSeq, 10))
		h.render(w, http.StatusOK, "confirm.html", req, verb+"?", confirmBody{Action: action, Verb: verb, Filter: f,
			Fields: fields, Count: n, MaxSeq: maxSeq, ActionID: uuid.New(), Sample: sample})
		return
	}
	id, err := uuid.Parse(r.PostFormValue("action_id"))
	if err != nil || f.MaxSeq == 0 {
		h.fail(w, req, fmt.Errorf("%w: the confirmation is incomplete: start again from the list", ErrInvalidFilter))
		return
	}
	op := action
	if action == actionUnblock {
		op = actionDiscard
	}
	rec, done, err := h.store.act(r.Context(), id, req.actor, op, f, reason)
	if err != nil {
		h.fail(w, req, err)
		return
	}
	rec.Action = action
	if done {
		h.log.Info("outboxconsole: action", "action", action, "actor", req.actor, "remote", r.RemoteAddr,
			"filter", rec.Filter, "events", rec.Events, "id", rec.ID)
	}
	h.render(w, http.StatusOK, "done.html", req, verb+"ed", doneBody{Record: rec, Again: !done, Verb: verb,
		Query: query(&Filter{State: outboxsql.StatusDead, Topic: f.Topic, Key: f.Key, Tenant: f.Tenant, JobID: f.JobID,
			Error: f.Error, From: f.From, To: f.To}).Encode()})
}

// auditLimit is how many actions the audit page lists.
const auditLimit = 200

func (h *Handler) serveAudit(w http.ResponseWriter, r *http.Request, req request) {
	recs, err := h.store.actions(r.Context(), auditLimit)
	if err != nil {
		h.fail(w, req, err)
		return
	}
	h.render(w, http.StatusOK, "audit.html", req, "Audit", recs)
}

var assetTypes = map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

func (h *Handler) serveAsset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	ct, ok := assetTypes[path.Ext(name)]
	b, err := assets.ReadFile("assets/" + name)
	if !ok || err != nil {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}

// serveLogin shows the sign-in form and signs in: a token, or a user and a
// password, become a session cookie.
func (h *Handler) serveLogin(w http.ResponseWriter, r *http.Request) {
	type loginBody struct {
		Token, Users bool
		Failed       bool
	}
	body := loginBody{Token: h.access.token != "", Users: len(h.access.users) > 0}
	if h.access.open() {
		http.Redirect(w, r, h.cfg.Path, http.StatusSeeOther)
		return
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<14)
		if err := checkPost(r, ""); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		actor := ""
		if tok := r.PostFormValue("token"); tok != "" {
			actor = h.access.check("", tok)
		} else if user := r.PostFormValue("user"); user != "" {
			actor = h.access.check(user, r.PostFormValue("password"))
		}
		if actor != "" {
			http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: h.access.newSession(actor, time.Now()),
				Path: h.cfg.Path, HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
				MaxAge: int(sessionTTL.Seconds())})
			h.log.Info("outboxconsole: signed in", "actor", actor, "remote", r.RemoteAddr)
			http.Redirect(w, r, h.cfg.Path, http.StatusSeeOther)
			return
		}
		h.log.Warn("outboxconsole: sign-in refused", "remote", r.RemoteAddr)
		body.Failed = true
		h.render(w, http.StatusUnauthorized, "login.html", request{}, "Sign in", body)
		return
	}
	h.render(w, http.StatusOK, "login.html", request{}, "Sign in", body)
}

func (h *Handler) serveLogout(w http.ResponseWriter, r *http.Request, _ request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: h.cfg.Path, MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, h.cfg.Path+"login", http.StatusSeeOther)
}
