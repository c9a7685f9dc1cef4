//! Per thread, what an answer derives from a key snapshot, made once: the
//! cache hands out the same immutable snapshot (`Arc<ApiKey>`) of a key
//! until the key changes, so what is rendered from it (verify's `valid`
//! body, forward-auth's `X-ApiKey-*` headers) is the same every time
//! (docs/performance.md, "Verify against `/healthz`").

use std::sync::Arc;

use domain::ApiKey;

/// Snapshots remembered per thread and kind of value.
const SLOTS: usize = 16;

/// A few key snapshots, each with the value made from it. The `Arc` itself
/// is kept, so its address, which names the slot, cannot be reused by
/// another snapshot while it is held; a changed key is a new snapshot and
/// is made anew.
pub(crate) struct PerSnapshot<V>([Option<(Arc<ApiKey>, V)>; SLOTS]);

impl<V: Clone> PerSnapshot<V> {
    /// Nothing remembered.
    pub(crate) fn new() -> Self {
        PerSnapshot(std::array::from_fn(|_| None))
    }

    /// The slot of `key`'s snapshot: its address, without the low bits that
    /// allocations share.
    pub(crate) fn slot(key: &Arc<ApiKey>) -> usize {
        (Arc::as_ptr(key) as usize >> 4) % SLOTS
    }

    /// The value made from this snapshot: `make`'s, the first time.
    ///
    /// # Errors
    /// `make`'s (then nothing is remembered).
    pub(crate) fn get_or_make<E>(
        &mut self,
        key: &Arc<ApiKey>,
        make: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        let slot = &mut self.0[Self::slot(key)];
        match slot {
            Some((held, value)) if Arc::ptr_eq(held, key) => Ok(value.clone()),
            _ => {
                let value = make()?;
                *slot = Some((Arc::clone(key), value.clone()));
                Ok(value)
            }
        }
    }

    /// Whether a value made from this very snapshot is held.
    #[cfg(test)]
    pub(crate) fn holds(&self, key: &Arc<ApiKey>) -> bool {
        self.0[Self::slot(key)]
            .as_ref()
            .is_some_and(|(held, _)| Arc::ptr_eq(held, key))
    }
}
