-- Reverses 009_message_slot.up.sql. The slot itself is the server's, not
-- the schema's: drop it with pg_drop_replication_slot when it is no longer
-- wanted.
DROP TABLE txoutbox_message_slots;
