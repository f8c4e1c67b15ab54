package relay

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestDeliveryCut checks, in a bubble with a fake clock, when a batch's
// delivery is told to stop sending: not while its leases are renewed, even
// for a batch many leases long; LeaseTTL/3 before a lease that was not
// renewed ends; and at once when a lease of the batch is lost.
func TestDeliveryCut(t *testing.T) {
	const ttl = 3 * time.Second
	parts := []int16{1, 2, 3}

	t.Run("renewed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var l leaseSet
			l.set(parts, time.Now().Add(ttl))
			l.begin(time.Now(), ttl/3)
			ctx, stop := l.deliverContext(t.Context())
			defer stop()
			for range 30 { // ten leases long, renewed every LeaseTTL/3
				time.Sleep(ttl / 3)
				l.set(parts, time.Now().Add(ttl))
				synctest.Wait()
				if err := SendCut(ctx); err != nil {
					t.Fatalf("cut while the leases are renewed: %v", err)
				}
			}
		})
	})

	t.Run("not renewed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var l leaseSet
			start := time.Now()
			l.set(parts, start.Add(ttl))
			l.begin(start, ttl/3)
			ctx, stop := l.deliverContext(t.Context())
			defer stop()
			time.Sleep(ttl - ttl/3 - time.Millisecond)
			synctest.Wait()
			if err := SendCut(ctx); err != nil {
				t.Fatalf("cut %s into a %s lease: %v", time.Since(start), ttl, err)
			}
			time.Sleep(2 * time.Millisecond)
			synctest.Wait()
			if err := SendCut(ctx); !errors.Is(err, errLeaseEnding) {
				t.Fatalf("SendCut %s into a %s lease never renewed = %v, want %v", time.Since(start), ttl, err, errLeaseEnding)
			}
		})
	})

	t.Run("lost", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var l leaseSet
			l.set(parts, time.Now().Add(ttl))
			l.begin(time.Now(), ttl/3)
			ctx, stop := l.deliverContext(t.Context())
			defer stop()
			l.set(parts[:2], time.Now().Add(ttl)) // partition 3 went to another relay
			if err := SendCut(ctx); !errors.Is(err, errLeaseLost) {
				t.Fatalf("SendCut after a lease of the batch was lost = %v, want %v", err, errLeaseLost)
			}
		})
	})

	t.Run("cancelled", func(t *testing.T) {
		var l leaseSet
		l.set(parts, time.Now().Add(ttl))
		l.begin(time.Now(), ttl/3)
		parent, cancel := context.WithCancel(t.Context())
		ctx, stop := l.deliverContext(parent)
		defer stop()
		cancel()
		if err := SendCut(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("SendCut after the shutdown timeout = %v, want context.Canceled", err)
		}
	})
}

// TestGiveBackBetweenBatches checks that a partition to give back is not
// released while a batch reads it, that it is kept out of the next batch,
// and that it is released once the batch ends.
func TestGiveBackBetweenBatches(t *testing.T) {
	t.Parallel()
	var l leaseSet
	now := time.Now()
	l.set([]int16{1, 2, 3, 4}, now.Add(time.Minute))
	if _, parts := l.begin(now, time.Second); len(parts) != 4 {
		t.Fatalf("batch reads %v, want all four", parts)
	}
	if rel := l.giveBackParts([]int16{3, 4}); len(rel) != 0 {
		t.Fatalf("released %v while the batch reads them", rel)
	}
	if !l.end() {
		t.Fatal("end reports nothing to give back")
	}
	if rel := l.giveBackParts(extraParts(l.held(), 2, l.marked())); len(rel) != 2 || rel[0] != 3 || rel[1] != 4 {
		t.Fatalf("released %v after the batch, want [3 4]", rel)
	}
	if _, parts := l.begin(now, time.Second); len(parts) != 2 || parts[0] != 1 || parts[1] != 2 {
		t.Fatalf("next batch reads %v, want [1 2]", parts)
	}
}
