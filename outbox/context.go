package outbox

import "context"

type sessionKey struct{}

// NewContext returns a copy of ctx that carries s. The outbox middleware
// calls it once per request; handlers read the session back with FromContext.
func NewContext(ctx context.Context, s *Session) context.Context {
	return context.WithValue(ctx, sessionKey{}, s)
}

// FromContext returns the session that NewContext stored in ctx.
func FromContext(ctx context.Context) (*Session, bool) {
	s, ok := ctx.Value(sessionKey{}).(*Session)
	return s, ok && s != nil
}

// SessionFromContext is FromContext for code that cannot go on without a
// session: it returns ErrNoSession, never a nil session, when ctx has none.
func SessionFromContext(ctx context.Context) (*Session, error) {
	s, ok := FromContext(ctx)
	if !ok {
		return nil, ErrNoSession
	}
	return s, nil
}
