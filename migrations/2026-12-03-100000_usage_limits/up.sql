-- Usage limits per key (docs/limits.md). The bounds match the domain's
-- (crates/domain/src/limits.rs): a row the domain would refuse cannot be
-- written.
ALTER TABLE api_keys
    ADD COLUMN rate_limit integer
        CHECK (rate_limit BETWEEN 1 AND 1000000),
    ADD COLUMN rate_window_seconds integer
        CHECK (rate_window_seconds BETWEEN 1 AND 86400),
    ADD COLUMN credits_remaining bigint
        CHECK (credits_remaining BETWEEN 0 AND 1000000000000),
    ADD COLUMN credits_refill_amount bigint
        CHECK (credits_refill_amount BETWEEN 1 AND 1000000000000),
    ADD COLUMN credits_refill_interval text
        CHECK (credits_refill_interval IN ('daily', 'monthly')),
    -- When the credits were last set (created, updated, rotated) or
    -- refilled: the period a share of them belongs to.
    ADD COLUMN credits_since timestamptz,
    ADD CONSTRAINT api_keys_rate_limit_whole
        CHECK ((rate_limit IS NULL) = (rate_window_seconds IS NULL)),
    ADD CONSTRAINT api_keys_credits_refill_whole
        CHECK ((credits_refill_amount IS NULL) = (credits_refill_interval IS NULL)),
    ADD CONSTRAINT api_keys_credits_whole
        CHECK ((credits_remaining IS NULL) = (credits_since IS NULL)
               AND (credits_remaining IS NOT NULL OR credits_refill_amount IS NULL));

-- The uses of each window handed out to nodes, all nodes together: a node
-- takes a share with one conditional upsert, never past the limit.
CREATE TABLE usage_windows (
    key_id text NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    window_start timestamptz NOT NULL,
    used integer NOT NULL CHECK (used BETWEEN 0 AND 1000000),
    -- The size of the last share handed out (what the upsert returns).
    granted integer NOT NULL CHECK (granted BETWEEN 0 AND 1000000),
    PRIMARY KEY (key_id, window_start)
);
