package outbox

import (
	"errors"
	"fmt"

	"github.com/txoutbox/txoutbox/internal/envelope"
)

var (
	// ErrNoSession says that a request's context carries no session: the
	// handler runs outside the outbox middleware. outboxecho.Session returns
	// it; a handler that finds no session with FromContext can answer with it.
	ErrNoSession = errors.New("outbox: no session in context (is the outbox middleware installed on this route?)")

	// ErrEventTooLarge is returned by Publish when an event's data is larger
	// than Config.MaxEventBytes. Nothing is buffered.
	ErrEventTooLarge = errors.New("outbox: event data too large")

	// ErrInvalidActor is matched by the error of Publish when the session's
	// actor id is one the events API refuses: fewer than 5 characters, or
	// not UTF-8. Checking at Publish turns a rejection by the API, long
	// after the transaction committed, into an error the request can still
	// report. New refuses a Config.Source that breaks the same rule.
	ErrInvalidActor = errors.New("invalid actor id")

	// ErrInvalidTraceparent is returned by Publish when the session was given
	// a traceparent that is not a valid W3C trace context.
	ErrInvalidTraceparent = errors.New("outbox: invalid traceparent")

	// ErrInvalidTarget is matched by a *TargetError.
	ErrInvalidTarget = errors.New("outbox: invalid target")

	// ErrInvalidField is matched by a *FieldError.
	ErrInvalidField = errors.New("outbox: invalid field")

	// ErrInvalidConfig is wrapped by the errors of New and Migrate that name
	// a bad configuration field.
	ErrInvalidConfig = errors.New("invalid configuration")
)

// EncodeError is returned by Publish when the event data cannot be encoded as
// JSON: NaN or infinite floats, cycles, channels, or a json.RawMessage that
// is not valid JSON. Nothing is buffered.
type EncodeError struct {
	Topic string // full topic name, e.g. billing.InvoiceCreated
	Err   error
}

func (e *EncodeError) Error() string {
	return fmt.Sprintf("outbox: encode data of %s: %v", e.Topic, e.Err)
}

func (e *EncodeError) Unwrap() error { return e.Err }

// FieldError is returned by Publish when an envelope field — the ordering
// key (from the data or WithKey), the dedupe key, the tenant, the job id or
// the actor id — holds text Postgres cannot store: a NUL byte or invalid
// UTF-8. Refusing it at Publish keeps Flush from failing inside, and
// aborting, the caller's transaction. Nothing is buffered.
type FieldError struct {
	Topic  string // full topic name
	Field  string // "key", "dedupe key", "tenant", "job id" or "actor id"
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("outbox: publish %s: %s %s", e.Topic, e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidField) true for a *FieldError.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidField }

// MaxTargetBytes bounds each level of a Target, as the events API does.
const MaxTargetBytes = envelope.MaxTargetBytes

// TargetError is returned by Publish when the target given with WithTarget
// skips a level (a project without its collection, a layout without its
// project), or has a level longer than MaxTargetBytes, not UTF-8 or with a
// NUL byte. The events API would refuse the event; refusing it at Publish
// reports it while the request can still say so. Nothing is buffered.
type TargetError struct {
	Topic  string // full topic name
	Target Target
	Reason string
}

func (e *TargetError) Error() string {
	return fmt.Sprintf("outbox: publish %s: target: %s", e.Topic, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidTarget) true for a *TargetError.
func (e *TargetError) Is(target error) bool { return target == ErrInvalidTarget }
