//! Randomness: the [`SecretSource`] port and the operating system's CSPRNG.
//! Key bodies and ULIDs draw from it.

/// Cryptographically secure random bytes, for key bodies and ULIDs.
pub trait SecretSource: Send + Sync {
    /// Fills `buf` with random bytes.
    fn fill(&self, buf: &mut [u8]);
}

/// The operating system's CSPRNG.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsSecretSource;

impl SecretSource for OsSecretSource {
    fn fill(&self, buf: &mut [u8]) {
        // The OS generator failing means the machine cannot make keys safely at
        // all; there is no sensible way to go on.
        #[expect(clippy::expect_used, reason = "no safe fallback for a broken CSPRNG")]
        getrandom::getrandom(buf).expect("the operating system's random source failed");
    }
}
