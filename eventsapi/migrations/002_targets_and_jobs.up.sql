-- Targets, senders, and event-driven jobs.

ALTER TABLE txoutbox_events_api_events
    -- Where the event is scoped (collection ⊃ project ⊃ layout); '' for a level not named.
    ADD COLUMN target_collection text NOT NULL DEFAULT '',
    ADD COLUMN target_project    text NOT NULL DEFAULT '',
    ADD COLUMN target_layout     text NOT NULL DEFAULT '',
    -- Who published the event: what the publisher said, else its key's name.
    ADD COLUMN sender            text NOT NULL DEFAULT '',
    -- Free-form JSON about why the event happened.
    ADD COLUMN request_metadata  json,
    -- A job event: the id of the source event it was enrolled for; '' otherwise.
    ADD COLUMN depends_on        text NOT NULL DEFAULT '',
    -- A job event's state; '' for other events.
    ADD COLUMN status            text NOT NULL DEFAULT '',
    ADD COLUMN description       text NOT NULL DEFAULT '',
    ADD COLUMN retries           integer NOT NULL DEFAULT 0,
    -- When a job event last changed.
    ADD COLUMN updated_at        timestamptz;

-- One job per source event and job topic: what makes enrolment exactly once.
CREATE UNIQUE INDEX txoutbox_events_api_events_job_idx ON txoutbox_events_api_events (topic, depends_on) WHERE depends_on <> '';
-- Enrolment scans a source topic oldest first.
CREATE INDEX txoutbox_events_api_events_topic_idx ON txoutbox_events_api_events (topic, position);
-- Jobs that may go stale, or wait to be enrolled again.
CREATE INDEX txoutbox_events_api_events_open_jobs_idx ON txoutbox_events_api_events (status, updated_at)
    WHERE status IN ('pending', 'in_progress', 'restarted');
