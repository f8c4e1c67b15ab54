-- The place an event is about (outbox.WithTarget): a collection, a project
-- of it, or a layout of that project; NULL for a level not named. Nullable
-- columns without a default: adding them rewrites no row.
ALTER TABLE txoutbox_events
    ADD COLUMN target_collection text,
    ADD COLUMN target_project    text,
    ADD COLUMN target_layout     text;
