// Package admin answers an operator's questions about an outbox: how much is
// waiting and why (status), which events are stuck (inspect), and puts
// events back in the queue (replay). It is the SQL behind `txoutbox status`,
// `txoutbox inspect` and `txoutbox replay`:
//
//	a := admin.New(pool, "") // "" is the search_path's schema
//	st, err := a.Status(ctx)
//	fmt.Println(st.Pending, st.Dead, st.OldestPendingAge)
//
//	evs, err := a.Events(ctx, admin.Filter{State: admin.StateDead, Limit: 20})
//
//	n, err := a.Replay(ctx, admin.Filter{State: admin.StateDead, Topic: "billing.InvoiceCreated"})
//
// Queries read the outbox table and the relay's lease tables (their SQL is
// in internal/outboxsql, next to the migrations) and never lock rows a relay is working on for longer
// than one statement. A database without those tables gives
// [ErrNotMigrated].
package admin
