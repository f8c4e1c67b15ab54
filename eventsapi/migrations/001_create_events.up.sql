-- The events API's store (PostgresStore). Separate from the outbox's tables:
-- it may live in the outbox's database or in another one.

-- Where positions come from. Only Append takes values from it, and only while
-- it holds the append lock (see PostgresStore), so a value taken later is
-- always committed later. CACHE 1 keeps values in the order they are taken
-- whatever the session.
CREATE SEQUENCE txoutbox_events_api_positions AS bigint CACHE 1;

CREATE TABLE txoutbox_events_api_events (
    -- Stream position: grows in commit order; may have gaps (rolled back appends).
    position     bigint      PRIMARY KEY,
    -- The event id the publisher assigned; one event per id.
    id           text        NOT NULL,
    topic        text        NOT NULL,
    category     text        NOT NULL,
    entity       text        NOT NULL,
    action       text        NOT NULL,
    -- Ordering key (the resource id); '' when the event has none.
    key          text        NOT NULL,
    -- '' when the event has no tenant.
    tenant       text        NOT NULL,
    actor_id     text        NOT NULL,
    actor_type   text        NOT NULL,
    job_id       text        NOT NULL,
    causation_id text        NOT NULL,
    -- With tenant, makes the event idempotent by key; NULL when it has none.
    dedupe_key   text,
    source       text        NOT NULL,
    traceparent  text        NOT NULL,
    -- Wire format the event arrived in: briteevents or cloudevents.
    format       text        NOT NULL,
    -- When the event was published (Event.Time) and when it was stored.
    published_at timestamptz NOT NULL,
    received_at  timestamptz NOT NULL,
    -- The data exactly as published (json keeps the bytes; jsonb would not).
    data         json
);

ALTER SEQUENCE txoutbox_events_api_positions OWNED BY txoutbox_events_api_events.position;

CREATE UNIQUE INDEX txoutbox_events_api_events_id_idx ON txoutbox_events_api_events (id);
CREATE UNIQUE INDEX txoutbox_events_api_events_dedupe_idx ON txoutbox_events_api_events (tenant, dedupe_key) WHERE dedupe_key IS NOT NULL;
-- A tenant's events in position order (every tenant-scoped read).
CREATE INDEX txoutbox_events_api_events_tenant_idx ON txoutbox_events_api_events (tenant, position);
-- The latest event of each key (state snapshots).
CREATE INDEX txoutbox_events_api_events_key_idx ON txoutbox_events_api_events (key, position DESC) WHERE key <> '';
-- Reads bounded by publish time (since, until).
CREATE INDEX txoutbox_events_api_events_published_at_idx ON txoutbox_events_api_events (published_at);
