-- The operator console's tables. Samples record the backlog every few
-- seconds while a console runs, for its chart of the last hour; actions are
-- the audit trail of what operators replayed, discarded or unblocked.
CREATE TABLE txoutbox_samples (
    -- Start of the sample's 10-second bucket: one sample per bucket, however
    -- many consoles run.
    at       timestamptz PRIMARY KEY,
    -- The events table's last seq: its growth between samples is what was published.
    last_seq bigint      NOT NULL,
    pending  bigint      NOT NULL,
    dead     bigint      NOT NULL
);

CREATE TABLE txoutbox_actions (
    -- Chosen by the console when it asks for confirmation: a second
    -- submission of the same confirmation finds this row and changes nothing.
    id       uuid        PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    -- Who: the basic-auth user, "token", or "local" on an open loopback console.
    actor    text        NOT NULL,
    -- What: replay, discard or unblock.
    action   text        NOT NULL,
    -- The filter or the ids the action was given.
    filter   jsonb       NOT NULL,
    -- How many events it changed.
    events   bigint      NOT NULL,
    reason   text        NOT NULL DEFAULT ''
);

CREATE INDEX txoutbox_actions_at_idx ON txoutbox_actions (at);
