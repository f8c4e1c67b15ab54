DROP INDEX IF EXISTS txoutbox_events_pending_topic_idx;
