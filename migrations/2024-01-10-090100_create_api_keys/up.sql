-- API keys. Only the HMAC of a full key is stored (`hash`); the full key never
-- reaches the database. Every query but the lookup by hash filters by
-- `tenant_id`, so the table can later be distributed by tenant.
CREATE TABLE api_keys (
    id TEXT COLLATE "C" NOT NULL PRIMARY KEY
        CONSTRAINT api_keys_id_format CHECK (id ~ '^key_[0-7][0-9A-HJKMNP-TV-Z]{25}$'),
    tenant_id TEXT COLLATE "C" NOT NULL
        CONSTRAINT api_keys_tenant_id_fkey REFERENCES tenants (id),
    hash BYTEA NOT NULL
        CONSTRAINT api_keys_hash_length CHECK (octet_length(hash) = 32),
    name TEXT NOT NULL
        CONSTRAINT api_keys_name_length CHECK (char_length(name) BETWEEN 1 AND 100),
    key_type TEXT NOT NULL
        CONSTRAINT api_keys_key_type_known CHECK (key_type IN ('publishable', 'secret')),
    mode TEXT NOT NULL
        CONSTRAINT api_keys_mode_known CHECK (mode IN ('live', 'test')),
    prefix TEXT NOT NULL,
    last_four TEXT NOT NULL
        CONSTRAINT api_keys_last_four_length CHECK (char_length(last_four) = 4),
    -- Canonical order (the product document's table order), no NULLs, `*` alone.
    scopes TEXT[] NOT NULL
        CONSTRAINT api_keys_scopes_known CHECK (
            array_ndims(scopes) = 1
            AND cardinality(scopes) BETWEEN 1 AND 9
            AND scopes <@ ARRAY[
                '*', 'users:read', 'users:write', 'sessions:read', 'sessions:write',
                'organizations:read', 'organizations:write', 'webhooks:read',
                'webhooks:write', 'audit-logs:read'
            ]::TEXT[]
            AND (scopes = ARRAY['*']::TEXT[] OR NOT ('*' = ANY (scopes)))
        ),
    created_at TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    expires_at TIMESTAMPTZ,
    -- When the key is (or was) revoked: now for a deletion, the end of the
    -- grace period for a rotation.
    revokes_at TIMESTAMPTZ,
    replaced_by TEXT COLLATE "C",
    -- The prefix is the key's first 12 characters, so it starts with its type and mode.
    CONSTRAINT api_keys_prefix_matches CHECK (
        char_length(prefix) = 12
        AND starts_with(
            prefix,
            CASE key_type WHEN 'secret' THEN 'sk_' ELSE 'pk_' END || mode || '_'
        )
    ),
    -- Only a rotated key has a successor, and a rotated key has a revocation time.
    CONSTRAINT api_keys_replaced_by_revokes CHECK (
        replaced_by IS NULL OR (revokes_at IS NOT NULL AND replaced_by <> id)
    ),
    -- Target of the successor reference below, and the list query's index:
    -- `WHERE tenant_id = $1 [AND id < $cursor] ORDER BY id DESC`.
    CONSTRAINT api_keys_tenant_id_id_key UNIQUE (tenant_id, id),
    -- The successor belongs to the same tenant. Deferred: a rotation schedules
    -- the old key's revocation and inserts its successor in one statement.
    CONSTRAINT api_keys_replaced_by_fkey FOREIGN KEY (tenant_id, replaced_by)
        REFERENCES api_keys (tenant_id, id) DEFERRABLE INITIALLY DEFERRED
);

-- Authentication: the one lookup across tenants.
CREATE UNIQUE INDEX api_keys_hash_key ON api_keys (hash);

-- The full-access guard (CONTRACT §4): live full-access secret keys with no
-- revocation scheduled; expiry is checked against the caller's clock.
CREATE INDEX api_keys_full_access_guard_idx ON api_keys (tenant_id, expires_at)
    WHERE key_type = 'secret' AND mode = 'live' AND scopes = ARRAY['*']::TEXT[]
        AND revokes_at IS NULL;

-- The active key limit: keys neither revoked nor expired at the caller's now.
CREATE INDEX api_keys_key_limit_idx ON api_keys (tenant_id, revokes_at, expires_at);
