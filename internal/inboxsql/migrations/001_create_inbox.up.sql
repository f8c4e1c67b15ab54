-- The consumer's inbox: the ids of the events each consumer has processed,
-- recorded by inbox.Once in the transaction that applied the event, so that
-- a redelivered event is recognised and skipped.
CREATE TABLE txoutbox_inbox (
    -- Who processed the event (a handler, a service): each consumer in one
    -- database processes an event once, independently of the others.
    consumer     text        NOT NULL,
    -- The event's id as delivered: the outbox's UUIDv7, a CloudEvent's id,
    -- a watermill message's UUID.
    event_id     text        NOT NULL,
    -- Start of the transaction that processed it; Prune deletes by it.
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

CREATE INDEX txoutbox_inbox_processed_at ON txoutbox_inbox (processed_at);
