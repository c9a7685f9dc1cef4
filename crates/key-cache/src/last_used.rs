//! Batched `last_used_at` writes: uses are collected in memory and written
//! together, in one statement, at most once a second per node (docs/cache.md,
//! "Last use").

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use domain::{KeyId, KeyLookup, KeyUse};

/// Uses waiting to be written, at most one per key (the latest).
#[derive(Debug, Default)]
pub struct UseBuffer {
    pending: Mutex<HashMap<KeyId, KeyUse>>,
    batches: AtomicU64,
    rows: AtomicU64,
}

/// What a [`UseBuffer`] has written since it was made (docs/metrics.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UseStats {
    /// Batches written (one statement each).
    pub batches: u64,
    /// Rows those batches updated (a use another node wrote first, or of a
    /// key gone meanwhile, updates none).
    pub rows: u64,
}

impl UseBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a use; a later use of the same key replaces an earlier one.
    pub fn push(&self, use_: KeyUse) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending
            .entry(use_.key_id)
            .and_modify(|u| {
                if use_.at > u.at {
                    *u = use_;
                }
            })
            .or_insert(use_);
    }

    /// How many keys have a use waiting.
    pub fn len(&self) -> usize {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What has been written so far.
    pub fn stats(&self) -> UseStats {
        UseStats {
            batches: self.batches.load(Ordering::Relaxed),
            rows: self.rows.load(Ordering::Relaxed),
        }
    }

    /// Writes every waiting use with one `record_uses` call. On failure the
    /// uses go back into the buffer (unless a newer use of the key arrived
    /// meanwhile) for the next flush.
    ///
    /// # Errors
    /// The repository's error.
    pub fn flush(&self, keys: &dyn KeyLookup) -> Result<usize, domain::RepositoryError> {
        let batch: Vec<KeyUse> = {
            let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.drain().map(|(_, u)| u).collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        match keys.record_uses(&batch) {
            Ok(written) => {
                self.batches.fetch_add(1, Ordering::Relaxed);
                self.rows.fetch_add(
                    u64::try_from(written).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                tracing::debug!(uses = batch.len(), written, "recorded key uses");
                Ok(written)
            }
            Err(e) => {
                for use_ in batch {
                    self.push(use_);
                }
                Err(e)
            }
        }
    }
}

/// A thread that flushes a [`UseBuffer`] every `interval`, and once more
/// when it is stopped (a graceful stop loses no use).
#[derive(Debug)]
pub struct UseFlusher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    running: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UseFlusher {
    /// Starts flushing `buffer` into `keys` every `interval`.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn spawn(
        buffer: Arc<UseBuffer>,
        keys: Arc<dyn KeyLookup>,
        interval: Duration,
    ) -> std::io::Result<Self> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let running = Arc::new(AtomicBool::new(true));
        let thread = {
            let (stop, running) = (stop.clone(), running.clone());
            std::thread::Builder::new()
                .name("apikeys-last-used".to_owned())
                .spawn(move || {
                    let (lock, wake) = &*stop;
                    loop {
                        let stopped = {
                            let guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
                            let (guard, _) = wake
                                .wait_timeout_while(guard, interval, |stopped| !*stopped)
                                .unwrap_or_else(PoisonError::into_inner);
                            *guard
                        };
                        if let Err(e) = buffer.flush(keys.as_ref()) {
                            tracing::warn!(error = %e, "could not record key uses; retrying");
                        }
                        if stopped {
                            break;
                        }
                    }
                    running.store(false, Ordering::Release);
                })?
        };
        Ok(UseFlusher {
            stop,
            running,
            thread: Some(thread),
        })
    }

    /// Flushes what is pending and stops the thread, waiting for it.
    pub fn stop(&mut self) {
        {
            let (lock, wake) = &*self.stop;
            *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
            wake.notify_all();
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the last-used writer panicked");
            }
        }
    }

    /// Whether the thread still runs.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }
}

impl Drop for UseFlusher {
    fn drop(&mut self) {
        self.stop();
    }
}
