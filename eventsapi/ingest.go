package eventsapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/txoutbox/txoutbox/internal/ingest"
	"github.com/txoutbox/txoutbox/internal/wire"
	"github.com/txoutbox/txoutbox/outbox"
)

// routeIngest serves the ingest routes (internal/ingest) to callers with
// the ingest right, storing each post with one Store.Append.
func (s *Server) routeIngest() {
	h, err := ingest.New(ingest.Config{
		Registry:     s.cfg.Registry,
		MaxBodyBytes: s.cfg.MaxBodyBytes,
		CheckFunc:    s.checkTarget,
		StoreFunc:    s.storePost,
		RejectFunc:   s.recordRejections,
	})
	if err != nil {
		panic(err) // New applied the defaults ingest.New checks
	}
	h.Register(s.mux, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, ok := s.authorize(w, r, RightIngest)
			if !ok {
				return
			}
			next.ServeHTTP(w, r.WithContext(withPrincipal(r.Context(), p)))
		})
	})
}

// storePost stores the valid events of a post. A key bound to a tenant
// posts that tenant's events: an event naming no tenant gets the key's, one
// naming another is refused with the whole post (403), which senders treat
// as a misconfiguration to fix, not as bad events to drop.
func (s *Server) storePost(ctx context.Context, p *ingest.Post) ([]ingest.Outcome, error) {
	pr := principalFrom(ctx)
	evs := make([]Event, len(p.Events))
	var foreign []string
	for i := range p.Events {
		w := &p.Events[i]
		if pr.Tenant != "" && w.Tenant != pr.Tenant {
			if w.Tenant != "" {
				foreign = append(foreign, fmt.Sprintf("event %d (%s) names tenant %q", i, w.ID, w.Tenant))
				continue
			}
			w.Tenant = pr.Tenant
		}
		evs[i] = eventFromWire(w, p.Format)
		evs[i].Sender = pr.Name
	}
	if len(foreign) > 0 {
		s.cfg.Logger.Warn("events API: refused events of another tenant", "key", pr.Name, "tenant", pr.Tenant, "events", len(foreign))
		if len(foreign) > 5 {
			foreign = append(foreign[:5], fmt.Sprintf("and %d more", len(foreign)-5))
		}
		return nil, &ingest.Error{Status: http.StatusForbidden, Code: ingest.CodeForbidden,
			Message: fmt.Sprintf("key %q may post only tenant %q's events: %s", pr.Name, pr.Tenant, strings.Join(foreign, "; "))}
	}
	app, err := s.cfg.Store.Append(ctx, evs)
	if err != nil {
		s.cfg.Logger.Error("events API: store events", "key", pr.Name, "events", len(evs), "error", err)
		return nil, err
	}
	outs := make([]ingest.Outcome, len(app))
	for i, a := range app {
		outs[i].Duplicate = a.Duplicate
	}
	return outs, nil
}

// checkTarget completes and checks an ingested event's target
// (resolveTarget). A target it refuses fails the event; a resolver that
// cannot tell fails the post with 503, for the sender to retry.
func (s *Server) checkTarget(ctx context.Context, w *wire.Event) error {
	t, err := s.resolveTarget(ctx, Target(w.Target))
	switch {
	case errors.Is(err, ErrInvalidTarget):
		return err
	case err != nil:
		s.cfg.Logger.Error("events API: resolve target", "event", w.ID, "error", err)
		return &ingest.Error{Status: http.StatusServiceUnavailable, Code: ingest.CodeUnavailable,
			Message: "the events' targets could not be resolved; retry", RetryAfter: 1}
	}
	w.Target = outbox.Target(t)
	return nil
}

// eventFromWire is the Event to store for an event as the wire carried it.
func eventFromWire(w *wire.Event, format wire.Format) Event {
	return Event{
		ID:          w.ID,
		Topic:       w.Topic,
		Category:    w.Category,
		Entity:      w.Entity,
		Action:      w.Action,
		Key:         w.Key,
		Tenant:      w.Tenant,
		ActorID:     w.ActorID,
		ActorType:   w.ActorType,
		JobID:       w.JobID,
		CausationID: w.CausationID,
		DedupeKey:   w.DedupeKey,
		Source:      w.Source,
		Traceparent: w.Traceparent,
		Target:      Target(w.Target),
		Format:      string(format),
		Time:        w.Time,
		Data:        w.Data,
	}
}
