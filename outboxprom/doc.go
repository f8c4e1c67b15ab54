// Package outboxprom exports txoutbox's Prometheus metrics: events published
// and flush durations from the outbox client, deliveries, failures,
// dead letters, batch sizes and delivery latency from the relay, the
// outbox's backlog read from the table on each scrape, and the WAL
// replication slots hold back with the state of the relay's WAL stream.
//
// Register the metrics on your registry and plug them into the client, the
// middleware and the relay:
//
//	m, err := outboxprom.New(prometheus.DefaultRegisterer, nil)
//	client, err := outbox.New(pool, reg, &outbox.Config{FlushFunc: m.FlushFunc})
//	e.Use(outboxecho.MiddlewareWithConfig(client, outboxecho.Config{UnflushedFunc: m.UnflushedFunc}))
//	r, err := relay.New(pool, sink, &relay.Config{Hooks: m.RelayHooks("events-api")})
//	err = m.RegisterBacklog(pool, nil) // the backlog gauges, one indexed query per scrape
//	err = m.RegisterReplication(pool, nil) // the WAL txoutbox's replication slots hold back
//	err = m.RegisterWAL(r.WALStatus)      // relay.ModeWAL and ModeMessages: the relay's stream
//
// The txoutbox relay command serves the same metrics on its admin address,
// at /metrics.
//
// Names follow Prometheus conventions (base units, _total counters):
//
//	txoutbox_events_published_total{topic}              events written to the outbox
//	txoutbox_events_unflushed_total{topic}              events a request published and never flushed
//	txoutbox_flush_duration_seconds                     time to write one flush (histogram)
//	txoutbox_flush_errors_total                         flushes that failed
//	txoutbox_relay_events_delivered_total{topic,sink}   events the sink accepted
//	txoutbox_relay_events_failed_total{topic,sink}      failed attempts that will be retried
//	txoutbox_relay_events_dead_total{topic,sink}        events dead-lettered
//	txoutbox_relay_batch_size                           rows read per batch (histogram)
//	txoutbox_relay_delivery_latency_seconds{sink}       publish to sink acknowledgement (histogram)
//	txoutbox_outbox_backlog_events                      pending events (gauge, on scrape)
//	txoutbox_outbox_oldest_pending_age_seconds          age of the oldest pending event (gauge, on scrape)
//	txoutbox_outbox_dead_events                         dead events waiting for a replay (gauge, on scrape)
//	txoutbox_replication_slot_retained_bytes{slot}      WAL a slot holds back (gauge, on scrape)
//	txoutbox_replication_slot_active{slot}              1 while a relay streams the slot (gauge, on scrape)
//	txoutbox_replication_slot_lost{slot}                1 once the slot is lost: invalidated, or dropped (gauge, on scrape)
//	txoutbox_relay_wal_streaming                        1 while the relay's WAL stream is open
//	txoutbox_relay_wal_wakes_total                      commits from the stream that woke the relay
//	txoutbox_relay_wal_restarts_total                   streams that broke and were opened again
//	txoutbox_relay_wal_slot_lost                        1 while the relay finds the messages slot lost or missing
//
// Alert on txoutbox_replication_slot_retained_bytes well before the
// server's max_slot_wal_keep_size, and on either lost gauge: a lost slot of
// message storage needs an operator (relay.ModeMessages says how to
// recover; txoutbox status prints it).
package outboxprom
