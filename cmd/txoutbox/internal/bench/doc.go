// Package bench measures txoutbox's publish path, relay and events API, each
// beside a baseline taken in the same run, for the "txoutbox bench" command.
//
//	rep, err := bench.Run(ctx, &bench.Config{Scenarios: []string{bench.ScenarioRelay}})
//	if err != nil {
//		return err
//	}
//	rep.Write(os.Stdout)     // the Markdown table of the README's Performance section
//	rep.WriteJSON(jsonFile)  // every run's value, for comparing machines or commits
//
// Run starts a throwaway PostgreSQL with its durability settings on (or
// uses Config.DatabaseURL, working in schemas of its own) and runs the
// scenarios:
//
//   - publish: request-like transactions (a business INSERT, the events,
//     COMMIT) with 0, 1 and 10 events at 1, 4 and 16 clients, beside a
//     hand-written INSERT of the same rows; and the cost to producers of
//     waking the relay in-process, by a NOTIFY per transaction, or by a
//     debounced NOTIFY.
//   - relay: committed events drained by 1 and 4 relays to a no-op sink and
//     to an HTTP events API on loopback, beside watermill-sql's subscriber
//     and watermill's forwarder draining to the same no-op sink.
//   - latency: commit→sink latency while producing at fixed rates, and the
//     highest rate sustained with a flat backlog.
//   - e2e: 16 producers and a relay on one machine, events delivered per
//     second.
//   - modes: the delivery modes (table + polling, table + WAL, message
//     only), each with a relay woken when a producer's COMMIT returns (by
//     its stream in the WAL modes): the
//     producers' throughput beside a business INSERT alone, commit→sink
//     latency at fixed rates and at the highest rate sustained, and events
//     delivered per second, each beside table + polling's. It needs
//     wal_level=logical and drops the publication and slot it creates.
//   - backlog: the relay's throughput with a million rows pending, beside
//     the same drain from a small table.
//   - events: the events API (package eventsapi) on 127.0.0.1: ingest over
//     HTTP into its Postgres store, beside appending directly and posting
//     to a memory store; fan-out to Config.Subscribers streams and a tenth
//     of them, over SSE and WebSocket; ingest→subscriber latency at 1,000
//     events/s; a subscriber catching up Config.CatchUp events, beside
//     reading them from the store directly.
//
// Every measurement is taken Config.Runs times; within a run the
// measurements of a scenario are interleaved, so a change in the machine's
// load touches a measurement and its baseline alike. The report gives the
// median, the spread, and the median of the run-by-run ratios to the
// baselines.
package bench
