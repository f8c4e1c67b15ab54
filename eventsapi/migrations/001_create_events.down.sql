-- Reverses 001_create_events.up.sql: the events API's table, its indexes,
-- the positions sequence it owns, and every stored event.
DROP TABLE txoutbox_events_api_events;
