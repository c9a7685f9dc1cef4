-- Key events: one row per committed change, written in the same statement or
-- transaction as the change (docs/events.md). Other nodes follow the table by
-- `seq`; the audit log (`GET /v1/audit-events`) pages it by `id`.
CREATE TABLE key_events (
    -- Handed out at insert time, not at commit time: numbers can commit out of
    -- order, which a follower must allow for (docs/events.md).
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT COLLATE "C" NOT NULL
        CONSTRAINT key_events_id_format CHECK (id ~ '^evt_[0-7][0-9A-HJKMNP-TV-Z]{25}$'),
    type TEXT NOT NULL
        CONSTRAINT key_events_type_known CHECK (type IN (
            'api_key.created', 'api_key.updated', 'api_key.revoked', 'api_key.rotated',
            'tenant.created')),
    created_at TIMESTAMPTZ NOT NULL,
    tenant_id TEXT COLLATE "C" NOT NULL
        CONSTRAINT key_events_tenant_id_fkey REFERENCES tenants (id),
    key_id TEXT COLLATE "C",
    mode TEXT
        CONSTRAINT key_events_mode_known CHECK (mode IN ('live', 'test')),
    actor_type TEXT NOT NULL
        CONSTRAINT key_events_actor_type_known CHECK (actor_type IN ('api_key', 'cli', 'leak_report')),
    actor_key_id TEXT COLLATE "C",
    -- The `X-Request-ID` of the request that made the change; NULL outside HTTP.
    request_id TEXT
        CONSTRAINT key_events_request_id_length CHECK (char_length(request_id) BETWEEN 1 AND 200),
    -- The event's `data` (docs/api.md, "The event object"). Never a secret or a hash.
    data JSONB NOT NULL,
    CONSTRAINT key_events_id_key UNIQUE (id),
    -- Only key events have a key, and a key event always has its mode.
    CONSTRAINT key_events_key_has_mode CHECK ((key_id IS NULL) = (mode IS NULL)),
    CONSTRAINT key_events_key_type CHECK ((key_id IS NULL) = (type = 'tenant.created')),
    CONSTRAINT key_events_actor_key CHECK ((actor_type = 'api_key') = (actor_key_id IS NOT NULL))
    -- No foreign key from (tenant_id, key_id) to api_keys: every event is
    -- written by the very statement that writes its key, so the key exists
    -- by construction, and keys are never deleted. Checking it anyway (a
    -- `FOR KEY SHARE` lock on a row the same transaction just updated)
    -- doubled the cost of a rotation (docs/performance.md).
);

-- The audit log: `WHERE tenant_id = $1 [AND id < $cursor] ORDER BY id DESC`,
-- and the same for one key.
CREATE INDEX key_events_tenant_id_id_idx ON key_events (tenant_id, id);
CREATE INDEX key_events_tenant_id_key_id_id_idx ON key_events (tenant_id, key_id, id);

-- Every event wakes the listeners of other nodes when its transaction commits.
-- The payload is the sequence number only: a hint to read the table, never the
-- data (no secret, no hash).
CREATE FUNCTION key_events_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('apikeys_key_events', NEW.seq::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER key_events_notify AFTER INSERT ON key_events
    FOR EACH ROW EXECUTE FUNCTION key_events_notify();

-- Events are never changed or deleted.
CREATE FUNCTION key_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'key_events is append-only';
END;
$$;

CREATE TRIGGER key_events_append_only BEFORE UPDATE OR DELETE ON key_events
    FOR EACH ROW EXECUTE FUNCTION key_events_append_only();
