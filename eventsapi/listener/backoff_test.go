package listener

import (
	"context"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/eventsapi"
)

// TestBackoff: waits are random from zero up to a ceiling that doubles
// with each failure, from BackoffBase or the server's retry hint when
// larger, to BackoffMax: listeners cut off together do not come back
// together.
func TestBackoff(t *testing.T) {
	t.Parallel()
	l, err := New(&Config{URL: "http://127.0.0.1:1", BackoffBase: 100 * time.Millisecond, BackoffMax: 30 * time.Second},
		func(context.Context, *eventsapi.Event) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		failures       int
		retry, ceiling time.Duration
	}{
		{0, 0, 100 * time.Millisecond},
		{3, 0, 800 * time.Millisecond},
		{0, 2 * time.Second, 2 * time.Second}, // the hint, larger, is the base
		{2, 2 * time.Second, 8 * time.Second},
		{0, 10 * time.Millisecond, 100 * time.Millisecond}, // a smaller hint is not
		{10, 2 * time.Second, 30 * time.Second},            // BackoffMax caps it
		{100, 0, 30 * time.Second},
	}
	for _, tt := range tests {
		var low, high int
		for range 2000 {
			w := l.backoff(tt.failures, tt.retry)
			if w < 0 || w > tt.ceiling {
				t.Fatalf("backoff(%d, %s) = %s, outside [0, %s]", tt.failures, tt.retry, w, tt.ceiling)
			}
			switch {
			case w < tt.ceiling/4:
				low++
			case w > tt.ceiling*3/4:
				high++
			}
		}
		// Uniform: about 500 of 2000 in each quarter.
		if low < 350 || high < 350 {
			t.Errorf("backoff(%d, %s): %d waits in the lowest quarter, %d in the highest, of 2000; want about 500 each", tt.failures, tt.retry, low, high)
		}
	}
}
