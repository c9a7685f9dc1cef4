//! Tables in a schema of the embedder's choosing (docs/embedding.md): with
//! the connection URL's `search_path` naming another schema, the migrations
//! create there everything they create in `public` by default (whatever
//! migrations are added later), nothing lands in `public`, and `NOTIFY`
//! still wakes the event feed. The contract suite runs on such a store in
//! `tests/schema_contract.rs`.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use diesel::pg::PgConnection;
use diesel::sql_types::Text;
use diesel::{sql_query, QueryableByName, RunQueryDsl};
use domain::testing::contract::Fixture;
use domain::{KeyChangeListener, KeyId};
use infra_postgres::testing::TestDatabase;
use infra_postgres::{database_url_with_schema, EventFeed, FeedConfig, MigrateError, PgStore};

use crate::connect;

const SCHEMA: &str = "host_apikeys";

#[derive(QueryableByName)]
struct Object {
    #[diesel(sql_type = Text)]
    object: String,
}

/// Every relation (table, index, sequence), function and trigger in
/// `schema`, by kind and name, sorted.
fn objects_in(conn: &mut PgConnection, schema: &str) -> Vec<String> {
    sql_query(
        "SELECT format('relation %s %s', c.relkind, c.relname) AS object
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1
         UNION ALL
         SELECT format('function %s', p.proname)
           FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1
         UNION ALL
         SELECT format('trigger %s on %s', t.tgname, c.relname)
           FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND NOT t.tgisinternal
         ORDER BY 1",
    )
    .bind::<Text, _>(schema)
    .load::<Object>(conn)
    .expect("list the schema's objects")
    .into_iter()
    .map(|o| o.object)
    .collect()
}

#[test]
fn migrations_create_in_the_chosen_schema_what_they_create_in_public_by_default() {
    // Given a database migrated the default way, and one migrated with the
    // URL's search_path naming another schema,
    let default = TestDatabase::new();
    let embedded = TestDatabase::in_schema(SCHEMA);

    // then the other schema holds exactly what `public` holds by default
    // (the migrations' bookkeeping table included),
    let expected = objects_in(&mut connect(&default), "public");
    assert!(
        expected
            .iter()
            .any(|o| o == "relation r __diesel_schema_migrations"),
        "{expected:?}"
    );
    assert!(expected.len() > 10, "{expected:?}");
    let mut conn = connect(&embedded);
    assert_eq!(objects_in(&mut conn, SCHEMA), expected);
    // and `public` holds nothing.
    assert_eq!(objects_in(&mut conn, "public"), Vec::<String>::new());
}

#[test]
fn migrating_without_an_existing_schema_on_the_search_path_fails_and_creates_nothing() {
    let db = TestDatabase::unmigrated();
    let url = database_url_with_schema(db.url(), "no_such_schema");
    let store = PgStore::connect(&url, &infra_postgres::PoolConfig::default()).expect("pool");
    let e = store.migrate().expect_err("no schema to create in");
    assert!(matches!(e, MigrateError::Migration { .. }), "{e:?}");
    assert_eq!(
        objects_in(&mut connect(&db), "public"),
        Vec::<String>::new()
    );
}

/// The feed's reports: changed keys, and how many complete reads.
#[derive(Default)]
struct Reports {
    state: Mutex<(Vec<KeyId>, usize)>,
    changed: Condvar,
}

impl Reports {
    /// Waits (at most 10 s, a bound on a hang, not a timing assertion) until
    /// `done` holds.
    fn wait_until(&self, done: impl Fn(&(Vec<KeyId>, usize)) -> bool) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (state, _) = self
            .changed
            .wait_timeout_while(state, Duration::from_secs(10), |s| !done(s))
            .unwrap_or_else(PoisonError::into_inner);
        done(&state)
    }
}

impl KeyChangeListener for Reports {
    fn key_changed(&self, id: &KeyId) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.0.push(*id);
        self.changed.notify_all();
    }

    fn caught_up(&self, _: std::time::Instant) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.1 += 1;
        self.changed.notify_all();
    }
}

#[test]
fn notify_wakes_the_event_feed_in_the_chosen_schema() {
    // Given a store in another schema and an event feed on its URL that
    // would poll only every ten minutes, once it has read the empty log,
    let db = TestDatabase::in_schema(SCHEMA);
    let reports = Arc::new(Reports::default());
    let config = FeedConfig {
        poll_interval: Duration::from_secs(600),
        ..FeedConfig::default()
    };
    let _feed = EventFeed::spawn(db.url(), config, reports.clone()).expect("feed");
    assert!(
        reports.wait_until(|s| s.1 >= 1),
        "the feed never read the log"
    );

    // when a key is created (its event's trigger sends NOTIFY),
    let f = Fixture::new();
    let tenant = f.stored_tenant(&*db, "Acme");
    let key = f.key(&tenant);
    f.insert(&*db, &key);

    // then the feed is woken and reports it.
    let id = key.key.id;
    assert!(
        reports.wait_until(|s| s.0.contains(&id)),
        "the feed did not report the new key"
    );
}
