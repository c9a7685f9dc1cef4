//! The repository contract suite against the in-memory store.

domain::repository_contract_tests!(Box::new(domain::testing::InMemoryStore::new()));
