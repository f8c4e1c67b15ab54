package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/topics"
)

// Post is the events of one post that passed validation, in body order, for
// [Config.StoreFunc].
type Post struct {
	Format wire.Format
	// Batch says the post came to a route of several events (a bc-events
	// bulk post, a CloudEvents batch), even when it carries one.
	Batch  bool
	Events []wire.Event
}

// Outcome is what storing one event of a Post came to.
type Outcome struct {
	// Duplicate says the event was stored before and was not stored again.
	Duplicate bool
	// Code, when set, says the event was not stored, as a bc-events record
	// error code (e.g. wire.BriteErrThroughputExceeded), and Message why. A
	// bc-events bulk post answers the record with it; any other post is
	// answered 503 with it.
	Code    string
	Message string
}

// Rejection is an event the handler refused, or a post it refused before
// it could tell the events apart.
type Rejection struct {
	// Status is the HTTP status of the answer: 400, 413 or 415 for a post
	// refused unread; 422 for events failing validation; 201 for a record
	// of a bc-events bulk post that was taken in part.
	Status int `json:"status"`
	// Index is the event's position in a bulk post or batch; nil for a
	// single event, or a post refused as a whole.
	Index *int   `json:"index,omitempty"`
	ID    string `json:"id,omitempty"`
	Topic string `json:"topic,omitempty"`
	Code  string `json:"code"`
	Error string `json:"error"`
}

// LogAttrs returns the rejection as slog attributes: status, code, index,
// id and topic when known, and the error.
func (r *Rejection) LogAttrs() []any {
	attrs := []any{"status", r.Status, "code", r.Code}
	if r.Index != nil {
		attrs = append(attrs, "index", *r.Index)
	}
	if r.ID != "" {
		attrs = append(attrs, "id", r.ID)
	}
	if r.Topic != "" {
		attrs = append(attrs, "topic", r.Topic)
	}
	return append(attrs, "error", r.Error)
}

// Config configures a Handler.
type Config struct {
	// Registry, when set, is checked on every event (see Check).
	Registry *topics.Registry
	// MaxBodyBytes bounds a request body; larger ones are answered 413.
	// Required.
	MaxBodyBytes int64
	// CheckFunc, when set, validates and completes each event after Check
	// (the events API resolves targets with it). An *Error it returns is
	// the answer to the post; any other error fails the event as Check's
	// do: 422 ValidationError naming it.
	CheckFunc func(ctx context.Context, ev *wire.Event) error
	// StoreFunc stores the events of a post that passed validation, all in
	// one call, and answers an Outcome for each, in order. An *Error it
	// returns is the answer to the post; any other error is answered 503.
	// Required.
	StoreFunc func(ctx context.Context, p *Post) ([]Outcome, error)
	// RejectFunc, when set, is told of every rejection, as it is answered.
	RejectFunc func(ctx context.Context, format wire.Format, rs []Rejection)
}

// Handler serves the ingest routes. It is safe for concurrent use.
type Handler struct {
	cfg Config
}

// New returns a Handler.
func New(cfg Config) (*Handler, error) {
	switch {
	case cfg.MaxBodyBytes <= 0:
		return nil, fmt.Errorf("ingest: MaxBodyBytes: %d is not positive", cfg.MaxBodyBytes)
	case cfg.StoreFunc == nil:
		return nil, errors.New("ingest: StoreFunc: required")
	}
	return &Handler{cfg: cfg}, nil
}

// Patterns returns the http.ServeMux patterns of the ingest routes, for a
// server that wraps them in front of a handler serving them (the
// development sink counts and fails posts on purpose there).
func Patterns() []string {
	return []string{
		"POST " + wire.BritePathSingle,
		"POST " + strings.TrimSuffix(wire.BritePathBulk, "/"),
		"POST " + wire.BritePathBulk,
		"POST /{$}",
		"POST /cloudevents",
	}
}

// Register adds the ingest routes (Patterns) to mux, each wrapped by wrap
// (access control, counting), which may be nil.
func (h *Handler) Register(mux *http.ServeMux, wrap func(http.Handler) http.Handler) {
	if wrap == nil {
		wrap = func(next http.Handler) http.Handler { return next }
	}
	handlers := []http.HandlerFunc{h.serveBrite, h.serveBriteBulk, h.serveBriteBulk, h.serveCloudEvents, h.serveCloudEvents}
	for i, pattern := range Patterns() {
		mux.Handle(pattern, wrap(handlers[i]))
	}
}

type recordFaultsKey struct{}

// WithRecordFaults returns a context under which a Handler fails records of
// bc-events bulk posts on purpose, as a throttled bc-events API does: before
// it stores each record that passed validation it calls next, and a code
// next returns (e.g. wire.BriteErrThroughputExceeded) fails the record with
// that code, unstored, while the others are stored. Development servers put
// it in the request's context to show senders partial failures.
func WithRecordFaults(ctx context.Context, next func() (code string)) context.Context {
	return context.WithValue(ctx, recordFaultsKey{}, next)
}

// refuse answers a post refused as a whole and reports it.
func (h *Handler) refuse(w http.ResponseWriter, r *http.Request, format wire.Format, e *Error) {
	if e.Status != http.StatusConflict && e.Status < 500 {
		h.reject(r, format, []Rejection{{Status: e.Status, Code: e.Code, Error: e.Message}})
	}
	Answer(w, e)
}

func (h *Handler) reject(r *http.Request, format wire.Format, rs []Rejection) {
	if h.cfg.RejectFunc != nil && len(rs) > 0 {
		h.cfg.RejectFunc(r.Context(), format, rs)
	}
}

func intp(i int) *int { return &i }

func badRequest(msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: CodeBadRequest, Message: msg}
}

// readBody reads a request body within MaxBodyBytes.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *Error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &Error{Status: http.StatusRequestEntityTooLarge, Code: CodePayloadTooLarge, Message: fmt.Sprintf("body larger than %d bytes", mbe.Limit)}
		}
		return nil, badRequest("read body: " + err.Error())
	}
	return body, nil
}

// store hands the events that passed to StoreFunc, but those that record
// faults (WithRecordFaults) fail, and translates its errors into answers.
func (h *Handler) store(ctx context.Context, p *Post) ([]Outcome, *Error) {
	if len(p.Events) == 0 {
		return nil, nil
	}
	fault, _ := ctx.Value(recordFaultsKey{}).(func() string)
	if fault == nil || p.Format != wire.FormatBriteEvents || !p.Batch {
		return h.storeAll(ctx, p)
	}
	outs := make([]Outcome, len(p.Events))
	take := &Post{Format: p.Format, Batch: true, Events: make([]wire.Event, 0, len(p.Events))}
	at := make([]int, 0, len(p.Events)) // index in p of each event taken
	for i := range p.Events {
		if code := fault(); code != "" {
			outs[i] = Outcome{Code: code, Message: "failed on purpose"}
			continue
		}
		take.Events = append(take.Events, p.Events[i])
		at = append(at, i)
	}
	stored, e := h.storeAll(ctx, take)
	if e != nil {
		return nil, e
	}
	for j, o := range stored {
		outs[at[j]] = o
	}
	return outs, nil
}

// storeAll hands p's events to StoreFunc, translating its errors into
// answers.
func (h *Handler) storeAll(ctx context.Context, p *Post) ([]Outcome, *Error) {
	if len(p.Events) == 0 {
		return nil, nil
	}
	outs, err := h.cfg.StoreFunc(ctx, p)
	var e *Error
	switch {
	case errors.As(err, &e):
		return nil, e
	case err != nil:
		return nil, &Error{Status: http.StatusServiceUnavailable, Code: CodeUnavailable, Message: "the events could not be stored; retry", RetryAfter: 1}
	case len(outs) != len(p.Events):
		return nil, &Error{Status: http.StatusInternalServerError, Code: CodeInternal, Message: fmt.Sprintf("the store answered for %d of %d events", len(outs), len(p.Events))}
	}
	return outs, nil
}

// check validates ev with Check, then Config.CheckFunc: invalid says why
// the event fails validation, fail is the answer to the whole post.
func (h *Handler) check(ctx context.Context, ev *wire.Event) (invalid error, fail *Error) {
	if err := Check(h.cfg.Registry, ev); err != nil {
		return err, nil
	}
	if h.cfg.CheckFunc == nil {
		return nil, nil
	}
	err := h.cfg.CheckFunc(ctx, ev)
	var e *Error
	if errors.As(err, &e) {
		return nil, e
	}
	return err, nil
}

// notStored is the answer to a post of one event, or a batch, that the
// store did not take although the event was valid.
func notStored(o Outcome) *Error {
	return &Error{Status: http.StatusServiceUnavailable, Code: o.Code, Message: o.Message, RetryAfter: 1}
}

// serveBrite takes one bc-events body: 201 {"eventId","jobId"} with the id
// the event is stored under (the Idempotency-Key, or one the server gives
// it); 409 when it was stored before. A body breaking the rules of
// EVENT_SCHEMA on values, or failing the registry, is 422 ValidationError.
func (h *Handler) serveBrite(w http.ResponseWriter, r *http.Request) {
	const format = wire.FormatBriteEvents
	body, e := h.readBody(w, r)
	if e != nil {
		h.refuse(w, r, format, e)
		return
	}
	b, err := wire.DecodeBrite(body)
	if err != nil {
		h.refuse(w, r, format, badRequest(err.Error()))
		return
	}
	evs := []wire.Event{b.Event()}
	if err := briteEnvelope(r.Header, evs, false); err != nil {
		h.refuse(w, r, format, badRequest(err.Error()))
		return
	}
	ev := &evs[0]
	err = b.Validate()
	if err == nil {
		var e *Error
		if err, e = h.check(r.Context(), ev); e != nil {
			h.refuse(w, r, format, e)
			return
		}
	}
	if err != nil {
		h.reject(r, format, []Rejection{{Status: http.StatusUnprocessableEntity, ID: ev.ID, Topic: ev.Topic, Code: CodeValidation, Error: err.Error()}})
		Answer(w, &Error{Status: http.StatusUnprocessableEntity, Code: CodeValidation, Message: err.Error()})
		return
	}
	outs, e := h.store(r.Context(), &Post{Format: format, Events: evs})
	switch {
	case e != nil:
		h.refuse(w, r, format, e)
	case outs[0].Code != "":
		Answer(w, notStored(outs[0]))
	case outs[0].Duplicate:
		Answer(w, &Error{Status: http.StatusConflict, Code: CodeDuplicate, Message: "event " + ev.ID + " was received before"})
	default:
		WriteJSON(w, http.StatusCreated, wire.BriteCreated{EventID: ev.ID, JobID: ev.JobID})
	}
}

// serveBriteBulk takes up to 250 bc-events bodies. A post with records
// breaking the rules of EVENT_SCHEMA is refused as a whole, as the API
// validates its body: 400 for a record it cannot decode, 422
// ValidationError for values, naming every such record. Otherwise it
// answers 201 with a record per body: "Success" (duplicates included) or an
// error code, ValidationError for a record failing the envelope limits or
// the registry.
func (h *Handler) serveBriteBulk(w http.ResponseWriter, r *http.Request) {
	const format = wire.FormatBriteEvents
	body, e := h.readBody(w, r)
	if e != nil {
		h.refuse(w, r, format, e)
		return
	}
	bs, err := wire.DecodeBriteBulk(body)
	switch {
	case err != nil:
		h.refuse(w, r, format, badRequest(err.Error()))
		return
	case len(bs) > wire.BriteBulkMax:
		h.refuse(w, r, format, badRequest(fmt.Sprintf("%d records, at most %d", len(bs), wire.BriteBulkMax)))
		return
	}
	evs := make([]wire.Event, len(bs))
	for i := range bs {
		evs[i] = bs[i].Event()
	}
	if err := briteEnvelope(r.Header, evs, true); err != nil {
		h.refuse(w, r, format, badRequest(err.Error()))
		return
	}

	var invalid []RecordError
	var rs []Rejection
	for i := range bs {
		if err := bs[i].Validate(); err != nil {
			invalid = append(invalid, RecordError{Index: i, ID: evs[i].ID, ErrorType: CodeValidation, ErrorMessage: err.Error()})
			rs = append(rs, Rejection{Status: http.StatusUnprocessableEntity, Index: intp(i), ID: evs[i].ID, Topic: evs[i].Topic, Code: CodeValidation, Error: err.Error()})
		}
	}
	if len(invalid) > 0 {
		msgs := make([]string, len(invalid))
		for i, e := range invalid {
			msgs[i] = fmt.Sprintf("record %d: %s", e.Index, e.ErrorMessage)
		}
		h.reject(r, format, rs)
		WriteJSON(w, http.StatusUnprocessableEntity, briteBulkRejection{
			ErrorBody: errorBody(CodeValidation, strings.Join(msgs, "; ")),
			Errors:    invalid,
		})
		return
	}

	ans := BriteBulkAnswer{Records: make([]string, len(bs))}
	var valid []wire.Event
	var at []int // index in the post of each valid event
	for i := range evs {
		err, e := h.check(r.Context(), &evs[i])
		if e != nil {
			h.refuse(w, r, format, e)
			return
		}
		if err != nil {
			ans.Records[i] = CodeValidation
			ans.Errors = append(ans.Errors, RecordError{Index: i, ID: evs[i].ID, ErrorType: CodeValidation, ErrorMessage: err.Error()})
			rs = append(rs, Rejection{Status: http.StatusCreated, Index: intp(i), ID: evs[i].ID, Topic: evs[i].Topic, Code: CodeValidation, Error: err.Error()})
			continue
		}
		ans.Records[i] = wire.BriteRecordSuccess
		valid = append(valid, evs[i])
		at = append(at, i)
	}
	outs, e := h.store(r.Context(), &Post{Format: format, Batch: true, Events: valid})
	if e != nil {
		h.refuse(w, r, format, e)
		return
	}
	for j, o := range outs {
		i := at[j]
		switch {
		case o.Code != "":
			ans.Records[i] = o.Code
			ans.Errors = append(ans.Errors, RecordError{Index: i, ID: evs[i].ID, ErrorType: o.Code, ErrorMessage: o.Message})
		case o.Duplicate:
			ans.Duplicates++
		}
	}
	for _, rec := range ans.Records {
		if rec != wire.BriteRecordSuccess {
			ans.FailedRecords++
		}
	}
	h.reject(r, format, rs)
	WriteJSON(w, http.StatusCreated, ans)
}

// serveCloudEvents takes a CloudEvents batch (202, all or nothing: 422 when
// any event fails validation) or one structured event (201; 409 when it was
// stored before).
func (h *Handler) serveCloudEvents(w http.ResponseWriter, r *http.Request) {
	const format = wire.FormatCloudEvents
	isCE, batch := wire.IsCloudEventsContentType(r.Header.Get("Content-Type"))
	if !isCE {
		h.refuse(w, r, format, &Error{Status: http.StatusUnsupportedMediaType, Code: CodeUnsupportedMediaType,
			Message: fmt.Sprintf("Content-Type %q: want %s or %s (bc-events bodies go to %s)",
				r.Header.Get("Content-Type"), wire.ContentTypeCloudEventBatch, wire.ContentTypeCloudEvent, wire.BritePathSingle)})
		return
	}
	body, e := h.readBody(w, r)
	if e != nil {
		h.refuse(w, r, format, e)
		return
	}
	var evs []wire.Event
	var err error
	if batch {
		evs, err = wire.DecodeCloudEventBatch(body)
	} else {
		var ev wire.Event
		ev, err = wire.DecodeCloudEvent(body)
		evs = []wire.Event{ev}
	}
	switch {
	case err != nil:
		h.refuse(w, r, format, badRequest(err.Error()))
		return
	case len(evs) > MaxBatchEvents:
		h.refuse(w, r, format, badRequest(fmt.Sprintf("%d events, at most %d in one batch", len(evs), MaxBatchEvents)))
		return
	}
	var ans CloudEventsAnswer
	var rs []Rejection
	for i := range evs {
		err, e := h.check(r.Context(), &evs[i])
		if e != nil {
			h.refuse(w, r, format, e)
			return
		}
		if err != nil {
			ans.Failed = append(ans.Failed, FailedItem{Index: i, ID: evs[i].ID, Error: err.Error()})
			rj := Rejection{Status: http.StatusUnprocessableEntity, ID: evs[i].ID, Topic: evs[i].Topic, Code: CodeValidation, Error: err.Error()}
			if batch {
				rj.Index = intp(i)
			}
			rs = append(rs, rj)
		}
	}
	if len(ans.Failed) > 0 {
		ans.Error = &ErrorInfo{Code: CodeValidation, Message: fmt.Sprintf("%d of %d events failed validation; none was stored", len(ans.Failed), len(evs))}
		h.reject(r, format, rs)
		WriteJSON(w, http.StatusUnprocessableEntity, ans)
		return
	}
	outs, e := h.store(r.Context(), &Post{Format: format, Batch: batch, Events: evs})
	if e != nil {
		h.refuse(w, r, format, e)
		return
	}
	for _, o := range outs {
		switch {
		case o.Code != "":
			Answer(w, notStored(o))
			return
		case o.Duplicate:
			ans.Duplicates++
		default:
			ans.Accepted++
		}
	}
	switch {
	case !batch && ans.Duplicates == 1:
		ans.Error = &ErrorInfo{Code: CodeDuplicate, Message: "event " + evs[0].ID + " was received before"}
		WriteJSON(w, http.StatusConflict, ans)
	case !batch:
		WriteJSON(w, http.StatusCreated, ans)
	default:
		WriteJSON(w, http.StatusAccepted, ans)
	}
}
