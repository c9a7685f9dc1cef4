-- The verifier of the hash key the database's keys are hashed with
-- (docs/api.md, "The hash key"): one row at most, written by the first
-- command that runs with a hash key on a database without keys, or by
-- `apikeys hash-key set`. Every command that uses the hash key compares its
-- own with it and refuses to run on a mismatch. It holds a random salt and
-- HMAC-SHA256(hash key, label || salt): never the hash key.
CREATE TABLE hash_key_verifier (
    id       BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    salt     BYTEA   NOT NULL CHECK (octet_length(salt) = 16),
    verifier BYTEA   NOT NULL CHECK (octet_length(verifier) = 32)
);
