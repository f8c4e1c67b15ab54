-- Relays and their partition leases. Each running relay heartbeats a row in
-- txoutbox_relays; the 64 partitions of the outbox are leased to live relays,
-- one owner per partition, so that a key's events are read by one relay at a
-- time and in order.
CREATE TABLE txoutbox_relays (
    id           text        PRIMARY KEY,
    hostname     text        NOT NULL DEFAULT '',
    pid          integer     NOT NULL DEFAULT 0,
    started_at   timestamptz NOT NULL DEFAULT now(),
    -- A relay counts as live while its heartbeat is younger than its lease.
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE txoutbox_partitions (
    part        smallint    PRIMARY KEY CHECK (part BETWEEN 0 AND 63),
    -- The relay holding the lease, or NULL when the partition is free.
    owner       text,
    -- A lease past this time may be taken by another relay.
    lease_until timestamptz NOT NULL DEFAULT '-infinity'
);

INSERT INTO txoutbox_partitions (part) SELECT generate_series(0, 63);

-- The relay's read: the oldest pending rows of its partitions, walked in seq
-- order and filtered by partition. One index on seq beats one per partition
-- (merging 64 partition heads costs a sort over every owned partition's
-- batch), and staying partial keeps it as small as the backlog.
CREATE INDEX txoutbox_events_pending_idx ON txoutbox_events (seq) WHERE status = 'pending';

-- Keys blocked by a dead event, loaded when a relay takes a partition.
CREATE INDEX txoutbox_events_dead_idx ON txoutbox_events (part, key) WHERE status = 'dead';

-- Delivered rows kept for a retention period, removed oldest first.
CREATE INDEX txoutbox_events_delivered_idx ON txoutbox_events (delivered_at) WHERE status = 'delivered';
