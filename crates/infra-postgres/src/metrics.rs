//! What the store records through the `metrics` facade (docs/metrics.md):
//! events written, by type, counted once their statement or transaction
//! committed. The pool's connections are read on scrape instead
//! ([`PgStore::pool_state`](crate::PgStore::pool_state)). Without an
//! installed recorder (the command line) this does nothing.

use domain::{EventType, KeyEvent};

/// Counter: events written, by `type` (`api_key.created`, ...).
pub const EVENTS_WRITTEN: &str = "apikeys_events_written_total";

/// Counts `events`, which have just committed. A write is rare next to its
/// round trip, so each count looks its counter up by a static key (no
/// allocation).
pub(crate) fn events_committed<'a>(events: impl IntoIterator<Item = &'a KeyEvent>) {
    for event in events {
        let counter = match event.data.event_type() {
            EventType::KeyCreated => {
                metrics::counter!(EVENTS_WRITTEN, "type" => "api_key.created")
            }
            EventType::KeyUpdated => {
                metrics::counter!(EVENTS_WRITTEN, "type" => "api_key.updated")
            }
            EventType::KeyRevoked => {
                metrics::counter!(EVENTS_WRITTEN, "type" => "api_key.revoked")
            }
            EventType::KeyRotated => {
                metrics::counter!(EVENTS_WRITTEN, "type" => "api_key.rotated")
            }
            EventType::TenantCreated => {
                metrics::counter!(EVENTS_WRITTEN, "type" => "tenant.created")
            }
            EventType::KeyExpiring => {
                metrics::counter!(EVENTS_WRITTEN, "type" => "api_key.expiring")
            }
            EventType::KeyExpired => {
                metrics::counter!(EVENTS_WRITTEN, "type" => "api_key.expired")
            }
        };
        counter.increment(1);
    }
}
