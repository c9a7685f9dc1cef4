//! Fakes (feature `testing`), for the tests of code that uses this crate: an
//! in-memory store that keeps every guarantee of the port docs, a settable
//! clock, a deterministic secret source, and the repository contract suite.
//! They need no other crate (no mockall); the mocks are in `domain::mocks`
//! (feature `mocks`).

mod clock;
pub mod contract;
mod fixtures;
pub mod idempotency_contract;
mod memory;
mod secrets;
pub mod usage_contract;

pub use clock::TestClock;
pub use fixtures::{well_formed_key, ApiKeyBuilder};
pub use memory::{Fault, InMemoryStore};
pub use secrets::SeqSecretSource;
