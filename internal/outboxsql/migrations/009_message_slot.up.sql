-- The record of the durable replication slot of message storage, written
-- when txoutbox creates it (txoutbox migrate --messages): its name, the
-- position it was created at (the consistent point pg_create_logical_
-- replication_slot returned) and when. PostgreSQL keeps no identity of a
-- slot beyond its name, so this row is what tells a slot that was lost
-- from one that never existed: creating the slot again while the row
-- says it existed needs an explicit acknowledgement, and relays compare
-- it with the slot they read to notice a slot created again under them.
CREATE TABLE txoutbox_message_slots (
    slot_name  text        PRIMARY KEY,
    -- For a slot created before this record existed, its confirmed
    -- position when it was first recorded.
    created_lsn pg_lsn     NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
