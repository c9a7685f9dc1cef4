//! The domain's repository contract suite, unchanged, against PostgreSQL with
//! the tables in a schema of the embedder's choosing instead of `public`
//! (`search_path` set through the connection URL): every query of the
//! adapter finds them there.

domain::repository_contract_tests!(infra_postgres::testing::TestDatabase::in_schema(
    "host_apikeys"
));
