-- Pending events of one topic in seq order, with what a pending event's
-- state is decided on: the console's list of a pending state within a topic
-- walks the topic's pending events only, not every pending event.
CREATE INDEX IF NOT EXISTS txoutbox_events_pending_topic_idx ON txoutbox_events (topic, seq)
    INCLUDE (part, key, next_attempt_at) WHERE status = 'pending';
