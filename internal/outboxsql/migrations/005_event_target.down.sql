ALTER TABLE txoutbox_events
    DROP COLUMN target_collection,
    DROP COLUMN target_project,
    DROP COLUMN target_layout;
