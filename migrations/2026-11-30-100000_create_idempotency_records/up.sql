-- Records of idempotent requests (docs/api.md, "Idempotent requests"): each
-- is written in the transaction of the change it records, and answers repeats
-- of its request until `expires_at` (24 hours). `response` is the response the
-- request got, sealed with AES-256-GCM under a key derived from the hash key
-- (12-byte nonce, then ciphertext and tag): it holds a full key, which must
-- never be in the database in clear.
CREATE TABLE idempotency_records (
    tenant_id       TEXT        NOT NULL REFERENCES tenants (id),
    caller_key_id   TEXT        NOT NULL,
    idempotency_key TEXT        NOT NULL
        CHECK (octet_length(idempotency_key) BETWEEN 1 AND 255),
    fingerprint     BYTEA       NOT NULL CHECK (octet_length(fingerprint) = 32),
    response        BYTEA       NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, caller_key_id, idempotency_key)
);

-- The periodic deletion of expired records.
CREATE INDEX idempotency_records_expires_at ON idempotency_records (expires_at);
