// Package outboxconsole is the outbox's operator console: a web page that
// answers "what is stuck, why, since when" and replays or discards dead
// events, without SQL or a terminal. It is an http.Handler to mount in a
// service's admin server, and `txoutbox console` serves it on its own
// (`txoutbox relay --console` on the relay's admin address).
//
//	h, err := outboxconsole.New(pool, &outboxconsole.Config{
//		Path:  "/console/",
//		Token: token, // read from a secret file; without one, loopback only
//	})
//	if err != nil {
//		return err
//	}
//	defer h.Close() // ends the live streams; before the server's Shutdown
//	mux.Handle("/console/", h)
//
// and, for the overview's charts, run h.Run(ctx) in a goroutine you stop
// and wait for: it samples the backlog every 10 seconds.
//
// # Pages
//
// The overview counts events per topic and state (pending split into in
// flight, retrying, blocked and unclaimed, as `txoutbox status` does), the
// age of the oldest pending one, the backlog and throughput of the last
// hour, and the relays with the partitions each holds; it follows the
// database over server-sent events, recounting once per RefreshInterval
// however many pages watch. The events list filters by state, topic, key,
// tenant, job id, publish time and error text, and pages by cursor (seq),
// never by offset, on the indexes of migrations 004 and 006 (a list of a
// pending state walks the index of pending events, which holds what the
// state is decided on). An event's page shows its envelope, attempts and
// last error, and the key's other undelivered events: why it is blocked.
// Event data is hidden unless ShowPayloads is set.
//
// # Actions
//
// Replay (dead events become pending again, as relay.Replay does), discard
// (dead events are marked delivered without being sent, the reason and
// who in their last error; the relay's cleanup removes them after its
// retention) and unblock a key (discard its dead events). Every action
// acts on dead events only, which no relay touches, so it is safe while
// relays run. Each is asked for twice: the first request changes nothing
// and shows how many events match (the dry run) with the first of them;
// the confirmation acts on those events only (none inserted since) and
// carries an id, so sending it again changes nothing. Each action is
// written to the txoutbox_actions table (who, when, which filter, how many
// events) in the transaction that changes the events, and logged.
//
// # Access
//
// With neither Token nor Users the console serves loopback callers only.
// With them, every request needs "Authorization: Bearer", basic auth, or
// the session cookie the sign-in form sets (signed, HttpOnly,
// SameSite=Strict; it holds no secret). Every POST must come from the
// console's own pages: its Origin is checked and it carries a CSRF token
// bound to the caller. ReadOnly refuses every action. Secrets never appear
// in URLs or logs; filters do, payloads never.
package outboxconsole
