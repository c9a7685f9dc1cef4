DROP INDEX api_keys_expires_at_idx;
DROP INDEX key_events_expiry_once;
-- Expiry events already written stay (the table is append-only): the old
-- checks come back for new rows only.
ALTER TABLE key_events DROP CONSTRAINT key_events_actor_type_known;
ALTER TABLE key_events ADD CONSTRAINT key_events_actor_type_known
    CHECK (actor_type IN ('api_key', 'cli', 'leak_report')) NOT VALID;
ALTER TABLE key_events DROP CONSTRAINT key_events_type_known;
ALTER TABLE key_events ADD CONSTRAINT key_events_type_known CHECK (type IN (
    'api_key.created', 'api_key.updated', 'api_key.revoked', 'api_key.rotated',
    'tenant.created')) NOT VALID;
DROP TRIGGER key_events_webhook_deliveries ON key_events;
DROP FUNCTION key_events_webhook_deliveries();
DROP TABLE webhook_deliveries;
DROP TABLE webhook_endpoints;
DROP FUNCTION apikeys_ulid(timestamptz);
