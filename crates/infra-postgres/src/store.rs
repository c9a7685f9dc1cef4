//! The store: an r2d2 pool of PostgreSQL connections, migrations and pings.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::Pool;
use diesel::result::{ConnectionError, Error as DieselError};
use diesel::Connection;
use diesel::{sql_query, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use domain::RepositoryError;

use crate::errors::{
    is_connection_error, is_permanent_connect_failure, repository_error, ConnectError, Fail,
    MigrateError,
};
use crate::health::Health;
use crate::pool::{connection_url, Generation, Manager, TracingErrorHandler};

/// The migrations of the repository's top-level `migrations/` directory.
pub(crate) const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");

/// Serialises concurrent `migrate` calls (two servers starting at once) with a
/// session advisory lock; any constant works as long as it never changes.
const MIGRATION_LOCK: i64 = 0x0061_7069_6b65_7973; // "apikeys" in ASCII

/// The largest `statement_timeout` PostgreSQL accepts, in milliseconds (a C
/// `int`; about 24 days).
const MAX_STATEMENT_TIMEOUT_MS: u128 = 2_147_483_647;

/// Size and time limits of the connection pool.
///
/// Build it with struct update syntax (`PoolConfig { max_size: 4,
/// ..PoolConfig::default() }`) so that new settings get their defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Most connections open at once.
    pub max_size: u32,
    /// How long a call waits for a connection before it fails as
    /// [`RepositoryError::Unavailable`]. Opening a connection is bounded by
    /// it too, rounded up to whole seconds and at least 2 (libpq's
    /// `connect_timeout`, unless the database URL sets its own).
    pub connection_timeout: Duration,
    /// How long one SQL statement may run, waiting for locks included, before
    /// PostgreSQL cancels it and the call fails as
    /// [`RepositoryError::Unavailable`]. Set once on every new connection
    /// (`SET statement_timeout`); migrations run without it. Millisecond
    /// precision, at most about 24 days.
    pub statement_timeout: Duration,
}

impl Default for PoolConfig {
    /// 10 connections, 5 seconds to get a connection, 5 seconds per statement.
    fn default() -> Self {
        PoolConfig {
            max_size: 10,
            connection_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

/// The pool's connections at one moment (docs/metrics.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Connections open, in use or idle.
    pub connections: u32,
    /// Connections open and waiting in the pool.
    pub idle: u32,
}

impl PoolState {
    /// Connections checked out by a call right now.
    pub fn in_use(&self) -> u32 {
        self.connections.saturating_sub(self.idle)
    }
}

/// The PostgreSQL store of keys and tenants. Clones share one pool.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool<Manager>,
    /// Advanced on every connection-level failure, so that the pool checks
    /// its other connections before reusing them (see [`PgStore::run`]).
    generation: Generation,
    /// [`PoolConfig::connection_timeout`]: also bounds a call's retry.
    connection_timeout: Duration,
    /// [`PoolConfig::statement_timeout`].
    statement_timeout: Duration,
    /// The URL the pool connects with, for connections of their own (the
    /// event feed's).
    url: std::sync::Arc<str>,
    /// Whether the database answers: calls fail at once while it does not.
    health: Health,
}

impl std::fmt::Debug for PgStore {
    // Not the URL: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("connections", &self.pool.state().connections)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Builds the pool without connecting: the database need not be up yet.
    ///
    /// Connections are opened on demand (within libpq's `connect_timeout`,
    /// added to `database_url` unless it has one, see
    /// [`PoolConfig::connection_timeout`]), set their statement timeout once,
    /// and are kept; a checkout runs no test query, and a connection that
    /// failed at the connection level is closed instead of being reused, so
    /// the store recovers by itself once the database returns. Such a
    /// failure also makes the pool check each of its other connections once
    /// (`SELECT 1`) before reusing it, and a call that provably changed
    /// nothing is run again on another connection (docs/ARCHITECTURE.md):
    /// after a restart or failover, at most the first write that meets a dead
    /// connection fails, and reads do not.
    ///
    /// # Errors
    /// [`ConnectError::InvalidConfig`] for a pool size or timeout of zero, or a
    /// statement timeout PostgreSQL cannot take (shorter than a millisecond or
    /// longer than about 24 days).
    pub fn connect(database_url: &str, config: &PoolConfig) -> Result<PgStore, ConnectError> {
        if config.max_size == 0 {
            return Err(ConnectError::InvalidConfig("max_size must be at least 1"));
        }
        if config.connection_timeout.is_zero() {
            return Err(ConnectError::InvalidConfig(
                "connection_timeout must be positive",
            ));
        }
        // 0 would switch the timeout off, not make it immediate.
        let statement_timeout_ms = config.statement_timeout.as_millis();
        if statement_timeout_ms == 0 {
            return Err(ConnectError::InvalidConfig(
                "statement_timeout must be at least 1 millisecond",
            ));
        }
        let statement_timeout_ms = u64::try_from(statement_timeout_ms)
            .ok()
            .filter(|ms| u128::from(*ms) <= MAX_STATEMENT_TIMEOUT_MS)
            .ok_or(ConnectError::InvalidConfig(
                "statement_timeout must be at most 2147483647 milliseconds",
            ))?;
        let url = connection_url(database_url, config.connection_timeout);
        let generation = Generation::default();
        let health = Health::new(config.statement_timeout);
        let pool = Pool::builder()
            .max_size(config.max_size)
            .min_idle(Some(0))
            // `Manager::is_valid` runs a query only on a suspect connection.
            .test_on_check_out(true)
            .connection_timeout(config.connection_timeout)
            .error_handler(Box::new(TracingErrorHandler(health.clone())))
            .build_unchecked(Manager::new(
                &url,
                statement_timeout_ms,
                generation.clone(),
                health.clone(),
            ));
        // Connections opened before an outage may be dead (a restart): each
        // is checked once before its next use.
        let back = generation.clone();
        health.spawn_watchdog(url, move || back.advance());
        Ok(PgStore {
            pool,
            generation,
            connection_timeout: config.connection_timeout,
            statement_timeout: config.statement_timeout,
            url: database_url.into(),
            health,
        })
    }

    /// Opens one connection outside the pool, to tell a database that is
    /// not up yet (the pool then waits for it, up to its timeout) from
    /// settings that can never work, which fail at once.
    ///
    /// # Errors
    /// [`ConnectError::Refused`] with libpq's reason (which never holds the
    /// password) for no such database or role, a failed authentication or
    /// a malformed URL. A database that cannot be reached is not an error
    /// here.
    pub fn check_settings(&self) -> Result<(), ConnectError> {
        match PgConnection::establish(&connection_url(&self.url, self.connection_timeout)) {
            Ok(_) => Ok(()),
            Err(ConnectionError::InvalidConnectionUrl(_)) => Err(ConnectError::Refused(
                "DATABASE_URL is not a valid PostgreSQL URL \
                 (postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE)"
                    .to_owned(),
            )),
            Err(ConnectionError::BadConnection(message))
                if is_permanent_connect_failure(&message) =>
            {
                Err(ConnectError::Refused(message.trim().to_owned()))
            }
            Err(_) => Ok(()),
        }
    }

    /// Applies the pending embedded migrations, returning the versions applied
    /// (oldest first). Concurrent calls, also from other processes, wait for
    /// each other. [`PoolConfig::statement_timeout`] does not apply: a long
    /// migration, or the wait for another process's, is not cut short.
    ///
    /// # Errors
    /// [`MigrateError::Repository`] when the database cannot be reached,
    /// [`MigrateError::Migration`] when a migration fails.
    pub fn migrate(&self) -> Result<Vec<String>, MigrateError> {
        let applied: Vec<String> = self.with_migration_lock("applying migrations", |conn| {
            conn.run_pending_migrations(MIGRATIONS)
                .map(|versions| versions.iter().map(ToString::to_string).collect())
        })?;
        if applied.is_empty() {
            tracing::debug!("the database schema is up to date");
        } else {
            tracing::info!(?applied, "database migrations applied");
        }
        Ok(applied)
    }

    /// Reverts every applied migration, newest first, returning the versions
    /// reverted. For tests of the migrations themselves.
    #[cfg(feature = "test-support")]
    pub(crate) fn revert_all_migrations(&self) -> Result<Vec<String>, MigrateError> {
        self.with_migration_lock("reverting migrations", |conn| {
            conn.revert_all_migrations(MIGRATIONS)
                .map(|versions| versions.iter().map(ToString::to_string).collect())
        })
    }

    fn with_migration_lock<T>(
        &self,
        context: &'static str,
        work: impl FnOnce(&mut PgConnection) -> Result<T, Box<dyn std::error::Error + Send + Sync>>,
    ) -> Result<T, MigrateError> {
        let mut conn = self.checkout(context)?;
        // Switch the statement timeout off for this session before waiting
        // for the lock (two statements, not one query string: before
        // PostgreSQL 13 the timeout armed for a string covered all of it).
        // The connection is discarded afterwards rather than restored, so no
        // pooled connection ever runs without the timeout.
        let lock = conn
            .pg
            .batch_execute("SET statement_timeout = 0")
            .and_then(|()| {
                sql_query("SELECT pg_advisory_lock($1)")
                    .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK)
                    .execute(&mut conn.pg)
            });
        if let Err(e) = lock {
            // Whether or not the `SET` went through, this session is not
            // reused.
            conn.mark_broken();
            return Err(repository_error(context, &e).into());
        }
        let outcome = work(&mut conn.pg);
        // Unlocking explicitly lets a waiting process go on at once; closing
        // the session would release the lock too.
        let unlock = sql_query("SELECT pg_advisory_unlock($1)")
            .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK)
            .execute(&mut conn.pg);
        if let Err(e) = unlock {
            tracing::warn!(context, error = %e, "releasing the migration lock failed");
        }
        // The session has no statement timeout any more: close it rather than
        // return it to the pool. Migrations are rare; a new connection is cheap.
        conn.mark_broken();
        outcome.map_err(|source| match source.downcast_ref::<DieselError>() {
            Some(e) if is_connection_error(e) => repository_error(context, e).into(),
            _ => MigrateError::Migration { source },
        })
    }

    /// The database URL this store was built with (it may hold a password:
    /// never log it).
    pub fn database_url(&self) -> &str {
        &self.url
    }

    /// The longest a caller should wait for one call: the wait for a
    /// connection plus the statement timeout plus 1 s. A database that has
    /// not answered by then is not answering (docs/api.md, "When the
    /// database is down"); the program's HTTP layer answers 503 at this
    /// bound (`RequestLimits::storage_wait`).
    pub fn call_bound(&self) -> Duration {
        self.connection_timeout
            .saturating_add(self.statement_timeout)
            .saturating_add(Duration::from_secs(1))
    }

    /// Whether the store knows the database is not answering now: its calls
    /// then fail at once with [`RepositoryError::Unavailable`], until a probe
    /// of its own gets an answer (several times a second). See
    /// docs/api.md, "When the database is down".
    pub fn database_down(&self) -> bool {
        self.health.is_down()
    }

    /// The pool's connections now: read on scrape, not per request.
    pub fn pool_state(&self) -> PoolState {
        let state = self.pool.state();
        PoolState {
            connections: state.connections,
            idle: state.idle_connections,
        }
    }

    /// One `SELECT 1` through the pool, for readiness checks. A read: when
    /// the pooled connection turns out dead (the database restarted), it is
    /// run again on another one, so a healthy database is not reported down.
    ///
    /// # Errors
    /// [`RepositoryError::Unavailable`] when the database cannot be reached.
    pub fn ping(&self) -> Result<(), RepositoryError> {
        self.run(
            "pinging the database",
            |conn| {
                sql_query("SELECT 1").execute(conn)?;
                Ok(())
            },
            |_| None,
        )
    }

    fn checkout(
        &self,
        context: &'static str,
    ) -> Result<diesel::r2d2::PooledConnection<Manager>, RepositoryError> {
        self.pool
            .get()
            .map_err(|e| RepositoryError::unavailable(context, e))
    }

    /// Runs `op` on a pooled connection.
    ///
    /// A database error becomes what `domain_error` makes of it (a unique
    /// violation into a `Duplicate`, say), or else a [`RepositoryError`]:
    /// `Unavailable` for a connection-level failure or a pool timeout,
    /// `Failure` otherwise.
    ///
    /// # Connection-level failures
    /// The pool tests no connection on checkout in the steady state, so a
    /// connection the server closed (a restart, a failover, an idle-session
    /// timeout) is discovered by the call that uses it. Then:
    ///
    /// 1. the connection is discarded, and the pool's generation advanced:
    ///    every other pooled connection runs one `SELECT 1` on its next
    ///    checkout and is dropped if that fails. A restart kills all the
    ///    connections at once; only the first call to meet one pays.
    /// 2. `op` runs once more, on a connection that is new or has just
    ///    answered, if its first run provably changed nothing (the
    ///    connection's [`CallLog`](crate::pool::CallLog) decides): it failed
    ///    inside a transaction before `COMMIT` was sent (PostgreSQL rolls the
    ///    transaction back), or on a statement that was never sent, or on a
    ///    plain `SELECT` with nothing written before it. Every read is in
    ///    that case, and so are the transactional writes whose `BEGIN` meets
    ///    the dead connection. Not run again: a failure during `COMMIT`, or
    ///    on a write statement outside a transaction (it may have committed
    ///    just before the connection died); the caller gets `Unavailable`.
    ///
    /// The second checkout waits only for what is left of the pool's
    /// `connection_timeout` since the call started, so that a call still
    /// fails within about that time when the database is really down.
    pub(crate) fn run<T, E>(
        &self,
        context: &'static str,
        mut op: impl FnMut(&mut PgConnection) -> Result<T, Fail<E>>,
        domain_error: impl FnOnce(&DieselError) -> Option<E>,
    ) -> Result<T, E>
    where
        E: From<RepositoryError>,
    {
        if self.health.is_down() {
            return Err(RepositoryError::unavailable(
                context,
                format!("the database is not answering ({})", self.health.reason()),
            )
            .into());
        }
        let started = Instant::now();
        let mut conn = self.checkout(context)?;
        let mut retried = false;
        loop {
            conn.start_call();
            let error = match op(&mut conn.pg) {
                Ok(value) => return Ok(value),
                Err(Fail::Domain(e)) => return Err(e),
                Err(Fail::Db(e)) => e,
            };
            if !is_connection_error(&error) {
                return Err(domain_error(&error)
                    .unwrap_or_else(|| repository_error(context, &error).into()));
            }
            let replay = conn.replay();
            conn.mark_broken();
            // Before the connection goes back (and is closed), and so before
            // the retry's checkout.
            self.generation.advance();
            drop(conn);
            let remaining = self
                .connection_timeout
                .checked_sub(started.elapsed())
                .filter(|left| !left.is_zero());
            match (replay, remaining) {
                (Ok(safe), Some(remaining)) if !retried => {
                    tracing::warn!(
                        context,
                        error = %error,
                        safe,
                        "discarding a failed PostgreSQL connection; running the call again"
                    );
                    match self.pool.get_timeout(remaining) {
                        Ok(fresh) => {
                            conn = fresh;
                            retried = true;
                        }
                        Err(e) => {
                            tracing::warn!(context, error = %e, "no connection for the retry");
                            return Err(repository_error(context, &error).into());
                        }
                    }
                }
                (replay, _) => {
                    tracing::warn!(
                        context,
                        error = %error,
                        retried,
                        not_retried = replay.err().unwrap_or("out of time"),
                        "discarding a failed PostgreSQL connection"
                    );
                    return Err(repository_error(context, &error).into());
                }
            }
        }
    }

    /// Ends every other session on this store's database with
    /// `pg_terminate_backend`, as a restart or a failover would, and returns
    /// how many there were. For fault tests: call it on a store other than
    /// the one under test (its own session survives).
    ///
    /// # Errors
    /// [`RepositoryError`] when the database cannot be reached or the role
    /// may not signal the other sessions.
    #[cfg(feature = "test-support")]
    pub fn terminate_other_sessions(&self) -> Result<usize, RepositoryError> {
        // Not through `run`: this `SELECT` is not a read, and must not be
        // run again.
        let context = "terminating sessions";
        let mut conn = self.checkout(context)?;
        sql_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .execute(&mut conn.pg)
        .map_err(|e| {
            conn.mark_broken();
            repository_error(context, &e)
        })
    }
}
