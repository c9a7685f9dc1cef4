//! Authentication at memory speed (docs/cache.md).
//!
//! [`KeyCache`] sits in front of the domain's key repository as an
//! [`Authenticator`](domain::Authenticator): it keeps what keys looked like
//! (never a verdict), judges them against the clock on every hit, answers
//! hits on the caller's thread, shares one query among concurrent misses,
//! remembers unknown keys briefly, and is bounded in size. It trusts itself
//! only while the event feed has confirmed, within the last second, that it
//! reported every change ([`Freshness`]); otherwise it asks storage. As a
//! [`KeyChangeListener`](domain::KeyChangeListener) it drops a key when the
//! service on this node changes it, or the event feed reports another
//! node's change.
//!
//! Uses of keys are collected in a [`UseBuffer`] and written in batches by a
//! [`UseFlusher`], at most once a second, and once more on a graceful stop.

mod cache;
mod freshness;
mod invalidations;
mod last_used;
mod thread_shortcut;

pub use cache::{CacheConfig, CacheStats, KeyCache};
pub use freshness::Freshness;
pub use last_used::{UseBuffer, UseFlusher, UseStats};
