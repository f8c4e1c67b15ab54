package faults

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/relay"
)

// modes are the relay's delivery modes, each of which the fault tests run
// in: ModePoll and ModeWAL deliver rows of the table, ModeMessages the
// logical decoding messages of producers with outbox.StorageMessages.
var modes = []relay.Mode{relay.ModePoll, relay.ModeWAL, relay.ModeMessages}

// forEachMode runs fn as a parallel subtest per delivery mode, named
// mode=poll, mode=wal and mode=messages (go test -run 'Fault/mode=wal'
// picks one).
func forEachMode(t *testing.T, fn func(t *testing.T, mode relay.Mode)) {
	t.Helper()
	forModes(t, modes, fn)
}

// forModes is forEachMode for some of the modes.
func forModes(t *testing.T, modes []relay.Mode, fn func(t *testing.T, mode relay.Mode)) {
	t.Helper()
	for _, mode := range modes {
		t.Run("mode="+string(mode), func(t *testing.T) {
			t.Parallel()
			fn(t, mode)
		})
	}
}

// walPollInterval is the relays' poll interval in the WAL modes: their
// default, so that the stream, not the polls, finds the events (in ModePoll
// the suite polls every 20ms).
const walPollInterval = time.Second

// pollInterval returns the relays' poll interval in mode.
func pollInterval(mode relay.Mode) time.Duration {
	if mode == relay.ModePoll {
		return 20 * time.Millisecond
	}
	return walPollInterval
}

// envKills names the environment variable that sets how many times
// TestFaultRelaySIGKILL kills the relay, in every mode, over the default
// (and over -fault.long's 50).
const envKills = "TXOUTBOX_FAULT_KILLS"

// killCount returns how many relays TestFaultRelaySIGKILL kills in mode:
// envKills when set, else 50 with -fault.long, else 10 in ModePoll and 20 in
// the WAL modes, whose streams and slots are newer.
func killCount(t testing.TB, mode relay.Mode) int {
	t.Helper()
	if s := os.Getenv(envKills); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", envKills, s)
		}
		return n
	}
	if mode == relay.ModePoll {
		return pick(10, 50)
	}
	return pick(20, 50)
}

// name returns a fault's name in the summary line, with the mode.
func (e *env) name(fault string) string {
	return fmt.Sprintf("%s mode=%s", fault, e.mode)
}
