package outbox_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// BenchmarkFlush measures a transaction that publishes and flushes n events
// and commits, beside the same transaction with a hand-written multi-row
// INSERT of the same rows (the physical floor).
func BenchmarkFlush(b *testing.B) {
	ctx := context.Background()
	bb := setup(b, nil)
	for _, n := range []int{1, 10, 100} {
		data := make([]map[string]any, n)
		for i := range data {
			data[i] = invoice(fmt.Sprintf("inv-%d", i))
		}
		b.Run(fmt.Sprintf("events=%d/flush", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sess := bb.client.UserSession("user-42", "")
				for _, d := range data {
					if err := sess.Publish(ctx, "Created", "Invoice", d); err != nil {
						b.Fatal(err)
					}
				}
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
		})
	}
}
