-- Key restrictions and metadata (docs/api.md, "Restricting a key"). Each
-- check holds exactly what the domain accepts after normalizing (its
-- `AllowedIps`, `AllowedOrigins` and `Metadata`), so the database never
-- holds a value the service would refuse to read.

-- `allowed_origins`: 1 to 50 origins `scheme://host[:port]`, lowercase, the
-- host possibly `*.` + a name, no NULL entries.
CREATE FUNCTION api_keys_origins_valid(origins TEXT[]) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT array_ndims(origins) = 1
       AND cardinality(origins) BETWEEN 1 AND 50
       AND NOT EXISTS (
           SELECT 1 FROM unnest(origins) AS o
           WHERE o IS NULL
              OR octet_length(o) > 255
              OR o !~ '^[a-z][a-z0-9+.-]*://(\*\.)?([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?$')
$$;

-- `metadata`: an object of at most 20 entries, keys 1 to 40 characters of
-- `[A-Za-z0-9_.-]`, values strings of at most 500 characters.
CREATE FUNCTION api_keys_metadata_valid(metadata JSONB) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT jsonb_typeof(metadata) = 'object'
       AND (SELECT count(*) FROM jsonb_object_keys(metadata)) <= 20
       AND NOT EXISTS (
           SELECT 1 FROM jsonb_each(metadata) AS e
           WHERE e.key !~ '^[A-Za-z0-9_.-]{1,40}$'
              OR jsonb_typeof(e.value) <> 'string'
              OR char_length(e.value #>> '{}') > 500)
$$;

ALTER TABLE api_keys
    -- NULL: any address. Otherwise 1 to 100 blocks; `cidr` itself refuses a
    -- block with bits set past its prefix, so every block is normalized.
    ADD COLUMN allowed_ips CIDR[]
        CONSTRAINT api_keys_allowed_ips_valid CHECK (
            allowed_ips IS NULL OR (
                array_ndims(allowed_ips) = 1
                AND cardinality(allowed_ips) BETWEEN 1 AND 100
                AND array_position(allowed_ips, NULL) IS NULL)
        ),
    -- NULL: any origin. Publishable keys only.
    ADD COLUMN allowed_origins TEXT[]
        CONSTRAINT api_keys_allowed_origins_valid CHECK (
            allowed_origins IS NULL
            OR (api_keys_origins_valid(allowed_origins) AND key_type = 'publishable')
        ),
    ADD COLUMN metadata JSONB NOT NULL DEFAULT '{}'::JSONB
        CONSTRAINT api_keys_metadata_valid CHECK (api_keys_metadata_valid(metadata));
