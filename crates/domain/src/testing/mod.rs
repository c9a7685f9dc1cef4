//! Test support (feature `mocks`): mocks of every port, a settable clock, a
//! deterministic secret source, an in-memory store that keeps every guarantee
//! of the port docs, and the repository contract suite.

mod clock;
pub mod contract;
mod idempotency_contract;
mod memory;
mod secrets;

pub use clock::TestClock;
pub use memory::InMemoryStore;
pub use secrets::SeqSecretSource;

pub use crate::auth::MockAuthenticator;
pub use crate::ports::{
    MockApiKeyRepository, MockEventRepository, MockIdempotencyRepository, MockTenantRepository,
};
