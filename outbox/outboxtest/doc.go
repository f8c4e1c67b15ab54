// Package outboxtest checks, in a service's own tests, which events its code
// published through the outbox: the rows a Flush wrote, read back through
// the test's transaction or pool, or the events a session still buffers.
//
// # After a handler ran
//
// The assertions read the outbox table through a Querier, which pgx.Tx,
// *pgx.Conn and *pgxpool.Pool all are. Pass the transaction the code
// flushed into to check its events before commit, or the pool once it has
// committed:
//
//	func TestCreateInvoice(t *testing.T) {
//		ctx := t.Context()
//		tx, err := pool.Begin(ctx)
//		...
//		inv, err := billing.CreateInvoice(ctx, tx, sess, input) // publishes and flushes into tx
//		...
//		ev := outboxtest.RequirePublished(ctx, t, tx, outboxtest.Want{
//			Topic: "billing.InvoiceCreated",
//			Key:   inv.ID,
//			Data:  map[string]any{"status": "open", "amount_cents": 1250},
//		}, nil)
//		// ev is the *outbox.Event: check anything else on it.
//	}
//
// A Want matches on every field that is set: the topic, the ordering key,
// the actor, the job id, the tenant, and the data, as a JSON subset (Data)
// or with a function (DataFunc). RequirePublished wants exactly one match
// and returns it. RequireNotPublished wants none: Want{Topic:
// "billing.InvoicePaid"} after a refused payment, or Want{JobID: id} for a
// request that must have published nothing. RequirePublishedMany wants the
// events of the topics it names to be exactly the list given, in insert
// order, so a duplicate or a reordering fails the test.
//
// When the outbox table lives in its own schema (outbox.Config.Schema), say
// so with &outboxtest.RequireOpts{Schema: "billing"} as the last argument.
//
// # Before Flush, without a database
//
// Code that only publishes can be tested with no database at all: build the
// client with a nil pool, give the code a session, and check what the
// session holds with RequireUnflushed:
//
//	client, err := outbox.New(nil, registry, &outbox.Config{Source: "billing-api"})
//	sess := client.ServiceSession("job-1")
//	err = billing.MarkOverdue(ctx, sess, invoices)
//	outboxtest.RequireUnflushed(t, sess, []outboxtest.Want{
//		{Topic: "billing.InvoiceOverdue", Key: "inv-1"},
//	})
//
// # When an assertion fails
//
// The message says what was wanted and lists what was there instead: each
// event's topic, key, actor, job id and data (cut at 120 bytes), and, for
// the events of the wanted topic, which field differs and how:
//
//	outboxtest: no event matches billing.InvoiceCreated key="inv-2"; txoutbox_events holds 1:
//	  1. billing.InvoiceCreated key="inv-1" actor=user:"user-42" job_id="job-7f3a" data={"amount_cents":1250,…
//	       key is "inv-1", want "inv-2"
//
// An empty table is called out as such, with a reminder that events flushed
// into a transaction are visible only through that transaction until it
// commits: the usual reason a check through the pool finds nothing.
//
// The assertions take a TB, not a *testing.T, so that helpers built on them
// can be tested with a fake that records the failure.
package outboxtest
