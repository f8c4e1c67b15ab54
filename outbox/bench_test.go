package outbox_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/txoutbox/txoutbox/internal/cputime"
	"github.com/txoutbox/txoutbox/outbox"
)

// BenchmarkFlush measures a transaction that publishes and flushes n events
// and commits, beside the same transaction with a hand-written multi-row
// INSERT of the same rows (the physical floor). ns/op is mostly the server's
// time; cpu-µs/op is this process's CPU time per transaction, the client's
// share, which is what Publish and Flush can cut and what competes with the
// server on a small machine.
func BenchmarkFlush(b *testing.B) {
	ctx := context.Background()
	bb := setup(b, nil)
	for _, n := range []int{1, 10, 100} {
		data := invoices(n)
		b.Run(fmt.Sprintf("events=%d/flush", n), func(b *testing.B) {
			b.ReportAllocs()
			cpu := cputime.Process()
			for b.Loop() {
				sess := publishAll(ctx, b, bb.client, data)
				tx, err := bb.pool.Begin(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if err := sess.Flush(ctx, tx); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
			reportCPU(b, cpu)
		})
		b.Run(fmt.Sprintf("events=%d/handwritten", n), func(b *testing.B) {
			b.ReportAllocs()
			var sb strings.Builder
			sb.WriteString(`INSERT INTO txoutbox_events (id, topic, category, entity, action, data, actor_id, actor_type, job_id, source, key, published_at) VALUES `)
			for i := range n {
				if i > 0 {
					sb.WriteString(",")
				}
				fmt.Fprintf(&sb, "($%d, 'billing.InvoiceCreated', 'billing', 'Invoice', 'Created', $%d, 'user-42', 'user', 'job', 'billing-api', $%d, now())", 3*i+1, 3*i+2, 3*i+3)
			}
			query := sb.String()
			args := make([]any, 3*n)
			cpu := cputime.Process()
			for b.Loop() {
				for i := range n {
					args[3*i], args[3*i+1], args[3*i+2] = uuid.Must(uuid.NewV7()), data[i], fmt.Sprintf("inv-%d", i)
				}
				tx, err := bb.pool.Begin(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := tx.Exec(ctx, query, args...); err != nil {
					b.Fatal(err)
				}
				if err := tx.Commit(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkPublish measures Publish alone: looking the topic up, encoding
// and validating the data, and building the event, for n events of one
// session.
func BenchmarkPublish(b *testing.B) {
	ctx := context.Background()
	bb := setup(b, nil)
	for _, n := range []int{1, 10} {
		data := invoices(n)
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			cpu := cputime.Process()
			for b.Loop() {
				publishAll(ctx, b, bb.client, data).Rollback()
			}
			reportCPU(b, cpu)
		})
	}
}

func invoices(n int) []map[string]any {
	data := make([]map[string]any, n)
	for i := range data {
		data[i] = invoice(fmt.Sprintf("inv-%d", i))
	}
	return data
}

// publishAll publishes data as billing.InvoiceCreated events of a new user
// session.
func publishAll(ctx context.Context, b *testing.B, client *outbox.Client, data []map[string]any) *outbox.Session {
	sess := client.UserSession("user-42", "")
	for _, d := range data {
		if err := sess.Publish(ctx, "Created", "Invoice", d); err != nil {
			b.Fatal(err)
		}
	}
	return sess
}

// reportCPU reports the process's CPU time per op since start.
func reportCPU(b *testing.B, start time.Duration) {
	if now := cputime.Process(); now > 0 {
		b.ReportMetric(float64((now-start).Microseconds())/float64(b.N), "cpu-µs/op")
	}
}
