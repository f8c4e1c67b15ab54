package relay

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"

	"github.com/txoutbox/txoutbox/outbox"
)

// TestSinkPauseShared checks, in a bubble with a fake clock, that a
// Retry-After one sender of a relay receives holds back the relay's other
// senders too (in ModeMessages the stream and the table's loop send to the
// same sink): the next Send, whoever makes it, waits the whole of it, and
// a sender whose ctx ends while it waits sends nothing.
func TestSinkPauseShared(t *testing.T) {
	t.Parallel()
	const after = 3 * time.Second
	pool := newTestDB(t)
	synctest.Test(t, func(t *testing.T) {
		sink := &recordingSink{FailFunc: func(_ context.Context, call int, _ []*outbox.Event) error {
			if call == 1 {
				return RetryAfter(errors.New("429 Too Many Requests"), after)
			}
			return nil
		}}
		r, err := New(pool, sink, &Config{Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		newRow := func(key string) *row {
			return &row{key: key, ev: outbox.Event{ID: uuid.New(), Topic: "billing.InvoiceCreated", Key: key}}
		}
		a := newRow("a")
		if out := r.deliver(t.Context(), []*row{a}); len(out.failed) != 1 { // the stream, say
			t.Fatalf("the first Send: %+v, want it failed", out)
		}
		answered := time.Now()
		b := newRow("b")
		if out := r.deliver(t.Context(), []*row{b}); len(out.delivered) != 1 { // the table's loop
			t.Fatalf("the second Send: %+v, want it delivered", out)
		}
		if waited := sink.attempts(b.ev.ID.String())[0].Sub(answered); waited < after {
			t.Errorf("the other sender sent %s after the sink asked for %s", waited, after)
		}

		r.sinkPause.extend(time.Now().Add(after))
		ctx, cancel := context.WithTimeout(t.Context(), after/2)
		defer cancel()
		if out := r.deliver(ctx, []*row{newRow("c")}); len(out.unsent) != 1 || sink.callCount() != 2 {
			t.Errorf("a Send whose ctx ended in the pause: %+v, %d calls, want it unsent", out, sink.callCount())
		}
	})
}
