DROP INDEX key_events_xact_id_idx;
ALTER TABLE key_events DROP COLUMN xact_id;
