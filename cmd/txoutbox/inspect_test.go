package main

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/txoutbox/txoutbox/internal/eventstest"
)

// TestInspectStates lists the events of every state txoutbox status shows
// with inspect --state, on an outbox seeded with one event in each.
func TestInspectStates(t *testing.T) {
	t.Parallel()
	url, pool := newOutboxDB(t)
	seeded := eventstest.SeedStates(t, pool)
	for flag, state := range map[string]string{
		"pending": "pending", "in-flight": "in_flight", "in_flight": "in_flight", "retrying": "retrying",
		"blocked": "blocked", "unclaimed": "unclaimed", "delivered": "delivered", "dead": "dead",
	} {
		var out bytes.Buffer
		if err := dispatch(t.Context(), []string{"inspect", "--database-url", url, "--state", flag, "--json"}, &out, io.Discard); err != nil {
			t.Errorf("inspect --state %s: %v", flag, err)
			continue
		}
		var evs []struct{ ID uuid.UUID }
		if err := json.Unmarshal(out.Bytes(), &evs); err != nil {
			t.Fatalf("inspect --state %s --json: %v\n%s", flag, err, out.String())
		}
		var got []uuid.UUID
		for _, e := range evs {
			got = append(got, e.ID)
		}
		if want := seeded[state]; len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("inspect --state %s: %v, want %v", flag, got, want)
		}
	}
	err := dispatch(t.Context(), []string{"inspect", "--database-url", url, "--state", "stuck"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `--state: "stuck" is not pending (in-flight, retrying, blocked, unclaimed), delivered or dead`) {
		t.Errorf("inspect --state stuck: %v", err)
	}
}
