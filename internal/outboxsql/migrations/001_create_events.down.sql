-- Reverses 001_create_events.up.sql: the outbox table, its indexes and
-- every event in it.
DROP TABLE txoutbox_events;
