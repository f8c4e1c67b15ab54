package outbox

import "context"

type sessionKey struct{}

// NewContext returns a copy of ctx that carries s. The outbox middleware
// calls it once per request; handlers read the session back with FromContext.
func NewContext(ctx context.Context, s *Session) context.Context {
	return context.WithValue(ctx, sessionKey{}, s)
}

// FromContext returns the session that NewContext stored in ctx; false
// when ctx has none, because the handler runs outside the outbox middleware.
// A handler that cannot go on without a session answers with ErrNoSession:
//
//	sess, ok := outbox.FromContext(r.Context())
//	if !ok {
//		http.Error(w, outbox.ErrNoSession.Error(), http.StatusInternalServerError)
//		return
//	}
func FromContext(ctx context.Context) (*Session, bool) {
	s, ok := ctx.Value(sessionKey{}).(*Session)
	return s, ok && s != nil
}
