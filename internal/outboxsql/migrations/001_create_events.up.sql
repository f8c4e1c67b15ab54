-- The outbox table. Flush inserts rows here inside the caller's transaction;
-- the relay reads committed rows, delivers them and records the outcome.
CREATE TABLE txoutbox_events (
    -- Insert order (not commit order); the relay orders a key's events by it.
    seq             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Stable event id (UUIDv7), assigned at Publish and sent unchanged on every attempt.
    id              uuid        NOT NULL,
    -- {category}.{Entity}{Action}, e.g. billing.InvoiceCreated.
    topic           text        NOT NULL,
    category        text        NOT NULL,
    entity          text        NOT NULL,
    action          text        NOT NULL,
    -- The event's data exactly as published (validated against the topic's schema).
    data            json        NOT NULL,
    actor_id        text        NOT NULL,
    actor_type      text        NOT NULL CHECK (actor_type IN ('user', 'service', 'third-party')),
    job_id          text        NOT NULL,
    source          text        NOT NULL,
    -- Ordering key: events with the same key are delivered in order.
    key             text        NOT NULL,
    -- Partition of the key (0-63); relays lease partitions to keep per-key order.
    part            smallint    NOT NULL GENERATED ALWAYS AS (((('x' || substr(md5(key), 1, 8))::bit(32)::int) & 63)::smallint) STORED,
    traceparent     text,
    tenant          text,
    causation_id    uuid,
    -- A second publish with the same dedupe key is a no-op while the first row exists.
    dedupe_key      text,
    -- When Publish was called.
    published_at    timestamptz NOT NULL,
    -- Start of the inserting transaction.
    created_at      timestamptz NOT NULL DEFAULT now(),
    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT '-infinity',
    last_error      text,
    delivered_at    timestamptz
);

CREATE UNIQUE INDEX txoutbox_events_id_idx ON txoutbox_events (id);
CREATE UNIQUE INDEX txoutbox_events_dedupe_key_idx ON txoutbox_events (dedupe_key) WHERE dedupe_key IS NOT NULL;
