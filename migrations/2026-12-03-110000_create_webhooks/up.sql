-- Webhooks of key events (docs/webhooks.md): endpoints, and one delivery row
-- per event and matching endpoint, written by a trigger in the transaction
-- that writes the event, so that a committed event always has its
-- deliveries (at least once, from the record), whichever statement wrote it.

-- A ULID (`[0-7][0-9A-HJKMNP-TV-Z]{25}`) for time `at`: 48 bits of
-- milliseconds, then 80 random bits (from `gen_random_uuid`'s random bytes,
-- skipping its version and variant bits). For delivery ids, which the
-- trigger makes at the event's time (the service's clock, never the
-- database's).
CREATE FUNCTION apikeys_ulid(at timestamptz) RETURNS text LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    alphabet CONSTANT text := '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
    ms bigint := floor(extract(epoch FROM at) * 1000);
    uuid bytea := decode(replace(gen_random_uuid()::text, '-', ''), 'hex');
    -- Bytes 0-3 and 10-15 of a version 4 UUID are all random.
    high bigint := (get_byte(uuid, 0)::bigint << 32) | (get_byte(uuid, 1)::bigint << 24)
        | (get_byte(uuid, 2)::bigint << 16) | (get_byte(uuid, 3)::bigint << 8) | get_byte(uuid, 10);
    low bigint := (get_byte(uuid, 11)::bigint << 32) | (get_byte(uuid, 12)::bigint << 24)
        | (get_byte(uuid, 13)::bigint << 16) | (get_byte(uuid, 14)::bigint << 8) | get_byte(uuid, 15);
    out text := '';
BEGIN
    FOR i IN REVERSE 9..0 LOOP
        out := out || substr(alphabet, ((ms >> (5 * i)) & 31)::int + 1, 1);
    END LOOP;
    FOR i IN REVERSE 7..0 LOOP
        out := out || substr(alphabet, ((high >> (5 * i)) & 31)::int + 1, 1);
    END LOOP;
    FOR i IN REVERSE 7..0 LOOP
        out := out || substr(alphabet, ((low >> (5 * i)) & 31)::int + 1, 1);
    END LOOP;
    RETURN out;
END;
$$;

CREATE TABLE webhook_endpoints (
    id TEXT COLLATE "C" NOT NULL PRIMARY KEY
        CONSTRAINT webhook_endpoints_id_format CHECK (id ~ '^whe_[0-7][0-9A-HJKMNP-TV-Z]{25}$'),
    tenant_id TEXT COLLATE "C" NOT NULL
        CONSTRAINT webhook_endpoints_tenant_id_fkey REFERENCES tenants (id),
    -- The mode of the key that created it: it receives that mode's events only.
    mode TEXT NOT NULL
        CONSTRAINT webhook_endpoints_mode_known CHECK (mode IN ('live', 'test')),
    url TEXT NOT NULL
        CONSTRAINT webhook_endpoints_url_length CHECK (char_length(url) BETWEEN 1 AND 2048),
    -- `{*}` or event types.
    events TEXT[] NOT NULL
        CONSTRAINT webhook_endpoints_events_present CHECK (cardinality(events) BETWEEN 1 AND 20),
    description TEXT
        CONSTRAINT webhook_endpoints_description_length CHECK (char_length(description) <= 500),
    enabled BOOLEAN NOT NULL,
    -- The signing secret, sealed with AES-256-GCM under a key derived from the
    -- hash key (12-byte nonce, then ciphertext and tag), bound to the
    -- endpoint's id: never in clear (docs/webhooks.md, "Secrets").
    secret BYTEA NOT NULL,
    -- The secret before the last rotation, sealed the same way, which also
    -- signs until `previous_secret_expires_at` (24 hours after the rotation).
    previous_secret BYTEA,
    previous_secret_expires_at TIMESTAMPTZ,
    -- Since when every attempt failed (NULL after a success): 5 days of it
    -- disable the endpoint.
    failing_since TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT webhook_endpoints_previous_secret CHECK (
        (previous_secret IS NULL) = (previous_secret_expires_at IS NULL))
);

-- The listing (`WHERE tenant_id = $1 AND mode = $2 [AND id < $cursor] ORDER
-- BY id DESC`) and the trigger's lookup of an event's endpoints.
CREATE INDEX webhook_endpoints_tenant_mode_id_idx ON webhook_endpoints (tenant_id, mode, id);

CREATE TABLE webhook_deliveries (
    id TEXT COLLATE "C" NOT NULL PRIMARY KEY
        CONSTRAINT webhook_deliveries_id_format CHECK (id ~ '^whd_[0-7][0-9A-HJKMNP-TV-Z]{25}$'),
    -- Deleting an endpoint deletes its deliveries: none is attempted again.
    endpoint_id TEXT COLLATE "C" NOT NULL
        CONSTRAINT webhook_deliveries_endpoint_id_fkey REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- The event (`key_events.seq`). No foreign key, as for `key_events`' own
    -- key: the trigger below writes the row in the event's own statement.
    event_seq BIGINT NOT NULL,
    event_id TEXT COLLATE "C" NOT NULL,
    event_type TEXT NOT NULL,
    status TEXT NOT NULL
        CONSTRAINT webhook_deliveries_status_known CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    -- The last attempt's HTTP status (NULL: no attempt, or no response).
    last_status INTEGER,
    last_error TEXT,
    -- When the next attempt is due; NULL unless pending.
    next_attempt_at TIMESTAMPTZ,
    -- A node attempting the delivery holds it until then; after that, another
    -- node may (docs/webhooks.md, "Several nodes").
    lease_until TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL,
    CONSTRAINT webhook_deliveries_once UNIQUE (endpoint_id, event_seq),
    CONSTRAINT webhook_deliveries_pending_due CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL))
);

-- The workers' claim: due pending deliveries, oldest first.
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE status = 'pending';
-- The deliveries log of an endpoint, newest first.
CREATE INDEX webhook_deliveries_endpoint_id_id_idx ON webhook_deliveries (endpoint_id, id);

-- One delivery per enabled endpoint of the event's tenant and mode whose
-- events match, in the event's transaction. Tenant events (no mode) go to no
-- endpoint.
CREATE FUNCTION key_events_webhook_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.mode IS NOT NULL THEN
        INSERT INTO webhook_deliveries
            (id, endpoint_id, event_seq, event_id, event_type, status, next_attempt_at, created_at)
        SELECT 'whd_' || apikeys_ulid(NEW.created_at), e.id, NEW.seq, NEW.id, NEW.type, 'pending',
            NEW.created_at, NEW.created_at
        FROM webhook_endpoints e
        WHERE e.tenant_id = NEW.tenant_id AND e.mode = NEW.mode AND e.enabled
            AND ('*' = ANY (e.events) OR NEW.type = ANY (e.events));
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER key_events_webhook_deliveries AFTER INSERT ON key_events
    FOR EACH ROW EXECUTE FUNCTION key_events_webhook_deliveries();

-- Expiry events (`api_key.expiring`, `api_key.expired`), written by the
-- scheduler of every node with actor `system`: at most one of each per key,
-- whichever node writes it first (`ON CONFLICT DO NOTHING`).
ALTER TABLE key_events DROP CONSTRAINT key_events_type_known;
ALTER TABLE key_events ADD CONSTRAINT key_events_type_known CHECK (type IN (
    'api_key.created', 'api_key.updated', 'api_key.revoked', 'api_key.rotated',
    'tenant.created', 'api_key.expiring', 'api_key.expired'));
ALTER TABLE key_events DROP CONSTRAINT key_events_actor_type_known;
ALTER TABLE key_events ADD CONSTRAINT key_events_actor_type_known
    CHECK (actor_type IN ('api_key', 'cli', 'leak_report', 'system'));
CREATE UNIQUE INDEX key_events_expiry_once ON key_events (key_id, type)
    WHERE type IN ('api_key.expiring', 'api_key.expired');

-- The expiry scheduler's scan: keys that expire, by when.
CREATE INDEX api_keys_expires_at_idx ON api_keys (expires_at) WHERE expires_at IS NOT NULL;
