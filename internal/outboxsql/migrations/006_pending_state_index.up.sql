-- The index of pending events, again in seq order, now holding every
-- column a pending event's state is decided on and the topic: the relay
-- reads by it as before, and the console's lists of a pending state (in
-- flight, retrying, blocked, unclaimed) walk it without reading the table
-- for the events they pass over. It replaces migration 002's index of
-- pending seqs, so the relay's writes keep one index of pending events.
-- Partial, as that one was: an event leaves it when delivered or dead. On a
-- large live table, create it with CREATE INDEX CONCURRENTLY under this
-- name before migrating, and this migration keeps it.
CREATE INDEX IF NOT EXISTS txoutbox_events_pending_state_idx ON txoutbox_events (seq)
    INCLUDE (part, key, next_attempt_at, topic) WHERE status = 'pending';
DROP INDEX IF EXISTS txoutbox_events_pending_idx;
