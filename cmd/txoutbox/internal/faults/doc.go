// Package faults is txoutbox's fault-injection suite: tests that take the
// pipeline's parts away under load and check that nothing committed is lost.
//
// It has no code of its own outside its tests. Each test runs writers that
// publish through outbox sessions, each transaction bumping a per-key counter
// row and publishing the new value, so that the database says exactly which
// events were committed: for every key, 1..N. A relay delivers them to a
// local events API (internal/sinkserver) behind a recording proxy that can
// fail on purpose. After the fault the test checks, from what the proxy saw:
//
//   - every committed event arrived (lost = 0), and every transaction that
//     reported a successful commit is among them;
//   - nothing arrived that was not committed;
//   - per key, first arrivals are 1, 2, 3, ... in order;
//   - a repeated delivery carries the event id of the first one, and only
//     the faults that allow it (a relay killed mid-batch, an answer lost on
//     the wire) produce any, each charged to the sender whose delivery
//     before it went unrecorded;
//   - while the sink fails, the relay's request count stays under a bound
//     derived from its backoff settings.
//
// The faults:
//
//	TestFaultRelaySIGKILL     the txoutbox relay process killed with SIGKILL at random points
//	TestFaultPostgresRestart  the PostgreSQL server stopped and started under load
//	TestFaultSink             the events API answering 500, 429 with Retry-After, hanging,
//	                          closing connections mid-response, sending malformed bodies
//	TestFaultRacingRelays     four relays with short leases sharing one table, joining and leaving
//	TestFaultFlakyAPI         the events API failing a random 15% of requests (500, or 429 with Retry-After)
//	TestFaultFlakyAPIJoinsLeaves
//	                          the same, while relays join and leave gracefully: no duplicates
//	TestFaultStalledRelay     the relay holding a replication slot frozen (SIGSTOP) while
//	                          writers publish: the slot keeps the WAL, pg_replication_slots
//	                          shows it growing, and the relay confirms past it once thawed
//
// The first four run once per delivery mode, as subtests mode=poll,
// mode=wal and mode=messages (in which the writers' client has
// outbox.StorageMessages and the migration creates the slot);
// TestFaultStalledRelay in the two WAL modes; the flaky tests in ModePoll.
//
// Run them with
//
//	go test -race -run Fault ./cmd/txoutbox/internal/faults/
//
// which takes a few minutes on two cores (-run 'Fault/mode=wal' runs one
// mode). The -fault.long flag runs the soak versions (50 kills, longer
// windows, more restarts):
//
//	go test -race -run Fault -timeout 60m ./cmd/txoutbox/internal/faults/ -fault.long
//
// TXOUTBOX_FAULT_KILLS sets how many relays TestFaultRelaySIGKILL kills in
// each mode, over both (by default 10 in ModePoll and 20 in the WAL modes).
//
// Every fault test logs one summary line, e.g.
//
//	fault=sigkill mode=wal published=21000 delivered=21000 duplicates=96 lost=0 kills=20
//
// which RELIABILITY.md quotes. The package also holds the tests that the
// txoutbox binary keeps secrets out of its output and its admin endpoints
// on the loopback interface.
package faults
