DROP INDEX IF EXISTS txoutbox_events_tenant_idx;
DROP INDEX IF EXISTS txoutbox_events_job_idx;
DROP INDEX IF EXISTS txoutbox_events_key_idx;
DROP INDEX IF EXISTS txoutbox_events_topic_idx;
DROP INDEX IF EXISTS txoutbox_events_status_topic_idx;
DROP INDEX IF EXISTS txoutbox_events_status_seq_idx;
