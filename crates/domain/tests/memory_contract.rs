//! The repository contract suite against the in-memory store.

domain::repository_contract_tests!(domain::testing::InMemoryStore::new());
