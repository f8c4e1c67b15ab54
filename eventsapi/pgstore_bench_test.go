package eventsapi

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/txoutbox/txoutbox/internal/pgtest"
)

// BenchmarkPostgresStoreAppend measures ingest, in events/s, with 1, 8 and
// 32 goroutines appending calls of 1 and 100 events through one store:
// "grouped" is the store as it is (calls combined by its writer), "alone"
// runs each call in its own transaction on the caller's goroutine, for
// comparison. Each run starts on an empty database.
//
//	go test -run '^$' -bench PostgresStoreAppend -benchtime 2000x ./eventsapi
func BenchmarkPostgresStoreAppend(b *testing.B) {
	for _, mode := range []struct {
		name        string
		groupEvents int
	}{{"grouped", 0}, {"alone", -1}} {
		for _, appenders := range []int{1, 8, 32} {
			for _, batch := range []int{1, 100} {
				b.Run(fmt.Sprintf("%s/appenders=%d/events=%d", mode.name, appenders, batch), func(b *testing.B) {
					s := newPgStore(b, pgtest.NewPool(b), &PostgresStoreConfig{groupEvents: mode.groupEvents})
					var calls atomic.Int64
					var wg sync.WaitGroup
					b.ResetTimer()
					start := time.Now()
					for g := range appenders {
						wg.Go(func() {
							for i := calls.Add(1); i <= int64(b.N); i = calls.Add(1) {
								evs := make([]Event, batch)
								for j := range evs {
									evs[j] = storeEvent(0)
									evs[j].ID = strconv.Itoa(g) + "-" + strconv.FormatInt(i, 10) + "-" + strconv.Itoa(j)
								}
								if _, err := s.Append(b.Context(), evs); err != nil {
									b.Error(err)
									return
								}
							}
						})
					}
					wg.Wait()
					b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "events/s")
				})
			}
		}
	}
}

// BenchmarkPostgresStoreWake measures the time from an Append on one store
// to the wake-up of another store on the same tables (by notification).
func BenchmarkPostgresStoreWake(b *testing.B) {
	pool := pgtest.NewPool(b)
	cfg := &PostgresStoreConfig{PollInterval: time.Hour}
	a, other := newPgStore(b, pool, cfg), newPgStore(b, pool, cfg)
	head := int64(0)
	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		ch := other.Changed(head)
		start := time.Now()
		out, err := a.Append(b.Context(), []Event{storeEvent(i)})
		if err != nil {
			b.Fatal(err)
		}
		head = out[0].Position
		<-ch
		total += time.Since(start)
	}
	b.ReportMetric(float64(total.Microseconds())/float64(b.N)/1000, "ms/wake")
}
