//! The domain's repository contract suite, unchanged, against PostgreSQL: each
//! check gets its own fresh database, kept alive for the test and dropped after.

domain::repository_contract_tests!(infra_postgres::testing::TestDatabase::new());
