-- Reverses 006_pending_state_index.up.sql: migration 002's index of
-- pending seqs comes back.
CREATE INDEX IF NOT EXISTS txoutbox_events_pending_idx ON txoutbox_events (seq) WHERE status = 'pending';
DROP INDEX IF EXISTS txoutbox_events_pending_state_idx;
