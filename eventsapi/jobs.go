package eventsapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/txoutbox/txoutbox/internal/ingest"
	"github.com/txoutbox/txoutbox/internal/wire"
)

// Limits of the job routes.
const (
	// MaxConditions bounds the conditions of one enrolment.
	MaxConditions = 16
	// MaxConditionValueBytes bounds a condition's value.
	MaxConditionValueBytes = 4 << 10
	// MaxDescriptionBytes bounds a job's description.
	MaxDescriptionBytes = 4 << 10
	// MaxProgressBytes bounds a progress report, which travels in a
	// PostgreSQL notification between instances.
	MaxProgressBytes = 4 << 10
	// maxJobBody bounds the body of an enrol, update or progress request.
	maxJobBody = 64 << 10
	// maxJobName bounds topics and senders of an enrolment.
	maxJobName = 256
)

// ErrInvalidJobRequest is wrapped by the errors about an enrolment, a job
// update or a progress report that is malformed: a missing topic, an
// unknown status, a condition that is not a path into the event data.
var ErrInvalidJobRequest = errors.New("eventsapi: invalid job request")

// ErrJobsUnsupported is returned by the job operations of a server whose
// store does not implement JobStore.
var ErrJobsUnsupported = errors.New("eventsapi: the store does not keep jobs")

// Condition selects source events by a value in their data: the event
// matches when the JSON value at Key equals Value (as JSON values: 1 and
// 1.0 are equal, key order does not matter).
//
// Key is a path whose first segment is the root, "payload" or "data" (both
// name the event's data, as published), and whose next segments, separated
// by "/", name object members or array indices: "payload/newValue",
// "data/lines/0/sku". "~1" in a segment stands for "/" and "~0" for "~",
// as in a JSON Pointer. A path that leads nowhere does not match.
type Condition struct {
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

// conditionRoots are the roots a Condition's Key may start with.
var conditionRoots = []string{"payload", "data"}

// condition is a compiled Condition.
type condition struct {
	path  []string
	value any    // Value, decoded
	json  string // Value, compact, for PostgreSQL
}

// compileConditions checks cs. Errors wrap ErrInvalidJobRequest.
func compileConditions(cs []Condition) ([]condition, error) {
	if len(cs) > MaxConditions {
		return nil, fmt.Errorf("%w: %d conditions, at most %d", ErrInvalidJobRequest, len(cs), MaxConditions)
	}
	out := make([]condition, 0, len(cs))
	for i, c := range cs {
		segs := strings.Split(c.Key, "/")
		if !isConditionRoot(segs[0]) {
			return nil, fmt.Errorf("%w: condition %d: key %q: want a path starting with payload/ or data/", ErrInvalidJobRequest, i, c.Key)
		}
		if len(c.Key) > MaxPatternBytes || !pgText(c.Key) {
			return nil, fmt.Errorf("%w: condition %d: key: at most %d bytes of UTF-8 text", ErrInvalidJobRequest, i, MaxPatternBytes)
		}
		path := segs[1:]
		for j, s := range path {
			path[j] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
		}
		if len(c.Value) > MaxConditionValueBytes {
			return nil, fmt.Errorf("%w: condition %d: value of %d bytes, at most %d", ErrInvalidJobRequest, i, len(c.Value), MaxConditionValueBytes)
		}
		var v any
		if len(bytes.TrimSpace(c.Value)) == 0 || json.Unmarshal(c.Value, &v) != nil {
			return nil, fmt.Errorf("%w: condition %d: value is not JSON", ErrInvalidJobRequest, i)
		}
		var buf bytes.Buffer
		_ = json.Compact(&buf, c.Value)
		if !pgText(buf.String()) {
			return nil, fmt.Errorf("%w: condition %d: value holds a NUL character", ErrInvalidJobRequest, i)
		}
		out = append(out, condition{path: path, value: v, json: buf.String()})
	}
	return out, nil
}

func isConditionRoot(s string) bool {
	for _, r := range conditionRoots {
		if s == r {
			return true
		}
	}
	return false
}

// matchConditions reports whether data meets every condition of cs.
func matchConditions(cs []condition, data json.RawMessage) bool {
	if len(cs) == 0 {
		return true
	}
	var doc any
	if len(data) == 0 || json.Unmarshal(data, &doc) != nil {
		return false
	}
	for _, c := range cs {
		v, ok := jsonAt(doc, c.path)
		if !ok || !reflect.DeepEqual(v, c.value) {
			return false
		}
	}
	return true
}

// jsonAt returns the value at path in doc.
func jsonAt(doc any, path []string) (any, bool) {
	for _, seg := range path {
		switch d := doc.(type) {
		case map[string]any:
			v, ok := d[seg]
			if !ok {
				return nil, false
			}
			doc = v
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(d) {
				return nil, false
			}
			doc = d[i]
		default:
			return nil, false
		}
	}
	return doc, true
}

// EnrollRequest asks for the oldest source event that has no job yet.
type EnrollRequest struct {
	// SourceTopic is the topic of the events to work on.
	SourceTopic string `json:"sourceTopic"`
	// TargetTopic is the topic of the job events: one per source event.
	TargetTopic string `json:"targetTopic"`
	// Sender names the worker; defaults to the key's name.
	Sender string `json:"sender,omitempty"`
	// Description is the new job's description.
	Description string `json:"description,omitempty"`
	// Conditions select source events by their data; all must hold.
	Conditions []Condition `json:"conditions,omitempty"`
	// Tenant restricts the enrolment to one tenant's source events; ""
	// is every tenant. The server sets it from the caller's key.
	Tenant string `json:"-"`
}

// EnrollResult is an enrolment: the source event and its job, stored in
// state pending.
type EnrollResult struct {
	Source Event
	Job    Event
}

// JobUpdate changes a job: its status, its description, or both.
type JobUpdate struct {
	// Status is the state to move to; empty keeps the state.
	Status JobStatus `json:"status,omitempty"`
	// Description, when not nil, replaces the job's description.
	Description *string `json:"description,omitempty"`
}

// JobStore is what a Store implements to keep event-driven jobs. MemoryStore
// and PostgresStore do. Job events are events of the store: a job moves to
// a new position (taken as appends take theirs) every time it changes, so
// that live subscribers and readers resuming from a position see the
// change. A Store that wraps another passes jobs on only by implementing
// JobStore itself (and LiveStore likewise).
type JobStore interface {
	// Enroll moves the oldest restarted job of req.TargetTopic whose
	// source event req selects back to pending, or else stores job, the
	// new job of the oldest source event req selects that has no job of
	// req.TargetTopic yet, and returns it with its source. False: neither
	// exists. The store sets the job's Key and Tenant from the source,
	// DependsOn, Status (pending) and the times. Every source event gets
	// one job of a target topic, however many callers enroll at once,
	// from however many processes.
	Enroll(ctx context.Context, req *EnrollRequest, job Event) (EnrollResult, bool, error)
	// UpdateJob applies u to the job id (of tenant, when not empty) and
	// returns it as stored. Errors: ErrNotFound, ErrNotAJob,
	// *IllegalTransitionError. A move to restarted past maxRetries fails
	// the job instead.
	UpdateJob(ctx context.Context, tenant, id string, u JobUpdate, maxRetries int) (Event, error)
	// RestartStale restarts the jobs in pending or in_progress last updated
	// before before (or fails them when they had maxRetries), and returns
	// how many it changed. Several callers may run it at once.
	RestartStale(ctx context.Context, before time.Time, maxRetries int) (int, error)
}

// jobStore returns the store's JobStore.
func (s *Server) jobStore() (JobStore, error) {
	js, ok := s.cfg.Store.(JobStore)
	if !ok {
		return nil, ErrJobsUnsupported
	}
	return js, nil
}

// enroll enrolls p for the oldest source event req selects, within p's
// tenant. False: nothing to enroll.
func (s *Server) enroll(ctx context.Context, p *Principal, req EnrollRequest) (EnrollResult, bool, error) {
	js, err := s.jobStore()
	if err != nil {
		return EnrollResult{}, false, err
	}
	if req.Sender == "" {
		req.Sender = p.Name
	}
	for _, f := range []struct{ name, v string }{{"sourceTopic", req.SourceTopic}, {"targetTopic", req.TargetTopic}, {"sender", req.Sender}} {
		if f.v == "" && f.name != "sender" {
			return EnrollResult{}, false, fmt.Errorf("%w: %s is missing", ErrInvalidJobRequest, f.name)
		}
		if len(f.v) > maxJobName || !pgText(f.v) {
			return EnrollResult{}, false, fmt.Errorf("%w: %s: at most %d bytes of UTF-8 text", ErrInvalidJobRequest, f.name, maxJobName)
		}
	}
	if req.SourceTopic == req.TargetTopic {
		return EnrollResult{}, false, fmt.Errorf("%w: targetTopic %q is the source topic: jobs would be their own sources", ErrInvalidJobRequest, req.TargetTopic)
	}
	if err := checkDescription(req.Description); err != nil {
		return EnrollResult{}, false, err
	}
	if _, err := compileConditions(req.Conditions); err != nil {
		return EnrollResult{}, false, err
	}
	req.Tenant = p.Tenant
	category, entity, action, _ := wire.SplitTopic(req.TargetTopic)
	job := Event{
		ID:          uuid.Must(uuid.NewV7()).String(),
		Topic:       req.TargetTopic,
		Category:    category,
		Entity:      entity,
		Action:      action,
		Sender:      req.Sender,
		Description: req.Description,
		Format:      "api",
	}
	return js.Enroll(ctx, &req, job)
}

func checkDescription(d string) error {
	if len(d) > MaxDescriptionBytes || !pgText(d) {
		return fmt.Errorf("%w: description: at most %d bytes of UTF-8 text", ErrInvalidJobRequest, MaxDescriptionBytes)
	}
	return nil
}

// updateJob applies u to the job id, within p's tenant.
func (s *Server) updateJob(ctx context.Context, p *Principal, id string, u JobUpdate) (Event, error) {
	js, err := s.jobStore()
	if err != nil {
		return Event{}, err
	}
	switch {
	case u.Status == "" && u.Description == nil:
		return Event{}, fmt.Errorf("%w: give a status, a description or both", ErrInvalidJobRequest)
	case u.Status != "" && !u.Status.Valid():
		return Event{}, fmt.Errorf("%w: status %q: want one of %s", ErrInvalidJobRequest, u.Status, jobStateNames())
	case u.Status == JobPending:
		return Event{}, fmt.Errorf("%w: status pending: only enrolment moves a job to pending", ErrInvalidJobRequest)
	}
	if u.Description != nil {
		if err := checkDescription(*u.Description); err != nil {
			return Event{}, err
		}
	}
	return js.UpdateJob(ctx, p.Tenant, id, u, s.cfg.JobMaxRetries)
}

func jobStateNames() string {
	names := make([]string, len(jobStates))
	for i, st := range jobStates {
		names[i] = string(st)
	}
	return strings.Join(names, ", ")
}

// reportProgress broadcasts progress on the job id, within p's tenant, to
// live subscribers, without storing it: a copy of the job with Live and
// Progress set and no position.
func (s *Server) reportProgress(ctx context.Context, p *Principal, id string, progress json.RawMessage) error {
	switch {
	case len(progress) > MaxProgressBytes:
		return fmt.Errorf("%w: progress of %d bytes, at most %d", ErrInvalidJobRequest, len(progress), MaxProgressBytes)
	case len(bytes.TrimSpace(progress)) == 0 || !json.Valid(progress):
		return fmt.Errorf("%w: progress is not JSON", ErrInvalidJobRequest)
	}
	ev, err := s.cfg.Store.Get(ctx, p.Tenant, id)
	if err != nil {
		return err
	}
	switch {
	case ev.Status == "":
		return fmt.Errorf("%w: event %s has no status", ErrNotAJob, id)
	case ev.Status.Terminal() || ev.Status == JobFailed:
		return fmt.Errorf("%w: job %s is %s", ErrJobClosed, id, ev.Status)
	}
	var buf bytes.Buffer
	_ = json.Compact(&buf, progress)
	ev.Live, ev.Position, ev.Progress = true, 0, json.RawMessage(buf.Bytes())
	return s.publishLive(ctx, []Event{ev})
}

// routeJobs serves the job routes to callers with the jobs right.
func (s *Server) routeJobs() {
	s.mux.HandleFunc("POST /api/enroll", s.handleEnroll)
	s.mux.HandleFunc("PATCH /api/events/{id}", s.handleJobUpdate)
	s.mux.HandleFunc("POST /api/events/{id}/progress", s.handleProgress)
}

// enrollAnswer is the answer of POST /api/enroll.
type enrollAnswer struct {
	SourceID string `json:"sourceId"`
	JobID    string `json:"jobId"`
	Source   Event  `json:"source"`
	Job      Event  `json:"job"`
}

func (s *Server) handleEnroll(w http.ResponseWriter, r *http.Request) {
	p, ok := s.authorize(w, r, RightJobs)
	if !ok {
		return
	}
	var req EnrollRequest
	if !readJobBody(w, r, &req) {
		return
	}
	res, ok, err := s.enroll(r.Context(), p, req)
	switch {
	case err != nil:
		s.jobError(w, r, "enroll", err)
	case !ok:
		w.WriteHeader(http.StatusNoContent)
	default:
		ingest.WriteJSON(w, http.StatusCreated, enrollAnswer{SourceID: res.Source.ID, JobID: res.Job.ID, Source: res.Source, Job: res.Job})
	}
}

func (s *Server) handleJobUpdate(w http.ResponseWriter, r *http.Request) {
	p, ok := s.authorize(w, r, RightJobs)
	if !ok {
		return
	}
	var u JobUpdate
	if !readJobBody(w, r, &u) {
		return
	}
	ev, err := s.updateJob(r.Context(), p, r.PathValue("id"), u)
	if err != nil {
		s.jobError(w, r, "update job", err)
		return
	}
	ingest.WriteJSON(w, http.StatusOK, ev)
}

func (s *Server) handleProgress(w http.ResponseWriter, r *http.Request) {
	p, ok := s.authorize(w, r, RightJobs)
	if !ok {
		return
	}
	var progress json.RawMessage
	if !readJobBody(w, r, &progress) {
		return
	}
	if err := s.reportProgress(r.Context(), p, r.PathValue("id"), progress); err != nil {
		s.jobError(w, r, "report progress", err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// readJobBody decodes a job route's JSON body into v, strictly; on failure
// it has answered 400 or 413.
func readJobBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJobBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(new(json.RawMessage)) != io.EOF {
		err = errors.New("more than one JSON value")
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, ingest.CodePayloadTooLarge, fmt.Sprintf("the body is larger than %d bytes", maxJobBody))
		return false
	case err != nil:
		writeError(w, http.StatusBadRequest, ingest.CodeBadRequest, "the body is not the JSON this route takes: "+err.Error())
		return false
	}
	return true
}

// codeConflict is the error code of 409 answers of the job routes.
const codeConflict = "Conflict"

// jobError answers a job operation that failed.
func (s *Server) jobError(w http.ResponseWriter, r *http.Request, what string, err error) {
	var tooLarge *LiveTooLargeError
	switch {
	case errors.Is(err, ErrInvalidJobRequest):
		writeError(w, http.StatusBadRequest, ingest.CodeBadRequest, err.Error())
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, ingest.CodeNotFound, fmt.Sprintf("no event %q", r.PathValue("id")))
	case errors.Is(err, ErrNotAJob), errors.Is(err, ErrIllegalTransition), errors.Is(err, ErrJobClosed):
		writeError(w, http.StatusConflict, codeConflict, err.Error())
	case errors.As(err, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, ingest.CodePayloadTooLarge, err.Error())
	case errors.Is(err, ErrJobsUnsupported):
		writeError(w, http.StatusNotImplemented, "NotImplemented", err.Error())
	default:
		s.storeFailed(w, r, what, err)
	}
}

// jobsLoop restarts stale jobs until Close: every quarter of
// JobStaleAfter, the jobs not updated for JobStaleAfter.
func (s *Server) jobsLoop(js JobStore) {
	defer s.wg.Done()
	t := time.NewTicker(max(s.cfg.JobStaleAfter/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		n, err := js.RestartStale(s.ctx, s.cfg.NowFunc().Add(-s.cfg.JobStaleAfter), s.cfg.JobMaxRetries)
		switch {
		case err != nil && s.ctx.Err() == nil:
			s.cfg.Logger.Error("events API: restart stale jobs", "error", err)
		case n > 0:
			s.cfg.Logger.Info("events API: restarted stale jobs", "count", n)
		}
	}
}
