-- +goose StatementBegin
DO $$
DECLARE
    pub text := 'txoutbox_' || current_schema();
BEGIN
    IF length(current_schema()) > 50 THEN
        pub := 'txoutbox_' || left(current_schema(), 30) || '_' || left(md5(current_schema()), 12);
    END IF;
    EXECUTE format('DROP PUBLICATION IF EXISTS %I', pub);
END
$$;
-- +goose StatementEnd
