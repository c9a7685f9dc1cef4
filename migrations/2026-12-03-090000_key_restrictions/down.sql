ALTER TABLE api_keys
    DROP COLUMN metadata,
    DROP COLUMN allowed_origins,
    DROP COLUMN allowed_ips;
DROP FUNCTION api_keys_metadata_valid(JSONB);
DROP FUNCTION api_keys_origins_valid(TEXT[]);
