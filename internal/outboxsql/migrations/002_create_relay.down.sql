-- Reverses 002_create_relay.up.sql: the relay's tables and the indexes it
-- added to the outbox table.
DROP INDEX txoutbox_events_delivered_idx;
DROP INDEX txoutbox_events_dead_idx;
DROP INDEX txoutbox_events_pending_idx;
DROP TABLE txoutbox_partitions;
DROP TABLE txoutbox_relays;
