use std::sync::atomic::{AtomicU64, Ordering};

use crate::random::SecretSource;

/// Deterministic "randomness": a seeded xorshift stream. Same seed, same keys
/// and ids, so tests can be repeated exactly. Never use it outside tests.
#[derive(Debug)]
pub struct SeqSecretSource {
    state: AtomicU64,
}

impl SeqSecretSource {
    /// A stream from `seed` (zero is replaced by a fixed non-zero seed).
    pub fn new(seed: u64) -> Self {
        SeqSecretSource {
            state: AtomicU64::new(if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            }),
        }
    }
}

impl Default for SeqSecretSource {
    fn default() -> Self {
        SeqSecretSource::new(1)
    }
}

impl SecretSource for SeqSecretSource {
    fn fill(&self, buf: &mut [u8]) {
        for byte in buf {
            let next = self
                .state
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |mut x| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    Some(x)
                })
                .unwrap_or_else(|x| x);
            *byte = (next >> 24) as u8;
        }
    }
}
