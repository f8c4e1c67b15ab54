package eventsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// routeSubscribe serves the live subscriptions, GET /api/stream (sse.go) and
// GET /api/ws (ws.go), and starts the pump that feeds them (hub.go). Close
// stops the pump once every stream has ended.
func (s *Server) routeSubscribe() {
	s.hub = newHub(s.cfg.Store, s.cfg.Logger, s.cfg.MaxSubscribers, s.cfg.SubscriberBuffer)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.hub.run(s.ctx)
	}()
	s.mux.HandleFunc("GET /api/stream", func(w http.ResponseWriter, r *http.Request) {
		if p, ok := s.authorize(w, r, RightSubscribe); ok {
			s.serveStream(w, r, p)
		}
	})
	s.mux.HandleFunc("GET /api/ws", func(w http.ResponseWriter, r *http.Request) {
		if p, ok := s.authorize(w, r, RightSubscribe); ok {
			s.serveWebSocket(w, r, p)
		}
	})
}

// errForbiddenTenant is what scopeFilter answers a tenant-bound principal
// asking for another tenant.
var errForbiddenTenant = errors.New("forbidden tenant")

// scopeFilter restricts f to what p may see: a principal bound to a tenant
// gets f.Tenant set to it, and asking for another tenant is an error
// wrapping errForbiddenTenant.
func scopeFilter(p *Principal, f *Filter) error {
	switch {
	case p.Tenant == "":
		return nil
	case f.Tenant != "" && f.Tenant != p.Tenant:
		return fmt.Errorf("%w: this key sees tenant %q only, not %q", errForbiddenTenant, p.Tenant, f.Tenant)
	}
	f.Tenant = p.Tenant
	return nil
}

// streamContext returns a context that ends with parent or when the server
// closes.
func (s *Server) streamContext(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// subscribeError is the JSON body of an HTTP error from the subscription
// routes, and of notices.
type subscribeError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Codes of subscribeError, WebSocket errors and notices.
const (
	codeBadRequest          = "bad_request"
	codeInvalidFilter       = "invalid_filter"
	codeForbidden           = "forbidden"
	codeTooManySubscribers  = "too_many_subscribers"
	codeUnavailable         = "unavailable"
	codeShutdown            = "shutdown"
	codeSlowConsumer        = "slow_consumer"
	codeGap                 = "gap"
	codeUnknownType         = "unknown_type"
	codeUnknownSubscription = "unknown_subscription"
	codeTooManySubs         = "too_many_subscriptions"
	codeNoSession           = "no_session"
	codeSessionStarted      = "session_started"
	codeReplaced            = "replaced"
)

// writeSubscribeError answers a subscription request that cannot open.
func writeSubscribeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "2")
	}
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(subscribeError{Code: code, Message: message})
}

// admitError answers a stream the hub did not admit.
func (s *Server) admitError(w http.ResponseWriter, err error) {
	if errors.Is(err, errShuttingDown) {
		writeSubscribeError(w, http.StatusServiceUnavailable, codeShutdown, "the server is shutting down; reconnect")
		return
	}
	writeSubscribeError(w, http.StatusServiceUnavailable, codeTooManySubscribers,
		fmt.Sprintf("the server has %d open subscriptions, its limit; retry later", s.cfg.MaxSubscribers))
}

// parsePosition reads a stream position as clients send it: a decimal
// integer, zero or more.
func parsePosition(name, v string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: %q is not a stream position (an integer, 0 or more)", name, v)
	}
	return n, nil
}
