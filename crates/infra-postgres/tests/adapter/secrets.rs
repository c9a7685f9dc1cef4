//! The database never holds a full key: only its HMAC.

use diesel::sql_types::{BigInt, Text};
use diesel::{sql_query, QueryableByName, RunQueryDsl};
use domain::testing::contract::{Fixture, T0};
use domain::testing::SeqSecretSource;
use domain::{
    ApiKey, ApiKeyRepository, HashKey, KeyId, KeyName, KeyType, Mode, NewKey, PlainKey, Scopes,
    Tenant, TenantId, TenantRepository,
};
use infra_postgres::testing::TestDatabase;

#[derive(QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

struct Maker {
    secrets: SeqSecretSource,
    hash_key: HashKey,
    plain: Vec<String>,
}

impl Maker {
    /// A key of `tenant`, remembering its full string.
    fn key(&mut self, tenant: &Tenant, key_type: KeyType, mode: Mode) -> NewKey {
        let secret = PlainKey::generate(key_type, mode, &self.secrets);
        let key = ApiKey {
            id: KeyId::generate(T0, &self.secrets),
            tenant_id: tenant.id,
            name: KeyName::parse("Backend").expect("name"),
            key_type,
            mode,
            prefix: secret.prefix().to_owned(),
            last_four: secret.last_four().to_owned(),
            scopes: Scopes::full(),
            created_at: T0,
            last_used_at: None,
            expires_at: None,
            revokes_at: None,
            replaced_by: None,
            restrictions: Default::default(),
            metadata: Default::default(),
        };
        let new = NewKey {
            hash: self.hash_key.hash(&secret),
            key,
        };
        self.plain.push(secret.into_secret());
        new
    }
}

#[test]
fn no_full_key_is_stored_anywhere() {
    // Given a tenant created with two keys, another key created, and keys rotated
    let db = TestDatabase::new();
    let f = Fixture::new();
    let mut m = Maker {
        secrets: SeqSecretSource::new(7),
        hash_key: HashKey::from_bytes(&[9u8; 32]).expect("hash key"),
        plain: Vec::new(),
    };
    let tenant = Tenant {
        id: TenantId::generate(T0, &m.secrets),
        name: "Acme".to_owned(),
        created_at: T0,
    };
    let live = m.key(&tenant, KeyType::Secret, Mode::Live);
    let test = m.key(&tenant, KeyType::Secret, Mode::Test);
    let events = [
        f.tenant_created_event(&tenant),
        f.created_event(&live.key, T0),
        f.created_event(&test.key, T0),
    ];
    db.create(&tenant, &[live.clone(), test.clone()], &events)
        .expect("tenant");
    let publishable = m.key(&tenant, KeyType::Publishable, Mode::Live);
    f.insert(&*db, &publishable);
    for old in [&live, &publishable] {
        let successor = m.key(&tenant, old.key.key_type, old.key.mode);
        f.rotate(&*db, &old.key, &successor, time::Duration::ZERO, T0)
            .expect("rotate");
    }
    assert_eq!(m.plain.len(), 5);

    // When every column of every table is searched for each full key and for
    // its secret middle (the part neither `prefix` nor `last_four` shows)
    let mut conn = super::connect(&db);
    let tables: Vec<String> = sql_query(
        "SELECT table_name::text AS table_name, ''::text AS column_name
         FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .load::<Column>(&mut conn)
    .expect("tables")
    .into_iter()
    .map(|c| c.table_name)
    .collect();
    assert!(tables.contains(&"api_keys".to_owned()), "{tables:?}");
    let bytea_columns = sql_query(
        "SELECT table_name::text AS table_name, column_name::text AS column_name
         FROM information_schema.columns
         WHERE table_schema = 'public' AND data_type = 'bytea'",
    )
    .load::<Column>(&mut conn)
    .expect("columns");
    assert!(!bytea_columns.is_empty());

    let mut needles = Vec::new();
    for plain in &m.plain {
        needles.push(plain.clone());
        needles.push(plain[12..plain.len() - 4].to_owned());
    }
    for needle in &needles {
        for table in &tables {
            // A row's text form holds every text, array and timestamp column.
            let found = sql_query(format!(
                "SELECT count(*) AS count FROM \"{table}\" AS r WHERE strpos(r::text, $1) > 0"
            ))
            .bind::<Text, _>(needle)
            .get_result::<Count>(&mut conn)
            .expect("search rows");
            assert_eq!(found.count, 0, "a key is stored in {table}");
        }
        for column in &bytea_columns {
            let found = sql_query(format!(
                "SELECT count(*) AS count FROM \"{}\" WHERE position(convert_to($1, 'UTF8') IN \"{}\") > 0",
                column.table_name, column.column_name
            ))
            .bind::<Text, _>(needle)
            .get_result::<Count>(&mut conn)
            .expect("search bytes");
            assert_eq!(
                found.count, 0,
                "a key is stored in {}.{}",
                column.table_name, column.column_name
            );
        }
    }

    // Then nothing is found, yet every key is found by its hash
    assert_eq!(
        db.find_by_hash(&test.hash).expect("find").map(|k| k.id),
        Some(test.key.id)
    );
}
