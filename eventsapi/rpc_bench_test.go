package eventsapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/txoutbox/txoutbox/eventsapi"
	"github.com/txoutbox/txoutbox/eventsapi/eventsv1/eventsv1connect"
)

// BenchmarkRPCFanout measures deliveries over StreamEvents: b.N events
// appended to a memory store, each received by every one of the streams
// (connect-go's gRPC client, a connection each). Reported as
// deliveries/s.
func BenchmarkRPCFanout(b *testing.B) {
	for _, streams := range []int{1, 10} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			r := startRPC(b, rpcOptions{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var got atomic.Int64
			var wg sync.WaitGroup
			for range streams {
				tr := &http.Transport{Protocols: new(http.Protocols)}
				tr.Protocols.SetUnencryptedHTTP2(true)
				client := eventsv1connect.NewEventServiceClient(&http.Client{Transport: tr}, "http://"+r.addr, connect.WithGRPC())
				st := client.StreamEvents(ctx)
				st.RequestHeader().Set("Authorization", "Bearer "+rpcAll)
				if err := st.Send(subscribeReq("*", nil)); err != nil {
					b.Fatal(err)
				}
				if _, err := st.Receive(); err != nil {
					b.Fatal(err)
				}
				wg.Go(func() {
					for {
						m, err := st.Receive()
						if err != nil {
							return
						}
						if m.GetEvent() != nil {
							got.Add(1)
						}
					}
				})
			}
			data := json.RawMessage(`{"id":"inv-1","amount_cents":1250,"currency":"EUR","lines":[{"sku":"a","qty":2}]}`)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i += 100 {
				evs := make([]eventsapi.Event, 0, 100)
				for j := i; j < min(i+100, b.N); j++ {
					evs = append(evs, eventsapi.Event{ID: fmt.Sprint("ev-", j), Topic: "billing.InvoiceCreated", Category: "billing",
						Entity: "Invoice", Action: "Created", Key: "inv-1", Data: data})
				}
				if _, err := r.srv.Store().Append(ctx, evs); err != nil {
					b.Fatal(err)
				}
				// Stay within the server's slow-consumer limit: at most
				// 5,000 events ahead of the streams.
				for int64(i*streams)-got.Load() > int64(5000*streams) {
					if time.Since(start) > time.Minute {
						b.Fatalf("%d deliveries after a minute", got.Load())
					}
					time.Sleep(100 * time.Microsecond)
				}
			}
			want := int64(b.N * streams)
			for got.Load() < want {
				if time.Since(start) > time.Minute {
					b.Fatalf("%d of %d deliveries after a minute", got.Load(), want)
				}
				time.Sleep(time.Millisecond)
			}
			b.ReportMetric(float64(want)/time.Since(start).Seconds(), "deliveries/s")
			cancel()
			r.stop()
			wg.Wait()
		})
	}
}
