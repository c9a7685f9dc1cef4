//! Every migration goes up, down and up again, and `down` really undoes `up`.

use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{sql_query, QueryableByName, RunQueryDsl};
use infra_postgres::testing::TestDatabase;

#[derive(QueryableByName)]
struct Schema {
    #[diesel(sql_type = Text)]
    schema: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// Tables, columns, constraints and indexes of the public schema, except
/// Diesel's own bookkeeping table.
fn schema(conn: &mut PgConnection) -> String {
    sql_query(
        "SELECT coalesce(string_agg(line, E'\\n' ORDER BY line), '') AS schema FROM (
            SELECT format('column %s.%s %s %s %s %s', table_name, column_name, data_type,
                          is_nullable, collation_name, column_default) AS line
            FROM information_schema.columns
            WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'
          UNION ALL
            SELECT format('index %s', indexdef) FROM pg_indexes
            WHERE schemaname = 'public' AND tablename <> '__diesel_schema_migrations'
          UNION ALL
            SELECT format('constraint %s %s %s', conrelid::regclass, conname,
                          pg_get_constraintdef(oid))
            FROM pg_constraint
            WHERE connamespace = 'public'::regnamespace
              AND conrelid::regclass::text <> '__diesel_schema_migrations'
        ) AS lines",
    )
    .get_result::<Schema>(conn)
    .expect("schema")
    .schema
}

/// Relations, types and functions left in the public schema, except Diesel's
/// bookkeeping table and its index.
fn leftovers(conn: &mut PgConnection) -> i64 {
    sql_query(
        "SELECT (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace
                   AND relname NOT LIKE '\\_\\_diesel\\_schema\\_migrations%')
              + (SELECT count(*) FROM pg_type WHERE typnamespace = 'public'::regnamespace
                   AND typname NOT LIKE '%\\_\\_diesel\\_schema\\_migrations')
              + (SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace)
            AS count",
    )
    .get_result::<Count>(conn)
    .expect("count")
    .count
}

/// The versions of the folders in `migrations/`, in order: `2024-01-10-090000_create_tenants`
/// is `20240110090000`. Read from the folder, so a new migration needs no edit here.
fn migration_versions() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut versions: Vec<String> = std::fs::read_dir(&dir)
        .expect("migrations folder")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter_map(|name| {
            name.split_once('_')
                .map(|(stamp, _)| stamp.replace('-', ""))
        })
        .collect();
    versions.sort();
    versions
}

#[test]
fn migrations_go_up_down_and_up_again() {
    // Given a scratch database
    let db = TestDatabase::unmigrated();
    let mut conn = super::connect(&db);
    assert_eq!(schema(&mut conn), "");

    // When the migrations go up
    let applied = db.migrate().expect("up");
    let versions = migration_versions();
    assert_eq!(applied, versions);
    let migrated = schema(&mut conn);
    assert!(migrated.contains("api_keys_hash_key"), "{migrated}");
    assert!(migrated.contains("key_events_tenant_id_fkey"), "{migrated}");
    assert!(migrated.contains("key_events_xact_id_idx"), "{migrated}");
    assert!(
        migrated.contains("idempotency_records_tenant_id_fkey"),
        "{migrated}"
    );
    assert!(
        db.migrate().expect("up again").is_empty(),
        "nothing pending"
    );

    // Then down removes everything they made
    let mut reverted = db.revert_all_migrations().expect("down");
    reverted.reverse();
    assert_eq!(reverted, versions);
    assert_eq!(schema(&mut conn), "");
    assert_eq!(leftovers(&mut conn), 0);

    // And up again builds the same schema
    assert_eq!(db.migrate().expect("up again"), versions);
    assert_eq!(schema(&mut conn), migrated);
}
