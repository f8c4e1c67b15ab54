package relay

import (
	"errors"
	"fmt"
	"time"
)

// Permanent marks a delivery error as not worth retrying: the relay records
// it and dead-letters the event at once, as River's JobCancel does. A sink
// returns it for answers such as HTTP 400 or 422, where sending the same
// event again cannot succeed.
//
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return "permanent: " + e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// RetryAfter marks a delivery error as temporary and asks the relay to wait at
// least d before the next attempt, as an HTTP 429 or 503 with a Retry-After
// header does. The relay still applies its own backoff when that is longer.
func RetryAfter(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &retryAfterError{err: err, after: d}
}

type retryAfterError struct {
	err   error
	after time.Duration
}

func (e *retryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.err, e.after)
}
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfterOf returns the wait requested with RetryAfter, if any.
func RetryAfterOf(err error) (time.Duration, bool) {
	var r *retryAfterError
	if errors.As(err, &r) {
		return r.after, true
	}
	return 0, false
}

// BatchError reports the outcome of a Send in which some events were
// delivered and some were not. Failed maps the id of each event that was not
// delivered (outbox.Event.ID.String()) to its error, which may be
// Permanent, RetryAfter or ErrNotSent; every event of the batch not named in
// Failed was delivered. A sink that returns any other error from Send fails
// the whole batch.
type BatchError struct {
	Failed map[string]error
}

func (e *BatchError) Error() string {
	return fmt.Sprintf("%d event(s) of the batch failed", len(e.Failed))
}

// ErrNotSent is what a sink reports, in a [*BatchError], for an event it did
// not send at all: a request before it failed and the sink stopped there, an
// earlier event of its key failed, or the relay cut the batch short. The
// relay leaves such an event pending as it was, without counting an attempt
// or waiting for a backoff: only events the sink sent and saw fail (answered
// with an error, or in a request that failed) count an attempt. Wrap it to
// say why: fmt.Errorf("held back: %w", relay.ErrNotSent).
var ErrNotSent = errors.New("not sent")
