package pgtest

import (
	"errors"
	"fmt"
	"strings"
)

// ErrClosed is returned by Restart on a cluster that has been closed: its data
// directory is gone.
var ErrClosed = errors.New("pgtest: cluster is closed")

// NotFoundError reports that no PostgreSQL server binaries were found and no
// server was configured. Its message says how to fix that, because the reader is
// usually someone running the tests for the first time.
type NotFoundError struct {
	// Searched lists the directories that were looked in, in order.
	Searched []string
}

func (e *NotFoundError) Error() string {
	return "pgtest: no PostgreSQL server binaries (initdb and postgres) found" +
		" (searched PATH, pg_config --bindir and the usual install directories: " +
		strings.Join(e.Searched, ", ") + "); " +
		"install PostgreSQL (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@15; " +
		"Fedora: dnf install postgresql-server) or set " + EnvURL +
		" to the URL of a server the tests may create databases on, e.g. " +
		EnvURL + "=postgres://postgres@127.0.0.1:5432/postgres"
}

// StartError reports a failed step of bringing up a cluster (initdb, the server
// start, waiting for it to accept connections). Log carries the tail of the
// server's log or initdb's output, since that is where the reason is.
type StartError struct {
	// Step names what failed, e.g. "initdb" or "start postgres".
	Step string
	// Dir is the cluster's directory.
	Dir string
	// Log is the last lines of the server log or of initdb's output; may be empty.
	Log string
	// Err is the underlying error.
	Err error
}

func (e *StartError) Error() string {
	msg := fmt.Sprintf("pgtest: %s in %s: %v", e.Step, e.Dir, e.Err)
	if e.Log != "" {
		msg += "\n--- last lines of the log ---\n" + e.Log
	}
	return msg
}

func (e *StartError) Unwrap() error { return e.Err }
