-- Indexes for the console's event lists: each serves one filter, walked in
-- seq order from a cursor, so the first page and the thousandth cost the
-- same. Each costs every insert and status change an index entry; on a
-- large live table, create them with CREATE INDEX CONCURRENTLY under these
-- names before migrating, and this migration keeps them.
CREATE INDEX IF NOT EXISTS txoutbox_events_status_seq_idx ON txoutbox_events (status, seq);
CREATE INDEX IF NOT EXISTS txoutbox_events_status_topic_idx ON txoutbox_events (status, topic, seq);
CREATE INDEX IF NOT EXISTS txoutbox_events_topic_idx ON txoutbox_events (topic, seq);
CREATE INDEX IF NOT EXISTS txoutbox_events_key_idx ON txoutbox_events (key, seq);
CREATE INDEX IF NOT EXISTS txoutbox_events_job_idx ON txoutbox_events (job_id, seq);
CREATE INDEX IF NOT EXISTS txoutbox_events_tenant_idx ON txoutbox_events (tenant, seq) WHERE tenant IS NOT NULL;
