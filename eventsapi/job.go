package eventsapi

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// JobStatus is the state of a job event: an event a worker enrolled for a
// source event and reports on. The lifecycle:
//
//	pending ──► in_progress ──► finished | failed | aborted
//	   │             │
//	   │             └──► restarted ──► pending (enrolled again) ...
//	   └──► restarted | failed | aborted
//
// A move to restarted counts one more retry; past the retry limit
// (Config.JobMaxRetries) the job fails instead. A failed job may be
// restarted by hand while it has retries left. A job in pending or
// in_progress that is not updated for the server's stale timeout
// (Config.JobStaleAfter) is restarted by the server. Enrolment, not an
// update, moves a restarted job back to pending. Finished and aborted are
// final.
type JobStatus string

// The job states.
const (
	JobPending    JobStatus = "pending"
	JobInProgress JobStatus = "in_progress"
	JobFinished   JobStatus = "finished"
	JobFailed     JobStatus = "failed"
	JobAborted    JobStatus = "aborted"
	JobRestarted  JobStatus = "restarted"
)

// jobStates are the states in lifecycle order, for messages.
var jobStates = [...]JobStatus{JobPending, JobInProgress, JobRestarted, JobFinished, JobFailed, JobAborted}

// Terminal reports whether a job in state s never changes again.
func (s JobStatus) Terminal() bool { return s == JobFinished || s == JobAborted }

// Valid reports whether s is one of the job states.
func (s JobStatus) Valid() bool {
	switch s {
	case JobPending, JobInProgress, JobFinished, JobFailed, JobAborted, JobRestarted:
		return true
	}
	return false
}

// CanMove reports whether an update may move a job from s to next. A job
// in progress may "move" to in_progress again: a worker's heartbeat, which
// keeps a long job from going stale.
func (s JobStatus) CanMove(next JobStatus) bool {
	switch s {
	case JobPending:
		return next == JobInProgress || next == JobFailed || next == JobAborted || next == JobRestarted
	case JobInProgress:
		return next == JobInProgress || next == JobFinished || next == JobFailed || next == JobAborted || next == JobRestarted
	case JobRestarted:
		return next == JobInProgress || next == JobFailed || next == JobAborted
	case JobFailed:
		return next == JobRestarted
	}
	return false
}

// Allowed returns the states an update may move a job in state s to.
func (s JobStatus) Allowed() []JobStatus {
	var out []JobStatus
	for _, n := range jobStates {
		if s.CanMove(n) {
			out = append(out, n)
		}
	}
	return out
}

// Errors of job updates.
var (
	// ErrIllegalTransition is wrapped by the errors of updates the
	// lifecycle does not allow (*IllegalTransitionError).
	ErrIllegalTransition = errors.New("eventsapi: illegal job transition")
	// ErrNotAJob is wrapped by the errors of job operations on an event
	// that is not a job (it has no status).
	ErrNotAJob = errors.New("eventsapi: not a job")
	// ErrJobClosed is wrapped by the error of a progress report on a job
	// that has ended (finished, failed or aborted).
	ErrJobClosed = errors.New("eventsapi: job has ended")
)

// IllegalTransitionError is an update the job lifecycle does not allow. It
// wraps ErrIllegalTransition.
type IllegalTransitionError struct {
	ID       string
	From, To JobStatus
	// Allowed are the states the job may move to; none when From is final.
	Allowed []JobStatus
	// Reason, when set, says why a move the lifecycle has is refused.
	Reason string
}

func (e *IllegalTransitionError) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("job %s: %s → %s: %s", e.ID, e.From, e.To, e.Reason)
	}
	if len(e.Allowed) == 0 {
		return fmt.Sprintf("job %s: %s → %s: %s is final", e.ID, e.From, e.To, e.From)
	}
	names := make([]string, len(e.Allowed))
	for i, s := range e.Allowed {
		names[i] = string(s)
	}
	return fmt.Sprintf("job %s: %s → %s is not allowed; from %s a job moves to %s", e.ID, e.From, e.To, e.From, strings.Join(names, ", "))
}

// Unwrap returns ErrIllegalTransition.
func (e *IllegalTransitionError) Unwrap() error { return ErrIllegalTransition }

// applyJobUpdate changes job ev by u, as of now: the lifecycle's rules in
// one place, for every store. A move to restarted counts a retry, or fails
// the job once it has had maxRetries (none when maxRetries is 0).
func applyJobUpdate(ev *Event, u JobUpdate, maxRetries int, now time.Time) error {
	if ev.Status == "" {
		return fmt.Errorf("%w: event %s has no status", ErrNotAJob, ev.ID)
	}
	next := u.Status
	switch {
	case next == "" && ev.Status.Terminal():
		return &IllegalTransitionError{ID: ev.ID, From: ev.Status, To: ev.Status}
	case next == "":
	case !ev.Status.CanMove(next):
		return &IllegalTransitionError{ID: ev.ID, From: ev.Status, To: next, Allowed: ev.Status.Allowed()}
	case next == JobRestarted && ev.Retries >= maxRetries:
		if ev.Status == JobFailed {
			return &IllegalTransitionError{ID: ev.ID, From: ev.Status, To: next,
				Reason: fmt.Sprintf("the job had its %d retries", maxRetries)}
		}
		ev.Status = JobFailed
	case next == JobRestarted:
		ev.Status = next
		ev.Retries++
	default:
		ev.Status = next
	}
	if u.Description != nil {
		ev.Description = *u.Description
	}
	ev.UpdatedAt = now
	return nil
}
