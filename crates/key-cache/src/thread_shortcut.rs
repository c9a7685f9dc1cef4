//! [`ThreadShortcut`]: on each thread, the entries it found last, in front of the
//! shared cache (docs/cache.md, "The hit path").
//!
//! Why: a lookup in the shared cache (`moka`) hashes the key, walks its
//! concurrent map, reads the clock and logs the read for its eviction
//! policy; measured, that was the largest single cost of a cache hit
//! (docs/performance.md, "Load"). A thread answering the same keys again and
//! again (a service verifying its callers) finds them here with one array
//! index and a comparison.
//!
//! What it holds is only a shortcut to entries of the shared cache, never a
//! source of its own: the caller judges every entry it gets from here
//! exactly as one from the shared cache (expiry of the entry, invalidations
//! since it was loaded) before using it, and goes to the shared cache when
//! that fails. An entry evicted from the shared cache for room may still be
//! answered from here until it expires or is replaced; its content is as
//! true as it was, which is all the shared cache promises either.

use std::cell::RefCell;

use domain::KeyHash;
use thread_local::ThreadLocal;

/// Entries remembered per thread: a few kilobytes a thread.
const SLOTS: usize = 64;

type Slots<V> = [Option<(KeyHash, V)>; SLOTS];

/// Per thread, a direct-mapped array of the last entry seen for each slot.
pub(crate) struct ThreadShortcut<V: Send> {
    threads: ThreadLocal<RefCell<Box<Slots<V>>>>,
}

impl<V: Clone + Send> ThreadShortcut<V> {
    /// Nothing remembered yet.
    pub(crate) fn new() -> Self {
        ThreadShortcut {
            threads: ThreadLocal::new(),
        }
    }

    /// The entry this thread last remembered for `hash`, if any.
    pub(crate) fn get(&self, hash: &KeyHash) -> Option<V> {
        let slots = self.threads.get()?.borrow();
        match &slots[slot(hash)] {
            Some((held, value)) if held == hash => Some(value.clone()),
            _ => None,
        }
    }

    /// Remembers `value` for `hash` on this thread, in place of whatever
    /// shared its slot.
    pub(crate) fn put(&self, hash: KeyHash, value: V) {
        let slots = self
            .threads
            .get_or(|| RefCell::new(Box::new(std::array::from_fn(|_| None))));
        slots.borrow_mut()[slot(&hash)] = Some((hash, value));
    }
}

/// The slot of `hash`. An HMAC is uniform, so its first bytes spread keys
/// over the slots as well as any hash of it would.
fn slot(hash: &KeyHash) -> usize {
    let [a, b, ..] = *hash.as_bytes();
    usize::from(u16::from_le_bytes([a, b])) % SLOTS
}

#[cfg(test)]
mod tests {
    use domain::testing::SeqSecretSource;
    use domain::{HashKey, KeyType, Mode, PlainKey};

    use super::*;

    /// Hashes of distinct keys, by slot: the first two that share a slot,
    /// and one in another slot.
    fn hashes() -> (KeyHash, KeyHash, KeyHash) {
        let hash_key = HashKey::from_bytes(&[7u8; 32]).unwrap_or_else(|e| panic!("{e}"));
        let secrets = SeqSecretSource::new(1);
        let mut seen: Vec<KeyHash> = Vec::new();
        loop {
            let key = PlainKey::generate(KeyType::Secret, Mode::Live, &secrets);
            let hash = hash_key.hash(&key);
            if let Some(twin) = seen.iter().find(|h| slot(h) == slot(&hash)) {
                let other = seen
                    .iter()
                    .find(|h| slot(h) != slot(&hash))
                    .copied()
                    .unwrap_or_else(|| panic!("keys in more than one slot"));
                return (*twin, hash, other);
            }
            seen.push(hash);
        }
    }

    #[test]
    fn a_remembered_entry_is_found_and_another_hash_is_not() {
        let (a, _, other) = hashes();
        let shortcut = ThreadShortcut::new();
        assert_eq!(shortcut.get(&a), None);
        shortcut.put(a, "a");
        assert_eq!(shortcut.get(&a), Some("a"));
        assert_eq!(shortcut.get(&other), None);
    }

    #[test]
    fn a_hash_in_the_same_slot_replaces_the_entry_and_is_told_apart() {
        let (a, b, _) = hashes();
        let shortcut = ThreadShortcut::new();
        shortcut.put(a, "a");
        assert_eq!(shortcut.get(&b), None, "same slot, another hash");
        shortcut.put(b, "b");
        assert_eq!(shortcut.get(&a), None, "replaced");
        assert_eq!(shortcut.get(&b), Some("b"));
    }

    #[test]
    fn each_thread_remembers_its_own() {
        let (a, _, _) = hashes();
        let shortcut = ThreadShortcut::new();
        shortcut.put(a, "here");
        std::thread::scope(|s| {
            s.spawn(|| {
                assert_eq!(shortcut.get(&a), None);
                shortcut.put(a, "there");
                assert_eq!(shortcut.get(&a), Some("there"));
            });
        });
        assert_eq!(shortcut.get(&a), Some("here"));
    }
}
