DROP TABLE key_events;
DROP FUNCTION key_events_append_only();
DROP FUNCTION key_events_notify();
