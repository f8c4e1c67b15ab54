package relay

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/topics"
)

// A dead event of a topic whose policy is skip leaves its key flowing, while
// one of a topic on the default block policy holds its key, both when it is
// dead-lettered and when the relay reloads the dead keys from the table.
func TestPoisonPolicyFunc(t *testing.T) {
	t.Parallel()
	pool := newTestDB(t)
	insertEvents(t, pool, cycleKeys(20, 4)...)
	insertEvents(t, pool, "bad", "bad", "bad", "gap", "gap", "gap")
	insertEvents(t, pool, cycleKeys(20, 4)...)
	if _, err := pool.Exec(t.Context(), `UPDATE txoutbox_events SET topic = 'billing.InvoiceOverdue' WHERE key = 'gap'`); err != nil {
		t.Fatal(err)
	}
	var poison []string
	if err := pool.QueryRow(t.Context(), `SELECT array_agg(id::text) FROM (
		SELECT DISTINCT ON (key) id FROM txoutbox_events WHERE key IN ('bad', 'gap') ORDER BY key, seq) f`).Scan(&poison); err != nil {
		t.Fatal(err)
	}
	sink := newPoisonSink(poison...)
	var mu sync.Mutex
	blocking := make(map[string]bool)
	cfg := &Config{
		MaxAttempts: 2, RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		PollInterval: 20 * time.Millisecond, LeaseTTL: 900 * time.Millisecond,
		PoisonPolicyFunc: func(topic string) PoisonPolicy {
			if topic == "billing.InvoiceOverdue" {
				return PoisonSkip
			}
			return "" // Config.PoisonPolicy: block
		},
		Hooks: Hooks{DeadFunc: func(d DeadEvent) { mu.Lock(); blocking[d.Key] = d.Blocking; mu.Unlock() }},
	}
	r, _ := startRelay(t, pool, sink, cfg)
	waitFor(t, 10*time.Second, "the other keys and gap's later events", func() bool { return sink.distinct() == 42 })
	waitFor(t, 10*time.Second, "both poisons dead", func() bool { return count(t, pool, "status = 'dead'") == 2 })

	// More events for both keys, then polls past a reload of the dead
	// keys (every LeaseTTL/3).
	insertEvents(t, pool, "gap", "bad")
	r.Wake()
	waitFor(t, 10*time.Second, "gap's new event", func() bool { return sink.distinct() == 43 })
	since := time.Now()
	waitFor(t, 10*time.Second, "a reload of the dead keys", func() bool {
		return r.LastPoll().After(since.Add(cfg.LeaseTTL/3 + 100*time.Millisecond))
	})
	if n := sink.distinct(); n != 43 {
		t.Fatalf("%d events delivered, want 43: the blocked key got through", n)
	}
	insertEvents(t, pool, "gap")
	r.Wake()
	waitFor(t, 10*time.Second, "gap's event after the reload", func() bool { return sink.distinct() == 44 })
	if n := count(t, pool, "key = 'bad' AND status = 'pending'"); n != 3 {
		t.Fatalf("%d events of key bad pending, want 3", n)
	}
	var gap []int
	for _, d := range sink.delivered() {
		if d.Key == "gap" {
			gap = append(gap, d.N)
		}
	}
	if len(gap) != 4 || !slices.IsSorted(gap) {
		t.Errorf("key gap delivered %v, want its 4 events after the dead one, in order", gap)
	}
	mu.Lock()
	if len(blocking) != 2 || !blocking["bad"] || blocking["gap"] {
		t.Errorf("DeadFunc Blocking by key = %v, want bad blocking and gap not", blocking)
	}
	mu.Unlock()
}

func TestPoisonPolicyFromTopics(t *testing.T) {
	t.Parallel()
	reg, err := topics.Load("../topic_definitions.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fn := PoisonPolicyFromTopics(reg)
	cfg := (&Config{PoisonPolicyFunc: fn}).withDefaults()
	for topic, want := range map[string]PoisonPolicy{
		"billing.InvoiceOverdue": PoisonSkip,  // Poison: skip
		"billing.InvoiceCreated": PoisonBlock, // no Poison key: the relay's default
		"billing.NoSuchTopic":    PoisonBlock,
	} {
		if got := cfg.poisonPolicy(topic); got != want {
			t.Errorf("policy of %s = %q, want %q", topic, got, want)
		}
	}
	if got := fn("billing.InvoiceCreated"); got != "" {
		t.Errorf("PoisonPolicyFromTopics for a topic without Poison = %q, want \"\"", got)
	}

	// The relay's own policy fills in for topics without one, and for
	// values that are no policy.
	skip := (&Config{PoisonPolicy: PoisonSkip, PoisonPolicyFunc: func(string) PoisonPolicy { return "drop" }}).withDefaults()
	if got := skip.poisonPolicy("billing.InvoiceCreated"); got != PoisonSkip {
		t.Errorf("policy for an invalid PoisonPolicyFunc value = %q, want Config.PoisonPolicy skip", got)
	}
	if nilReg := PoisonPolicyFromTopics(nil); nilReg("billing.InvoiceOverdue") != "" {
		t.Error("PoisonPolicyFromTopics(nil) returned a policy")
	}
}
