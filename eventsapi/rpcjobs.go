package eventsapi

import (
	"context"
	"encoding/json"
	"errors"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/txoutbox/txoutbox/eventsapi/eventsv1"
)

// Enroll is POST /api/enroll as an RPC.
func (r *rpcService) Enroll(ctx context.Context, req *connect.Request[eventsv1.EnrollRequest]) (*connect.Response[eventsv1.EnrollResponse], error) {
	p, err := r.s.rpcPrincipal(ctx, RightJobs)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	er := EnrollRequest{SourceTopic: m.GetSourceTopic(), TargetTopic: m.GetTargetTopic(), Sender: m.GetSender(), Description: m.GetDescription()}
	for _, c := range m.GetConditions() {
		v := json.RawMessage("null")
		if c.GetValue() != nil {
			if v, err = protojson.Marshal(c.GetValue()); err != nil {
				return nil, connect.NewError(connect.CodeInvalidArgument, err)
			}
		}
		er.Conditions = append(er.Conditions, Condition{Key: c.GetKey(), Value: v})
	}
	res, ok, err := r.s.enroll(ctx, p, er)
	if err != nil {
		return nil, r.s.rpcJobError(ctx, p, "enroll", err)
	}
	out := &eventsv1.EnrollResponse{Enrolled: ok}
	if ok {
		out.SourceId, out.JobId, out.Job = res.Source.ID, res.Job.ID, protoEvent(&res.Job)
	}
	return connect.NewResponse(out), nil
}

// UpdateJob is PATCH /api/events/{id} as an RPC.
func (r *rpcService) UpdateJob(ctx context.Context, req *connect.Request[eventsv1.UpdateJobRequest]) (*connect.Response[eventsv1.UpdateJobResponse], error) {
	p, err := r.s.rpcPrincipal(ctx, RightJobs)
	if err != nil {
		return nil, err
	}
	u := JobUpdate{Status: JobStatus(req.Msg.GetStatus()), Description: req.Msg.Description}
	ev, err := r.s.updateJob(ctx, p, req.Msg.GetId(), u)
	if err != nil {
		return nil, r.s.rpcJobError(ctx, p, "update job", err)
	}
	return connect.NewResponse(&eventsv1.UpdateJobResponse{Job: protoEvent(&ev)}), nil
}

// ReportProgress is POST /api/events/{id}/progress as an RPC.
func (r *rpcService) ReportProgress(ctx context.Context, req *connect.Request[eventsv1.ReportProgressRequest]) (*connect.Response[eventsv1.ReportProgressResponse], error) {
	p, err := r.s.rpcPrincipal(ctx, RightJobs)
	if err != nil {
		return nil, err
	}
	progress := json.RawMessage("null")
	if req.Msg.GetProgress() != nil {
		if progress, err = protojson.Marshal(req.Msg.GetProgress()); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, err)
		}
	}
	if err := r.s.reportProgress(ctx, p, req.Msg.GetId(), progress); err != nil {
		return nil, r.s.rpcJobError(ctx, p, "report progress", err)
	}
	return connect.NewResponse(&eventsv1.ReportProgressResponse{}), nil
}

// rpcJobError maps a job operation's error to its gRPC code, as jobError
// maps it to an HTTP status.
func (s *Server) rpcJobError(ctx context.Context, p *Principal, what string, err error) error {
	var tooLarge *LiveTooLargeError
	switch {
	case errors.Is(err, ErrInvalidJobRequest):
		return connect.NewError(connect.CodeInvalidArgument, err)
	case errors.Is(err, ErrNotFound):
		return connect.NewError(connect.CodeNotFound, errors.New("no such event"))
	case errors.Is(err, ErrNotAJob), errors.Is(err, ErrIllegalTransition), errors.Is(err, ErrJobClosed):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.As(err, &tooLarge):
		return connect.NewError(connect.CodeResourceExhausted, err)
	case errors.Is(err, ErrJobsUnsupported):
		return connect.NewError(connect.CodeUnimplemented, err)
	case ctx.Err() != nil:
		return connect.NewError(connect.CodeCanceled, ctx.Err())
	}
	s.cfg.Logger.Error("events API: "+what, "principal", p.Name, "error", err)
	return connect.NewError(connect.CodeUnavailable, errors.New("the event store is unavailable; retry"))
}
