-- The publication the relay's WAL mode streams through a logical replication
-- slot: inserts into this schema's outbox table, with only the columns the
-- relay needs to know which partition to read (on PostgreSQL 15 and later).
-- It is named txoutbox_{schema}. Without a slot reading it, a publication
-- costs nothing; creating one needs the CREATE privilege on the database and
-- works whatever wal_level is (PostgreSQL warns that it is not logical).
-- +goose StatementBegin
DO $$
DECLARE
    pub text := 'txoutbox_' || current_schema();
BEGIN
    IF length(current_schema()) > 50 THEN
        pub := 'txoutbox_' || left(current_schema(), 30) || '_' || left(md5(current_schema()), 12);
    END IF;
    -- One left behind by a schema dropped and created again no longer
    -- holds the table.
    EXECUTE format('DROP PUBLICATION IF EXISTS %I', pub);
    IF current_setting('server_version_num')::int >= 150000 THEN
        EXECUTE format('CREATE PUBLICATION %I FOR TABLE %I.txoutbox_events (seq, key) WITH (publish = %L)',
            pub, current_schema(), 'insert');
    ELSE
        EXECUTE format('CREATE PUBLICATION %I FOR TABLE %I.txoutbox_events WITH (publish = %L)',
            pub, current_schema(), 'insert');
    END IF;
END
$$;
-- +goose StatementEnd
