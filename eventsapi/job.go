package eventsapi

// JobStatus is the state of a job event: an event a worker enrolled for a
// source event and reports on. The lifecycle:
//
//	pending ──► in_progress ──► finished | failed | aborted
//	   │             │
//	   │             └──► restarted ──► pending (enrolled again) ...
//	   └──► aborted | failed
//
// A restarted job counts one more retry; one past the retry limit fails
// instead. A job in pending or in_progress that is not updated for the
// server's stale timeout is restarted by the server.
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

// CanMove reports whether a job may move from s to next.
func (s JobStatus) CanMove(next JobStatus) bool {
	switch s {
	case JobPending:
		return next == JobInProgress || next == JobFailed || next == JobAborted || next == JobRestarted
	case JobInProgress:
		return next == JobInProgress || next == JobFinished || next == JobFailed || next == JobAborted || next == JobRestarted
	case JobRestarted:
		return next == JobPending || next == JobInProgress || next == JobFailed || next == JobAborted
	case JobFailed:
		return next == JobRestarted
	}
	return false
}
