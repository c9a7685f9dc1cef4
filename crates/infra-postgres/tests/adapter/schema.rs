//! The database defends itself: what the domain never writes is refused by
//! constraints, not only by the Rust code.

use diesel::result::{DatabaseErrorKind, Error};
use diesel::{sql_query, RunQueryDsl};
use infra_postgres::testing::TestDatabase;

const TENANT: &str = "tnt_01HQ2ZJ8N0000000000000000A";

/// An insert of a valid key with `column` set to the SQL expression `value`.
fn insert_with(column: &str, value: &str) -> String {
    insert_with_all(&[(column, value)])
}

/// An insert of a valid key with each `(column, value)` of `overrides` set.
fn insert_with_all(overrides: &[(&str, &str)]) -> String {
    let mut values = vec![
        ("id", "'key_01HQ2ZJ8N0000000000000000B'".to_owned()),
        ("tenant_id", format!("'{TENANT}'")),
        ("hash", "sha256('x')".to_owned()),
        ("name", "'Backend'".to_owned()),
        ("key_type", "'secret'".to_owned()),
        ("mode", "'live'".to_owned()),
        ("prefix", "'sk_live_abcd'".to_owned()),
        ("last_four", "'wxyz'".to_owned()),
        ("scopes", "ARRAY['users:read', 'users:write']".to_owned()),
        ("created_at", "'2024-01-10T09:00:00Z'".to_owned()),
        ("replaced_by", "NULL".to_owned()),
        ("allowed_ips", "NULL".to_owned()),
        ("allowed_origins", "NULL".to_owned()),
        ("metadata", "'{}'".to_owned()),
    ];
    for (column, value) in overrides {
        for (name, v) in &mut values {
            if name == column {
                *v = (*value).to_owned();
            }
        }
    }
    let (names, values): (Vec<&str>, Vec<String>) = values.into_iter().unzip();
    format!(
        "INSERT INTO api_keys ({}) VALUES ({})",
        names.join(", "),
        values.join(", ")
    )
}

#[test]
fn the_database_refuses_what_the_domain_never_writes() {
    let db = TestDatabase::new();
    let mut conn = super::connect(&db);
    sql_query(format!(
        "INSERT INTO tenants (id, name, created_at) VALUES ('{TENANT}', 'Acme', '2024-01-10T09:00:00Z')"
    ))
    .execute(&mut conn)
    .expect("tenant");

    // The baseline is accepted (and removed again).
    sql_query(insert_with("name", "'Backend'"))
        .execute(&mut conn)
        .expect("a valid key");
    sql_query("DELETE FROM api_keys")
        .execute(&mut conn)
        .expect("delete");

    let refused = [
        ("id", "'key_not-a-ulid'", DatabaseErrorKind::CheckViolation),
        ("hash", "'\\x00'::bytea", DatabaseErrorKind::CheckViolation),
        ("name", "''", DatabaseErrorKind::CheckViolation),
        (
            "name",
            "repeat('n', 101)",
            DatabaseErrorKind::CheckViolation,
        ),
        ("key_type", "'private'", DatabaseErrorKind::CheckViolation),
        ("mode", "'staging'", DatabaseErrorKind::CheckViolation),
        (
            "prefix",
            "'pk_live_abcd'",
            DatabaseErrorKind::CheckViolation,
        ),
        ("prefix", "'sk_live_abc'", DatabaseErrorKind::CheckViolation),
        ("last_four", "'xyz'", DatabaseErrorKind::CheckViolation),
        (
            "scopes",
            "ARRAY[]::text[]",
            DatabaseErrorKind::CheckViolation,
        ),
        (
            "scopes",
            "ARRAY['users:delete']",
            DatabaseErrorKind::CheckViolation,
        ),
        (
            "scopes",
            "ARRAY['*', 'users:read']",
            DatabaseErrorKind::CheckViolation,
        ),
        (
            "scopes",
            "ARRAY[NULL]::text[]",
            DatabaseErrorKind::CheckViolation,
        ),
        (
            "replaced_by",
            "'key_01HQ2ZJ8N0000000000000000C'",
            DatabaseErrorKind::CheckViolation,
        ),
        (
            "tenant_id",
            "'tnt_01HQ2ZJ8N0000000000000000Z'",
            DatabaseErrorKind::ForeignKeyViolation,
        ),
    ];
    for (column, value, kind) in refused {
        match sql_query(insert_with(column, value)).execute(&mut conn) {
            Err(Error::DatabaseError(actual, _)) if actual == kind => {}
            other => panic!("{column} = {value}: expected {kind:?}, got {other:?}"),
        }
    }
}

/// Restrictions and metadata (docs/api.md, "Restricting a key"): the
/// database holds only what the domain's value types accept.
#[test]
fn the_database_refuses_restrictions_and_metadata_the_domain_refuses() {
    let db = TestDatabase::new();
    let mut conn = super::connect(&db);
    sql_query(format!(
        "INSERT INTO tenants (id, name, created_at) VALUES ('{TENANT}', 'Acme', '2024-01-10T09:00:00Z')"
    ))
    .execute(&mut conn)
    .expect("tenant");
    let publishable = [
        ("key_type", "'publishable'"),
        ("prefix", "'pk_live_abcd'"),
        ("scopes", "ARRAY['users:read']"),
    ];
    let with = |more: &[(&'static str, &'static str)]| {
        let mut all = publishable.to_vec();
        all.extend_from_slice(more);
        insert_with_all(&all)
    };

    // Every field at its limits is accepted (and removed again).
    sql_query(with(&[
        (
            "allowed_ips",
            "(SELECT array_agg(format('10.%s.0.0/16', i)::cidr) FROM generate_series(0, 99) i)",
        ),
        (
            "allowed_origins",
            "(SELECT array_agg(format('https://*.a%s.example.com:8443', i)) FROM generate_series(1, 50) i)",
        ),
        (
            "metadata",
            "(SELECT jsonb_object_agg(lpad(i::text, 40, 'k'), repeat('é', 500)) FROM generate_series(1, 20) i)",
        ),
    ]))
    .execute(&mut conn)
    .expect("a key at every limit");
    sql_query("DELETE FROM api_keys")
        .execute(&mut conn)
        .expect("delete");

    let refused: [(&str, &str); 18] = [
        ("allowed_ips", "ARRAY[]::cidr[]"),
        ("allowed_ips", "ARRAY[NULL]::cidr[]"),
        ("allowed_ips", "ARRAY[ARRAY['10.0.0.0/8'::cidr]]"),
        (
            "allowed_ips",
            "(SELECT array_agg(format('10.%s.0.0/16', i)::cidr) FROM generate_series(0, 100) i)",
        ),
        ("allowed_origins", "ARRAY[]::text[]"),
        ("allowed_origins", "ARRAY[NULL]::text[]"),
        ("allowed_origins", "ARRAY['https://App.example.com']"),
        ("allowed_origins", "ARRAY['app.example.com']"),
        ("allowed_origins", "ARRAY['https://app.example.com/']"),
        ("allowed_origins", "ARRAY['https://*.*.example.com']"),
        (
            "allowed_origins",
            "(SELECT array_agg(format('https://a%s.example.com', i)) FROM generate_series(0, 50) i)",
        ),
        ("metadata", "'[]'"),
        ("metadata", "'{\"seats\": 5}'"),
        ("metadata", "'{\"bad key\": \"v\"}'"),
        ("metadata", "'{\"\": \"v\"}'"),
        ("metadata", "jsonb_build_object(repeat('k', 41), 'v')"),
        ("metadata", "jsonb_build_object('plan', repeat('é', 501))"),
        (
            "metadata",
            "(SELECT jsonb_object_agg('k' || i, 'v') FROM generate_series(1, 21) i)",
        ),
    ];
    for (column, value) in refused {
        match sql_query(with(&[(column, value)])).execute(&mut conn) {
            Err(Error::DatabaseError(DatabaseErrorKind::CheckViolation, _)) => {}
            other => panic!("{column} = {value}: expected a check violation, got {other:?}"),
        }
    }
    // Origins are a publishable key's only.
    let secret_with_origins = insert_with("allowed_origins", "ARRAY['https://app.example.com']");
    match sql_query(secret_with_origins).execute(&mut conn) {
        Err(Error::DatabaseError(DatabaseErrorKind::CheckViolation, _)) => {}
        other => panic!("origins on a secret key: expected a check violation, got {other:?}"),
    }
    // `cidr` itself refuses a block that is not its network address, so
    // every stored block is normalized.
    match sql_query(insert_with("allowed_ips", "ARRAY['10.1.2.3/8']::cidr[]")).execute(&mut conn) {
        Err(Error::DatabaseError(_, info)) => {
            assert!(
                info.details().is_some_and(|d| d.contains("bits set")),
                "{}: {:?}",
                info.message(),
                info.details()
            );
        }
        other => panic!("a block with host bits: expected an error, got {other:?}"),
    }
    let count: i64 = {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        sql_query("SELECT count(*) AS n FROM api_keys")
            .get_result::<Count>(&mut conn)
            .expect("count")
            .n
    };
    assert_eq!(count, 0);
}
