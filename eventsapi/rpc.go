package eventsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/txoutbox/txoutbox/eventsapi/eventsv1"
	"github.com/txoutbox/txoutbox/eventsapi/eventsv1/eventsv1connect"
	"github.com/txoutbox/txoutbox/internal/ingest"
	"github.com/txoutbox/txoutbox/internal/wire"
)

// rpcMaxMessage bounds one message a client sends the EventService (a
// publish's payload included); a larger one fails with ResourceExhausted.
const rpcMaxMessage = 1 << 20

// rpcCompressMinBytes is the smallest message the EventService compresses.
const rpcCompressMinBytes = 16 << 10

// FormatAPI is Event.Format for events published through the EventService.
const FormatAPI = "api"

// routeRPC serves the EventService (proto/txoutbox/events/v1) over gRPC,
// gRPC-Web and Connect, on the server's own address.
func (s *Server) routeRPC() {
	path, h := eventsv1connect.NewEventServiceHandler(&rpcService{s: s},
		connect.WithReadMaxBytes(rpcMaxMessage),
		// Events are small: compressing each message (gzip, whenever the
		// client accepts it) cost more CPU than it saved bytes on the wire.
		connect.WithCompressMinBytes(rpcCompressMinBytes),
		connect.WithRecover(func(ctx context.Context, spec connect.Spec, _ http.Header, v any) error {
			s.cfg.Logger.Error("events API: EventService call panicked", "procedure", spec.Procedure, "panic", v)
			return connect.NewError(connect.CodeInternal, errors.New("internal error"))
		}))
	s.mux.Handle(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, aerr := s.identify(r, false)
		ctx := context.WithValue(r.Context(), rpcAuthKey{}, rpcAuth{p: p, err: aerr})
		rw := &rpcWriter{ResponseWriter: w}
		ctx = context.WithValue(ctx, rpcWriterKey{}, rw)
		h.ServeHTTP(rw, r.WithContext(ctx))
	}))
}

type rpcWriterKey struct{}

// rpcWriter is the response writer of an EventService call. connect-go
// flushes after every message of a stream; a stream sending a batch of
// events holds the flushes and flushes once after the batch, so the batch
// leaves in a few HTTP/2 frames rather than one per event.
type rpcWriter struct {
	http.ResponseWriter
	hold atomic.Bool
}

// Flush flushes unless a batch is being sent.
func (w *rpcWriter) Flush() {
	if w.hold.Load() {
		return
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the writer underneath.
func (w *rpcWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// batch runs send with the flushes held, then flushes once.
func (w *rpcWriter) batch(send func() error) error {
	if w == nil {
		return send()
	}
	w.hold.Store(true)
	err := send()
	w.hold.Store(false)
	w.Flush()
	return err
}

type rpcAuthKey struct{}

// rpcAuth is what identify said of a call, for its method to check.
type rpcAuth struct {
	p   *Principal
	err *authError
}

// rpcPrincipal returns who made the call, when it holds right.
func (s *Server) rpcPrincipal(ctx context.Context, right Right) (*Principal, error) {
	a, _ := ctx.Value(rpcAuthKey{}).(rpcAuth)
	switch {
	case a.err != nil && a.err.status == http.StatusUnauthorized:
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New(a.err.msg))
	case a.err != nil:
		return nil, connect.NewError(connect.CodePermissionDenied, errors.New(a.err.msg))
	case a.p == nil:
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("no credential"))
	case !a.p.Can(right):
		s.cfg.Logger.Warn("events API: key lacks the right", "key", a.p.Name, "right", right)
		return nil, connect.NewError(connect.CodePermissionDenied, fmt.Errorf("key %q does not hold the %s right", a.p.Name, right))
	}
	return a.p, nil
}

// rpcService implements the EventService.
type rpcService struct {
	eventsv1connect.UnimplementedEventServiceHandler
	s *Server
}

// Publish stores one event, or broadcasts it when it asks not to be stored.
func (r *rpcService) Publish(ctx context.Context, req *connect.Request[eventsv1.PublishEventRequest]) (*connect.Response[eventsv1.PublishEventResponse], error) {
	p, err := r.s.rpcPrincipal(ctx, RightIngest)
	if err != nil {
		return nil, err
	}
	out, cerr := r.s.publishRPC(ctx, p, req.Msg)
	if cerr != nil {
		return nil, cerr
	}
	return connect.NewResponse(out), nil
}

// rpcError is an EventService error: a connect code, and the code and
// message a stream's error response carries.
type rpcError struct {
	code    connect.Code
	name    string // the stream error's code
	message string
}

func (e *rpcError) Error() string { return e.message }

func (e *rpcError) connect() *connect.Error { return connect.NewError(e.code, e) }

func errInvalid(format string, args ...any) *rpcError {
	return &rpcError{code: connect.CodeInvalidArgument, name: codeBadRequest, message: fmt.Sprintf(format, args...)}
}

// publishRPC publishes what req asks, as p.
func (s *Server) publishRPC(ctx context.Context, p *Principal, req *eventsv1.PublishEventRequest) (*eventsv1.PublishEventResponse, *connect.Error) {
	ev, rerr := s.eventOfPublish(ctx, p, req)
	if rerr != nil {
		return nil, rerr.connect()
	}
	if req.Store != nil && !*req.Store {
		if err := s.publishLive(ctx, []Event{*ev}); err != nil {
			s.cfg.Logger.Error("events API: broadcast a live event", "key", p.Name, "error", err)
			return nil, connect.NewError(connect.CodeUnavailable, errors.New("the live event could not be broadcast; retry"))
		}
		return &eventsv1.PublishEventResponse{Id: ev.ID}, nil
	}
	app, err := s.cfg.Store.Append(ctx, []Event{*ev})
	if err != nil {
		s.cfg.Logger.Error("events API: store a published event", "key", p.Name, "error", err)
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("the event store is unavailable; retry"))
	}
	return &eventsv1.PublishEventResponse{Id: ev.ID, Position: app[0].Position, Duplicate: app[0].Duplicate}, nil
}

// eventOfPublish checks a publish request as the ingest routes check an
// event, and returns the event to store.
func (s *Server) eventOfPublish(ctx context.Context, p *Principal, req *eventsv1.PublishEventRequest) (*Event, *rpcError) {
	if req == nil || req.GetName() == "" {
		return nil, errInvalid("publish: name (the topic) is missing")
	}
	tenant := req.GetTenant()
	if p.Tenant != "" {
		if tenant != "" && tenant != p.Tenant {
			return nil, &rpcError{code: connect.CodePermissionDenied, name: codeForbidden,
				message: fmt.Sprintf("key %q may publish only tenant %q's events, not %q's", p.Name, p.Tenant, tenant)}
		}
		tenant = p.Tenant
	}
	data := json.RawMessage("{}")
	if req.GetPayload() != nil {
		b, err := protojson.Marshal(req.GetPayload())
		if err != nil {
			return nil, errInvalid("publish: payload: %v", err)
		}
		data = b
	}
	w := wire.Event{
		ID: req.GetId(), Topic: req.GetName(), Key: req.GetKey(), Tenant: tenant,
		ActorID: req.GetActorId(), ActorType: req.GetActorType(), Data: data, Time: time.Now().UTC(),
	}
	if w.ID == "" {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, &rpcError{code: connect.CodeInternal, name: codeUnavailable, message: "no event id: " + err.Error()}
		}
		w.ID = id.String()
	}
	if err := ingest.Check(s.cfg.Registry, &w); err != nil {
		return nil, &rpcError{code: connect.CodeInvalidArgument, name: codeValidation, message: "publish " + req.GetName() + ": " + err.Error()}
	}
	ev := eventFromWire(&w, wire.Format(FormatAPI))
	ev.Sender = req.GetSender()
	if ev.Sender == "" {
		ev.Sender = p.Name
	}
	if len(ev.Sender) > ingest.MaxIDBytes {
		return nil, errInvalid("publish: sender of %d bytes, at most %d", len(ev.Sender), ingest.MaxIDBytes)
	}
	if m := req.GetRequestMetadata(); m != nil {
		b, err := protojson.Marshal(m)
		if err != nil {
			return nil, errInvalid("publish: request_metadata: %v", err)
		}
		ev.RequestMetadata = b
	}
	t, err := s.resolveTarget(ctx, targetOf(req.GetTarget()))
	switch {
	case errors.Is(err, ErrInvalidTarget):
		return nil, &rpcError{code: connect.CodeInvalidArgument, name: codeValidation, message: "publish: target: " + err.Error()}
	case err != nil:
		s.cfg.Logger.Error("events API: resolve a published event's target", "key", p.Name, "error", err)
		return nil, &rpcError{code: connect.CodeUnavailable, name: codeUnavailable, message: "publish: the target could not be resolved; retry"}
	}
	ev.Target = t
	return &ev, nil
}

func targetOf(t *eventsv1.Target) Target {
	return Target{Collection: t.GetCollection(), Project: t.GetProject(), Layout: t.GetLayout()}
}

func protoTarget(t Target) *eventsv1.Target {
	if t.IsZero() {
		return nil
	}
	return &eventsv1.Target{Collection: t.Collection, Project: t.Project, Layout: t.Layout}
}

// protoEvent is ev as the EventService sends it. JSON values become
// google.protobuf.Value (numbers as doubles).
func protoEvent(ev *Event) *eventsv1.Event {
	out := &eventsv1.Event{
		Position: ev.Position, Id: ev.ID, Topic: ev.Topic, Category: ev.Category, Entity: ev.Entity, Action: ev.Action,
		Key: ev.Key, Tenant: ev.Tenant, ActorId: ev.ActorID, ActorType: ev.ActorType, JobId: ev.JobID,
		CausationId: ev.CausationID, DedupeKey: ev.DedupeKey, Source: ev.Source, Traceparent: ev.Traceparent,
		Format: ev.Format, Target: protoTarget(ev.Target), Sender: ev.Sender, DependsOn: ev.DependsOn,
		Status: string(ev.Status), Description: ev.Description, Retries: int32(ev.Retries), Live: ev.Live,
		RequestMetadata: protoValue(ev.RequestMetadata), Progress: protoValue(ev.Progress), Payload: protoValue(ev.Data),
	}
	if !ev.UpdatedAt.IsZero() {
		out.UpdatedAt = timestamppb.New(ev.UpdatedAt)
	}
	if !ev.Time.IsZero() {
		out.Time = timestamppb.New(ev.Time)
	}
	if !ev.ReceivedAt.IsZero() {
		out.ReceivedAt = timestamppb.New(ev.ReceivedAt)
	}
	return out
}

// protoValue is JSON as a google.protobuf.Value; nil for none, and null for
// what does not parse (stores hold validated JSON).
func protoValue(raw json.RawMessage) *structpb.Value {
	if len(raw) == 0 {
		return nil
	}
	v := &structpb.Value{}
	if err := protojson.Unmarshal(raw, v); err != nil {
		return structpb.NewNullValue()
	}
	return v
}

// subscriptionName reads a stream subscription's name into topic
// patterns: a topic, a prefix ending in "*", or alternatives separated by
// "|".
func subscriptionName(name string) ([]string, error) {
	if strings.TrimSpace(name) == "" {
		return nil, errors.New("name is missing")
	}
	var out []string
	for p := range strings.SplitSeq(name, "|") {
		p = strings.TrimSpace(p)
		if p == "" {
			return nil, fmt.Errorf("name %q has an empty alternative", name)
		}
		out = append(out, p)
	}
	return out, nil
}
