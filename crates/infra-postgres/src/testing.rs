//! Test support (feature `test-support`): a fresh, migrated database per test.
//!
//! ```no_run
//! use infra_postgres::testing::TestDatabase;
//!
//! let db = TestDatabase::new(); // panics if PostgreSQL is not running
//! db.ping().expect("ping");     // `TestDatabase` derefs to `PgStore`
//! // ... the database is dropped when `db` goes out of scope.
//! ```

use std::ops::Deref;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection, RunQueryDsl};

use crate::admin::{database_url_for, drop_database, ensure_database, EnsureDatabaseError};
use crate::errors::MigrateError;
use crate::store::{PgStore, PoolConfig};

pub use crate::stalling_proxy::StallingProxy;

/// The admin connection used when `DATABASE_URL` is not set.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// How to start the local PostgreSQL, for the panic message.
const HOW_TO_START: &str = "start it with \
     `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`, \
     or point DATABASE_URL at a PostgreSQL admin connection";

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// A database of its own for one test: created with a unique name, migrated,
/// and dropped (with `WITH (FORCE)`, closing its connections) when this value
/// is dropped. Tests using it run in parallel and leave nothing behind.
///
/// It derefs to its [`PgStore`] (a pool of 4 connections), so `&*db` is a
/// store that implements every port (what the repository contract suite
/// takes) while `db` keeps the database alive for the test's duration.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
    store: PgStore,
}

impl TestDatabase {
    /// A fresh database with every migration applied.
    ///
    /// # Panics
    /// When PostgreSQL cannot be reached (the message says how to start it) or
    /// the migrations fail: tests never pass by skipping.
    #[track_caller]
    pub fn new() -> Self {
        let db = Self::unmigrated();
        if let Err(e) = db.store.migrate() {
            panic!(
                "migrating the test database {}: {}",
                db.name,
                error_chain(&e)
            );
        }
        db
    }

    /// A fresh database whose connections use `schema` alone (created here)
    /// as their `search_path`, through the URL
    /// ([`database_url_with_schema`](crate::database_url_with_schema)), with
    /// every migration applied: the tables live in `schema`, and `public`
    /// stays empty.
    ///
    /// # Panics
    /// As [`TestDatabase::new`], and when the schema cannot be created.
    #[track_caller]
    pub fn in_schema(schema: &str) -> Self {
        let mut db = Self::unmigrated();
        let create = |url: &str| -> Result<(), Box<dyn std::error::Error>> {
            let mut conn = PgConnection::establish(url)?;
            conn.batch_execute(&format!("CREATE SCHEMA \"{schema}\""))?;
            Ok(())
        };
        if let Err(e) = create(&db.url) {
            panic!("creating schema {schema} in {}: {e}", db.name);
        }
        db.url = crate::database_url_with_schema(&db.url, schema);
        db.store = Self::pool(&db.url);
        if let Err(e) = db.store.migrate() {
            panic!(
                "migrating the test database {} in schema {schema}: {}",
                db.name,
                error_chain(&e)
            );
        }
        db
    }

    /// A fresh, empty database: no migrations applied.
    ///
    /// # Panics
    /// As [`TestDatabase::new`].
    #[track_caller]
    pub fn unmigrated() -> Self {
        let admin_url = Self::admin_url();
        let name = unique_name();
        match ensure_database(&admin_url, &name) {
            Ok(_) => {}
            Err(e @ EnsureDatabaseError::Unavailable { .. }) => panic!(
                "cannot reach PostgreSQL at {}: {}\n{HOW_TO_START}",
                redact(&admin_url),
                error_chain(&e)
            ),
            Err(e) => panic!("creating the test database {name}: {}", error_chain(&e)),
        }
        let url = database_url_for(&admin_url, &name);
        let store = Self::pool(&url);
        TestDatabase {
            admin_url,
            name,
            url,
            store,
        }
    }

    /// A pool of 4 connections to `url`.
    #[track_caller]
    fn pool(url: &str) -> PgStore {
        let config = PoolConfig {
            max_size: 4,
            connection_timeout: Duration::from_secs(5),
            ..PoolConfig::default()
        };
        match PgStore::connect(url, &config) {
            Ok(store) => store,
            Err(e) => panic!("building the test pool: {e}"),
        }
    }

    /// The admin connection: `DATABASE_URL`, or [`DEFAULT_ADMIN_URL`].
    pub fn admin_url() -> String {
        std::env::var("DATABASE_URL")
            .ok()
            .filter(|url| !url.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned())
    }

    /// The database's URL, for another pool or another program.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store (a clone sharing the pool).
    pub fn store(&self) -> PgStore {
        self.store.clone()
    }

    /// Reverts every applied migration, newest first, returning the versions
    /// reverted.
    ///
    /// # Errors
    /// [`MigrateError`].
    pub fn revert_all_migrations(&self) -> Result<Vec<String>, MigrateError> {
        self.store.revert_all_migrations()
    }

    /// Runs `sql` (statements separated by `;`) on a connection of its own:
    /// set-up that no API makes quickly, such as thousands of rows.
    ///
    /// # Panics
    /// When the database cannot be reached or `sql` fails: test set-up.
    #[track_caller]
    pub fn batch_execute(&self, sql: &str) {
        let outcome = PgConnection::establish(&self.url)
            .map_err(|e| e.to_string())
            .and_then(|mut conn| conn.batch_execute(sql).map_err(|e| e.to_string()));
        if let Err(e) = outcome {
            panic!("running test set-up SQL: {e}");
        }
    }

    /// Locks `table` (`ACCESS EXCLUSIVE`: readers wait too) in a transaction
    /// of its own connection, held until the returned value is dropped: a
    /// call that touches the table waits meanwhile.
    ///
    /// # Panics
    /// When the database cannot be reached: test set-up.
    #[track_caller]
    pub fn lock_table(&self, table: &str) -> HeldLock {
        let mut conn = match PgConnection::establish(&self.url) {
            Ok(conn) => conn,
            Err(e) => panic!("connecting to lock {table}: {e}"),
        };
        if let Err(e) = conn.batch_execute(&format!(
            "BEGIN; LOCK TABLE \"{}\" IN ACCESS EXCLUSIVE MODE",
            table.replace('"', "\"\"")
        )) {
            panic!("locking {table}: {e}");
        }
        HeldLock { conn }
    }

    /// How many sessions of this database wait for a lock now.
    ///
    /// # Panics
    /// When the database cannot be reached: test set-up.
    #[track_caller]
    pub fn sessions_waiting_for_locks(&self) -> i64 {
        self.count(
            "SELECT count(*) AS n FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()
               AND wait_event_type = 'Lock'",
        )
    }

    /// The one `bigint` column `n` of the one row `sql` answers, on a
    /// connection of its own.
    ///
    /// # Panics
    /// When the database cannot be reached or `sql` fails: test set-up.
    #[track_caller]
    pub fn count(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let count = PgConnection::establish(&self.url)
            .map_err(|e| e.to_string())
            .and_then(|mut conn| {
                diesel::sql_query(sql)
                    .get_result::<Count>(&mut conn)
                    .map_err(|e| e.to_string())
            });
        match count {
            Ok(count) => count.n,
            Err(e) => panic!("counting with {sql:?}: {e}"),
        }
    }
}

/// A table lock held by [`TestDatabase::lock_table`] until dropped.
pub struct HeldLock {
    conn: PgConnection,
}

impl std::fmt::Debug for HeldLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldLock")
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        // Ending the session would release it too; a failed rollback only
        // means the lock is already gone.
        let _ = self.conn.batch_execute("ROLLBACK");
    }
}

impl Default for TestDatabase {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for TestDatabase {
    type Target = PgStore;

    fn deref(&self) -> &PgStore {
        &self.store
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Never panic here: a panic while a failed test unwinds would abort.
        if let Err(e) = drop_database(&self.admin_url, &self.name) {
            eprintln!(
                "warning: could not drop test database {}: {}",
                self.name,
                error_chain(&e)
            );
        }
    }
}

/// `apikeys_test_<pid>_<sequence>_<nanoseconds>`: unique across the threads
/// of one run, concurrent runs, and runs that reuse a process id.
fn unique_name() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "apikeys_test_{}_{}_{nanos}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
}

/// The URL without its password.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|at| at + 3) else {
        return url.to_owned();
    };
    let rest = url.get(scheme_end..).unwrap_or_default();
    let authority = rest.split('/').next().unwrap_or_default();
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            url.get(..scheme_end).unwrap_or_default(),
            authority.get(..colon).unwrap_or_default(),
            rest.get(at..).unwrap_or_default()
        ),
        _ => url.to_owned(),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact(DEFAULT_ADMIN_URL), DEFAULT_ADMIN_URL);
        assert_eq!(redact("host=/tmp dbname=x"), "host=/tmp dbname=x");
    }

    #[test]
    fn names_are_unique() {
        assert_ne!(unique_name(), unique_name());
    }
}
