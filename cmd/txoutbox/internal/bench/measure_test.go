package bench

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestMeasureWaitsForACompletion: when no call completes within the
// window, the rate is taken over a longer one, not reported as zero.
func TestMeasureWaitsForACompletion(t *testing.T) {
	var done atomic.Int64
	go func() {
		time.Sleep(150 * time.Millisecond) // one call slower than the window
		done.Add(1)
	}()
	if rate := measure(context.Background(), 0, 20*time.Millisecond, &done); rate <= 0 {
		t.Fatalf("rate %v with one completion after the window, want > 0", rate)
	}
}
