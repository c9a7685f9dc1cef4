//! The database defends itself: what the domain never writes is refused by
//! constraints, not only by the Rust code.

use diesel::result::{DatabaseErrorKind, Error};
use diesel::{sql_query, RunQueryDsl};
use infra_postgres::testing::TestDatabase;

const TENANT: &str = "tnt_01HQ2ZJ8N0000000000000000A";

/// An insert of a valid key with `column` set to the SQL expression `value`.
fn insert_with(column: &str, value: &str) -> String {
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
    ];
    for (name, v) in &mut values {
        if *name == column {
            *v = value.to_owned();
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
