//! The check that a process runs with the hash key its database's keys were
//! hashed with (docs/api.md, "The hash key"). Without it a wrong but
//! well-formed hash key is accepted everywhere, and every key fails to
//! authenticate.

use domain::hashing::{HashKeyVerifier, VERIFIER_SALT_BYTES};
use domain::{HashKey, RepositoryError};
use infra_postgres::PgStore;
use thiserror::Error;

/// How the hash key passed [`check_hash_key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashKeyCheck {
    /// The database's verifier matches it.
    Matches,
    /// The database had no verifier and no key: its verifier was stored now.
    Stored,
}

/// Why a hash key is refused for a database.
#[derive(Debug, Error)]
pub enum HashKeyCheckError {
    /// The database's keys were hashed with another hash key.
    #[error(
        "APIKEYS_HASH_KEY is not the hash key of this database: its keys were hashed with \
         another one, so every key would be refused. Set APIKEYS_HASH_KEY to the hash key \
         the database was created with (or, to give up every existing key, see \
         `apikeys hash-key set --help`)"
    )]
    Mismatch,
    /// The database holds keys but no verifier (made before verifiers
    /// existed): nothing tells whether the hash key is right.
    #[error(
        "this database has keys but no hash-key verifier yet (it was created by an earlier \
         version): check that APIKEYS_HASH_KEY is the hash key its keys were created with, \
         then run `apikeys hash-key set` once with it"
    )]
    Unset,
    /// The database could not be read or written.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
}

/// A verifier of `hash_key` under a fresh random salt.
pub fn new_verifier(hash_key: &HashKey) -> HashKeyVerifier {
    let mut salt = [0u8; VERIFIER_SALT_BYTES];
    // Start-up work: no recovery from an operating system without randomness.
    #[expect(clippy::expect_used, reason = "the OS random source does not fail")]
    getrandom::getrandom(&mut salt).expect("the operating system's random source failed");
    hash_key.verifier(salt)
}

/// Checks `hash_key` against the database's verifier, storing one first when
/// the database has none and holds no key (a new database). Call it after
/// migrating and before serving or changing anything.
///
/// # Errors
/// [`HashKeyCheckError::Mismatch`] for another hash key,
/// [`HashKeyCheckError::Unset`] for a database with keys and no verifier
/// (`apikeys hash-key set`), or a repository error.
pub fn check_hash_key(
    store: &PgStore,
    hash_key: &HashKey,
) -> Result<HashKeyCheck, HashKeyCheckError> {
    if let Some(stored) = store.hash_key_verifier()? {
        return verdict(hash_key, &stored, HashKeyCheck::Matches);
    }
    let mine = new_verifier(hash_key);
    match store.init_hash_key_verifier(&mine)? {
        Some(stored) if stored == mine => Ok(HashKeyCheck::Stored),
        // Another process stored its verifier first.
        Some(stored) => verdict(hash_key, &stored, HashKeyCheck::Matches),
        None => Err(HashKeyCheckError::Unset),
    }
}

fn verdict(
    hash_key: &HashKey,
    stored: &HashKeyVerifier,
    ok: HashKeyCheck,
) -> Result<HashKeyCheck, HashKeyCheckError> {
    if hash_key.is_verified_by(stored) {
        Ok(ok)
    } else {
        Err(HashKeyCheckError::Mismatch)
    }
}
