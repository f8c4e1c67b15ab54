// Command worker is the example nightly job: it marks open invoices past
// their due date as overdue and publishes billing.InvoiceOverdue for each,
// with a service session (the actor is the service, not a user) whose job
// id correlates all of the run's events.
//
//	DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres go run ./examples/worker
//	DATABASE_URL=... go run ./examples/worker -style immediate
//
// Run it from cron or a scheduler; it sweeps once and exits.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/txoutbox/txoutbox/examples/internal/exampleenv"
	"github.com/txoutbox/txoutbox/internal/invoices"
	"github.com/txoutbox/txoutbox/outbox"
)

// batchSize is how many invoices one transaction marks.
const batchSize = 100

func main() {
	exampleenv.Main("worker", run)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	flags := flag.NewFlagSet("worker", flag.ContinueOnError)
	style := flags.String("style", "flush", "flush: each batch's updates and events commit together; immediate: events written one by one after the update (not atomic)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	sweep := sweepFlush
	switch *style {
	case "flush":
	case "immediate":
		sweep = sweepImmediate
	default:
		return fmt.Errorf("-style %q: want flush or immediate", *style)
	}
	env, err := exampleenv.Open(ctx, getenv, "billing-worker")
	if err != nil {
		return err
	}
	defer env.Close()
	// One job id for the whole run: every event carries it.
	jobID := uuid.Must(uuid.NewV7()).String()
	n, err := sweep(ctx, env.Pool, env.Client, jobID, time.Now())
	fmt.Fprintf(stdout, "job %s: %d invoices marked overdue\n", jobID, n)
	return err
}

// sweepFlush is the recommended style: each batch is one transaction in
// which the invoices are marked and their events flushed, so an invoice is
// marked overdue exactly when its event is in the outbox.
func sweepFlush(ctx context.Context, pool *pgxpool.Pool, client *outbox.Client, jobID string, today time.Time) (int, error) {
	sess := client.ServiceSession(jobID)
	total := 0
	for {
		var n int
		err := outbox.InTx(ctx, pool, sess, func(ctx context.Context, tx pgx.Tx) error {
			_, events, err := invoices.MarkOverdue(ctx, tx, today, batchSize)
			if err != nil {
				return err
			}
			n = len(events)
			return publish(ctx, sess, events)
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < batchSize {
			return total, nil
		}
	}
}

// sweepImmediate is the style for code that has no transaction to flush
// into: each UPDATE commits on its own, then the session, in
// publish-immediately mode, writes each event at once. Not atomic: a crash
// between the two leaves invoices marked whose events were never written.
// Prefer sweepFlush wherever there is a transaction.
func sweepImmediate(ctx context.Context, pool *pgxpool.Pool, client *outbox.Client, jobID string, today time.Time) (int, error) {
	sess := client.ServiceSession(jobID, outbox.PublishImmediately())
	total := 0
	for {
		_, events, err := invoices.MarkOverdue(ctx, pool, today, batchSize)
		if err != nil {
			return total, err
		}
		if err := publish(ctx, sess, events); err != nil {
			return total, err
		}
		total += len(events)
		if len(events) < batchSize {
			return total, nil
		}
	}
}

func publish(ctx context.Context, sess *outbox.Session, events []invoices.Event) error {
	for _, ev := range events {
		if err := sess.Publish(ctx, ev.Action, invoices.Entity, ev.Data); err != nil {
			return err
		}
	}
	return nil
}
