package relay

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/outbox"
)

// A failed event is logged at warn and a dead one at error, each with the
// event's id, topic, key, attempt and error, and never with its data. Here
// the poison fails retryably first, then permanently.
func TestFailureLogs(t *testing.T) {
	t.Parallel()
	pool, poison := poisonSetup(t)
	const secret = "Ada Lovelace, 12 Crescent Road"
	if _, err := pool.Exec(t.Context(), `UPDATE txoutbox_events SET data = json_build_object('name', $1::text)`, secret); err != nil {
		t.Fatal(err)
	}
	var tries atomic.Int32
	sink := &recordingSink{FailFunc: func(_ context.Context, _ int, events []*outbox.Event) error {
		for _, e := range events {
			if e.ID.String() != poison {
				continue
			}
			if tries.Add(1) == 1 {
				return &BatchError{Failed: map[string]error{poison: errors.New("503: busy")}}
			}
			return &BatchError{Failed: map[string]error{poison: Permanent(errors.New("422: amount_cents must be an integer"))}}
		}
		return nil
	}}
	var logs syncBuffer
	cfg := &Config{
		MaxAttempts: 2, RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		PollInterval: 20 * time.Millisecond, LeaseTTL: 900 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	_, stop := startRelay(t, pool, sink, cfg)
	waitFor(t, 10*time.Second, "the poison to be dead", func() bool { return count(t, pool, "status = 'dead'") == 1 })
	stop()

	if strings.Contains(logs.String(), secret) {
		t.Fatalf("an event's data reached the logs:\n%s", logs.String())
	}
	type line struct {
		Level, Msg, EventID, Topic, Key, Err string
		Attempt                              int
		KeyBlocked                           *bool
	}
	var failed, dead []line
	for l := range strings.Lines(logs.String()) {
		var raw map[string]any
		if err := json.Unmarshal([]byte(l), &raw); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if raw["event_id"] != poison {
			continue
		}
		ln := line{Level: raw["level"].(string), Msg: raw["msg"].(string), EventID: raw["event_id"].(string)}
		ln.Topic, _ = raw["topic"].(string)
		ln.Key, _ = raw["key"].(string)
		ln.Err, _ = raw["err"].(string)
		if a, ok := raw["attempt"].(float64); ok {
			ln.Attempt = int(a)
		}
		if b, ok := raw["key_blocked"].(bool); ok {
			ln.KeyBlocked = &b
		}
		switch ln.Msg {
		case "event delivery failed":
			failed = append(failed, ln)
		case "event dead-lettered":
			dead = append(dead, ln)
		}
	}
	const wantErr = "permanent: 422: amount_cents must be an integer"
	if len(failed) != 1 || failed[0].Level != "WARN" || failed[0].Attempt != 1 ||
		failed[0].Topic != "billing.InvoiceCreated" || failed[0].Key != "bad" || failed[0].Err != "503: busy" {
		t.Errorf("failure lines of the poison = %+v, want one at WARN, attempt 1, with topic, key and error", failed)
	}
	if len(dead) != 1 || dead[0].Level != "ERROR" || dead[0].Attempt != 2 ||
		dead[0].Topic != "billing.InvoiceCreated" || dead[0].Key != "bad" || dead[0].Err != wantErr ||
		dead[0].KeyBlocked == nil || !*dead[0].KeyBlocked {
		t.Errorf("dead-letter lines of the poison = %+v, want one at ERROR, attempt 2, key blocked", dead)
	}
}
