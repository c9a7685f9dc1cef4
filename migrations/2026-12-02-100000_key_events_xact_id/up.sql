-- The transaction that wrote each event, so that a follower can tell an event
-- that may still commit from one that never can (docs/events.md, "Following
-- the table"). Sequence numbers are handed out at insert time and commit out
-- of order without bound; transaction ids below the oldest transaction still
-- running (`pg_snapshot_xmin`) belong to transactions that have ended.
--
-- Added without a default first, so that the table is not rewritten (and its
-- append-only trigger not involved): rows written before this migration keep
-- NULL, and all of them committed before it (ALTER TABLE waits for them).
ALTER TABLE key_events ADD COLUMN xact_id xid8;
ALTER TABLE key_events ALTER COLUMN xact_id SET DEFAULT pg_current_xact_id();

-- The follower's read: `WHERE xact_id >= $horizon`.
CREATE INDEX key_events_xact_id_idx ON key_events (xact_id);
