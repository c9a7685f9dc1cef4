//! [`Invalidations`]: which keys changed, and when, in the order of an
//! epoch counter, so that an entry loaded before its key's last change is
//! never used (docs/cache.md, "Invalidation").
//!
//! Memory is bounded, but no invalidation is ever lost to the bound: when
//! the records are full (and none is old enough to drop), they are all
//! replaced by a floor, "every entry loaded before this epoch is stale".
//! That costs one reload of each held key; it can never make a changed
//! key's entry look current, whatever else changed around it. (A bounded
//! cache with an admission policy, such as `moka`, may refuse or evict the
//! one record that mattered.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use domain::KeyId;

/// The last invalidation of each key remembered, and the floor below which
/// every entry is stale. Written by one invalidation at a time (the caller
/// serialises them); read by any thread.
#[derive(Debug)]
pub(crate) struct Invalidations {
    /// Key id to the epoch of its last invalidation and when it happened.
    records: RwLock<HashMap<KeyId, (u64, Instant)>>,
    /// Every entry loaded at or before this epoch is stale: invalidations up
    /// to it may have been forgotten.
    floor: AtomicU64,
    /// Most records held.
    bound: usize,
    /// How long a record must be kept: longer than any entry loaded before
    /// it can live.
    memory: Duration,
}

impl Invalidations {
    /// None yet; at most `bound` records, each kept for `memory`.
    pub(crate) fn new(bound: u64, memory: Duration) -> Self {
        Invalidations {
            records: RwLock::new(HashMap::new()),
            floor: AtomicU64::new(0),
            bound: usize::try_from(bound).unwrap_or(usize::MAX).max(1),
            memory,
        }
    }

    /// Key `id` was invalidated at `epoch` (greater than every earlier
    /// one), at `now`. Always takes effect: as a record, or, when the
    /// records are full, as the new floor.
    pub(crate) fn record(&self, id: KeyId, epoch: u64, now: Instant) {
        let mut records = self.records.write().unwrap_or_else(PoisonError::into_inner);
        if records.len() >= self.bound && !records.contains_key(&id) {
            // Records older than `memory` judge no living entry.
            records.retain(|_, (_, at)| now.saturating_duration_since(*at) < self.memory);
            if records.len() >= self.bound {
                // Forget them all, and this one, behind a floor that voids
                // every entry they could have voided (and more).
                records.clear();
                self.floor.fetch_max(epoch, Ordering::AcqRel);
                return;
            }
        }
        records.insert(id, (epoch, now));
    }

    /// Whether an entry of key `id` loaded at `loaded_epoch` (the epoch
    /// when its load began, plus one) is older than no invalidation of its
    /// key, as far as every invalidation recorded so far shows.
    pub(crate) fn is_current(&self, id: &KeyId, loaded_epoch: u64) -> bool {
        if loaded_epoch <= self.floor.load(Ordering::Acquire) {
            return false;
        }
        self.records
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .is_none_or(|(epoch, _)| *epoch < loaded_epoch)
    }
}

#[cfg(test)]
mod tests {
    use domain::testing::SeqSecretSource;
    use time::macros::datetime;

    use super::*;

    fn ids(n: usize) -> Vec<KeyId> {
        let secrets = SeqSecretSource::new(3);
        (0..n)
            .map(|_| KeyId::generate(datetime!(2024-01-10 09:00 UTC), &secrets))
            .collect()
    }

    #[test]
    fn an_entry_is_current_only_if_loaded_after_its_keys_last_invalidation() {
        let [a, b] = ids(2)[..] else { panic!() };
        let memory = Invalidations::new(10, Duration::from_secs(60));
        let now = Instant::now();
        memory.record(a, 5, now);
        assert!(
            !memory.is_current(&a, 5),
            "loading when epoch 5 was handed out"
        );
        assert!(memory.is_current(&a, 6));
        assert!(memory.is_current(&b, 1), "another key's change");
    }

    #[test]
    fn a_full_memory_raises_the_floor_instead_of_dropping_a_record() {
        let all = ids(4);
        let memory = Invalidations::new(2, Duration::from_secs(60));
        let now = Instant::now();
        memory.record(all[0], 1, now);
        memory.record(all[1], 2, now);
        memory.record(all[0], 3, now);
        assert!(memory.is_current(&all[3], 1), "an update of a held record");

        memory.record(all[2], 4, now);
        for id in &all {
            assert!(!memory.is_current(id, 4), "loaded before the floor");
            assert!(memory.is_current(id, 5), "loaded after it");
        }
    }

    #[test]
    fn records_older_than_memory_make_room_first() {
        let all = ids(3);
        let memory = Invalidations::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        memory.record(all[0], 1, t0);
        memory.record(all[1], 2, t0 + Duration::from_secs(30));
        memory.record(all[2], 3, t0 + Duration::from_secs(60));
        assert!(
            memory.is_current(&all[0], 1),
            "forgotten: no entry lives so long"
        );
        assert!(!memory.is_current(&all[1], 2), "kept");
        assert!(!memory.is_current(&all[2], 3), "kept");
        assert!(memory.is_current(&all[2], 4), "no floor was needed");
    }
}
