//! The r2d2 connection manager: Diesel's, plus time limits on every new
//! connection, discarding connections that failed at the connection level,
//! and checking the other connections once after such a failure.
//!
//! Diesel's manager only counts a connection as broken when its transaction
//! manager is; a connection the server closed between two queries looks
//! healthy and would fail once more for every checkout. Testing every checkout
//! with `SELECT 1` would cost a round trip per query, so the pool does it only
//! when there is a reason to:
//!
//! - a connection on which a query failed at the connection level is marked
//!   broken, and the pool drops it when it comes back;
//! - that failure also advances the pool's [`Generation`]: every connection
//!   last known alive in an older generation (all the others, idle or busy)
//!   is *suspect*, and runs one `SELECT 1` on its next checkout; if that
//!   fails it is dropped and the checkout takes another one (or opens a new
//!   one), all within the pool's `connection_timeout`.
//!
//! A database restart or failover kills every pooled connection at once; the
//! first call to meet a dead one reveals it, and the other dead connections
//! are weeded out on checkout instead of failing one call each. In the steady
//! state (no connection-level failure since a connection was opened or last
//! checked) a checkout compares two integers and runs no query.
//!
//! Each connection also carries a [`CallLog`] (a Diesel instrumentation) that
//! records what the statements of the current call may have done, so that
//! [`PgStore::run`](crate::PgStore) can tell whether a call that failed at the
//! connection level may be run again on another connection.
//!
//! The pool's `connection_timeout` only bounds the wait for a connection. So
//! that a fault never hangs a thread for longer, every connection is opened
//! with libpq's `connect_timeout` (a host that drops packets would otherwise
//! hold an r2d2 thread until the operating system gives up on TCP) and runs
//! `SET statement_timeout` once, when it is opened (a query stuck behind a
//! lock or on an overloaded server is cancelled by the server).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::{Connection, Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Error as ManagerError, ManageConnection, R2D2Connection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::admin::url_scheme_len;
use crate::errors::is_connection_error;
use crate::health::{Health, StatementWatch};

/// The pool's count of connection-level failures. A connection last known
/// alive in an older generation is checked (`SELECT 1`) before its next use.
/// Clones share the count.
#[derive(Debug, Clone, Default)]
pub(crate) struct Generation(Arc<AtomicU64>);

impl Generation {
    fn current(&self) -> u64 {
        // SeqCst for simplicity: one load per checkout, no measurable cost.
        self.0.load(Ordering::SeqCst)
    }

    /// Makes every connection opened or checked before now suspect. Called
    /// after a connection-level failure, before the failed connection goes
    /// back to the pool (and so before any retry's checkout).
    pub(crate) fn advance(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A pooled PostgreSQL connection and whether it failed at the connection level.
pub(crate) struct PgConn {
    pub(crate) pg: PgConnection,
    broken: bool,
    /// The [`Generation`] in which this connection was last known alive
    /// (opened, or answered a check).
    alive_in: u64,
}

impl PgConn {
    /// Makes the pool close this connection instead of reusing it.
    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }

    /// Starts a new [`CallLog`]: what the statements run from now on may do.
    pub(crate) fn start_call(&mut self) {
        if let Some(log) = self.call_log() {
            *log = CallLog {
                watch: log.watch.take(),
                ..CallLog::default()
            };
        }
    }

    /// Whether the call since [`PgConn::start_call`], which failed at the
    /// connection level, may be run again on another connection: `Ok` with
    /// why it is safe, or `Err` with why not.
    pub(crate) fn replay(&mut self) -> Result<&'static str, &'static str> {
        self.call_log()
            .and_then(|log| log.first_failure)
            .unwrap_or(Err("no statement was seen failing at the connection level"))
    }

    fn call_log(&mut self) -> Option<&mut CallLog> {
        self.pg.instrumentation().downcast_mut::<CallLog>()
    }
}

/// What the statements of one call on a connection may have done, recorded
/// from Diesel's instrumentation events. Nothing is formatted or allocated
/// on the happy path; the failing statement's SQL is looked at only when it
/// failed at the connection level.
///
/// A call may be run again after a connection-level failure only when none of
/// its statements can have taken effect:
///
/// - every statement before the failing one ran inside a transaction that
///   never sent `COMMIT` (PostgreSQL rolls back the open transaction of a
///   connection that dies), or there was none; and
/// - the failing statement ran inside such a transaction (`BEGIN` itself
///   included), or was never sent (`UnableToSendCommand`), or is a plain
///   `SELECT` outside a transaction (a read changes nothing).
///
/// A failure *during* `COMMIT` is ambiguous (the server may have committed
/// before the connection died), and so is a write statement outside a
/// transaction (autocommit): neither is run again.
#[derive(Debug, Default)]
pub(crate) struct CallLog {
    /// Open transaction depth, announced before `BEGIN` is sent.
    depth: u32,
    /// A `COMMIT` (or `ROLLBACK`) of the given depth was announced and its
    /// statement has not finished yet.
    closing: Option<Closing>,
    /// A statement outside any transaction has started: another one after it
    /// means that one may have taken effect.
    autocommit_started: bool,
    /// Something of this call may already be committed.
    may_have_written: bool,
    /// The verdict at the first connection-level failure (see
    /// [`PgConn::replay`]).
    first_failure: Option<Result<&'static str, &'static str>>,
    /// Where the store's watchdog sees how long the current statement has
    /// run (none on a connection outside a store).
    watch: Option<StatementWatch>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Commit(NonZeroU32),
    Rollback(NonZeroU32),
}

impl CallLog {
    fn started(&mut self) {
        if let Some(watch) = &self.watch {
            watch.started();
        }
        if self.autocommit_started {
            self.may_have_written = true;
        }
        if self.depth == 0 {
            self.autocommit_started = true;
        }
    }

    fn finished(&mut self, query: &dyn std::fmt::Display, error: Option<&DieselError>) {
        if let Some(watch) = &self.watch {
            watch.finished();
        }
        if let Some(error) = error.filter(|e| is_connection_error(e)) {
            if self.first_failure.is_none() {
                self.first_failure = Some(self.verdict(query, error));
            }
        }
        match self.closing.take() {
            Some(Closing::Commit(depth)) => {
                self.depth = depth.get() - 1;
                if depth.get() == 1 && error.is_none() {
                    self.may_have_written = true;
                }
            }
            Some(Closing::Rollback(depth)) => self.depth = depth.get() - 1,
            None => {}
        }
    }

    fn verdict(
        &self,
        query: &dyn std::fmt::Display,
        error: &DieselError,
    ) -> Result<&'static str, &'static str> {
        if self.may_have_written {
            Err("an earlier statement of the call may have taken effect")
        } else if matches!(self.closing, Some(Closing::Commit(depth)) if depth.get() == 1) {
            Err("the connection failed during COMMIT: the transaction may have committed")
        } else if self.depth > 0 {
            Ok("the transaction was not committed")
        } else if matches!(
            error,
            DieselError::DatabaseError(DatabaseErrorKind::UnableToSendCommand, _)
        ) {
            Ok("the statement was not sent")
        } else if is_plain_select(query) {
            Ok("the statement was a read")
        } else {
            Err("a statement outside a transaction may have taken effect")
        }
    }
}

/// Whether the statement is a plain `SELECT`: the crate writes with `INSERT`,
/// `UPDATE` or `WITH …`, and never calls a function with side effects from a
/// `SELECT` run through the store. (Diesel's rendering of a query starts with
/// its SQL; should that change, reads are merely not run again.)
fn is_plain_select(query: &dyn std::fmt::Display) -> bool {
    let sql = query.to_string();
    sql.trim_start()
        .get(..7)
        .is_some_and(|head| head.eq_ignore_ascii_case("SELECT "))
}

impl Instrumentation for CallLog {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            // Announced before `BEGIN` (or `SAVEPOINT`) is sent.
            InstrumentationEvent::BeginTransaction { depth, .. } => self.depth = depth.get(),
            // Announced before `COMMIT` (or `RELEASE SAVEPOINT`) is sent.
            InstrumentationEvent::CommitTransaction { depth, .. } => {
                self.closing = Some(Closing::Commit(depth));
            }
            InstrumentationEvent::RollbackTransaction { depth, .. } => {
                self.closing = Some(Closing::Rollback(depth));
            }
            InstrumentationEvent::StartQuery { .. } => self.started(),
            InstrumentationEvent::FinishQuery { query, error, .. } => self.finished(query, error),
            _ => {}
        }
    }
}

/// Diesel's connection manager, setting the statement timeout of each new
/// connection, reporting [`PgConn::mark_broken`] connections as broken, and
/// checking suspect connections (see [`Generation`]) on checkout.
#[derive(Debug)]
pub(crate) struct Manager {
    inner: ConnectionManager<PgConnection>,
    /// `SET statement_timeout = <ms>`, run once per new connection.
    set_statement_timeout: String,
    generation: Generation,
    health: Health,
}

impl Manager {
    /// Connects to `database_url` (which should carry a `connect_timeout`, see
    /// [`with_connect_timeout`]); every connection cancels statements that
    /// run longer than `statement_timeout_ms` milliseconds.
    pub(crate) fn new(
        database_url: &str,
        statement_timeout_ms: u64,
        generation: Generation,
        health: Health,
    ) -> Self {
        Manager {
            inner: ConnectionManager::new(database_url),
            set_statement_timeout: format!("SET statement_timeout = {statement_timeout_ms}"),
            generation,
            health,
        }
    }
}

impl ManageConnection for Manager {
    type Connection = PgConn;
    type Error = ManagerError;

    fn connect(&self) -> Result<PgConn, ManagerError> {
        // Read before connecting: a failure elsewhere while this connection
        // is being opened makes it suspect, which costs one check at worst.
        let alive_in = self.generation.current();
        let mut pg = self.inner.connect()?;
        // Once per connection rather than per checkout: a session setting
        // outlives transactions, and nothing in the store changes it except
        // the migrations, whose connection is discarded afterwards.
        pg.batch_execute(&self.set_statement_timeout)
            .map_err(ManagerError::QueryError)?;
        pg.set_instrumentation(CallLog {
            watch: Some(self.health.watch()),
            ..CallLog::default()
        });
        Ok(PgConn {
            pg,
            broken: false,
            alive_in,
        })
    }

    /// Called on every checkout (`test_on_check_out`): free unless the pool
    /// saw a connection-level failure since this connection was last known
    /// alive, and then one `SELECT 1`.
    fn is_valid(&self, conn: &mut PgConn) -> Result<(), ManagerError> {
        let current = self.generation.current();
        if conn.alive_in >= current {
            return Ok(());
        }
        match conn.pg.ping() {
            Ok(_) => {
                conn.alive_in = current;
                Ok(())
            }
            Err(e) => {
                conn.mark_broken();
                Err(ManagerError::QueryError(e))
            }
        }
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.broken || self.inner.has_broken(&mut conn.pg)
    }
}

/// Logs connection failures of the pool through `tracing` (r2d2's default
/// handler uses the `log` crate). A connection that cannot be opened marks
/// the database down ([`Health`]).
#[derive(Debug, Clone)]
pub(crate) struct TracingErrorHandler(pub(crate) Health);

impl diesel::r2d2::HandleError<ManagerError> for TracingErrorHandler {
    fn handle_error(&self, error: ManagerError) {
        match error {
            ManagerError::ConnectionError(error) => {
                tracing::warn!(error = %error, "cannot open a PostgreSQL connection");
                self.0.mark_down("a connection could not be opened");
            }
            // A new connection's `SET statement_timeout`, or the check of a
            // suspect connection, failed: the connection is dropped.
            ManagerError::QueryError(error) => {
                tracing::warn!(error = %error, "dropping a PostgreSQL connection that failed its check");
            }
        }
    }
}

/// libpq's smallest `connect_timeout`: 1 would be taken as 2 anyway.
const MIN_CONNECT_TIMEOUT_SECS: u64 = 2;

/// The largest `connect_timeout` libpq accepts (a C `int`).
const MAX_CONNECT_TIMEOUT_SECS: u64 = 2_147_483_647;

/// `database_url` with libpq's `connect_timeout` set to `timeout` in whole
/// seconds, rounded up and at least 2, unless the URL already sets one (the
/// URL's own value wins, and so does it over `PGCONNECT_TIMEOUT`).
pub(crate) fn with_connect_timeout(database_url: &str, timeout: Duration) -> String {
    let rounded_up = timeout
        .as_secs()
        .saturating_add(u64::from(timeout.subsec_nanos() > 0));
    let seconds = rounded_up.clamp(MIN_CONNECT_TIMEOUT_SECS, MAX_CONNECT_TIMEOUT_SECS);
    with_param(database_url, "connect_timeout", &seconds.to_string())
}

/// libpq's TCP settings that make a connection notice a peer that stopped
/// answering (a dropped network, a crashed host) within about 4 seconds of
/// silence, instead of the operating system's two hours (keepalives) or
/// fifteen minutes (unacknowledged data): probes after 1 s idle, one a
/// second, dead after 3 unanswered; data unacknowledged for 4 s ends the
/// connection (`tcp_user_timeout`, Linux). A server whose kernel still
/// answers but whose processes are stopped is not caught by these: the
/// store's watchdog is ([`crate::health`]). Each is added unless the URL sets
/// it.
pub(crate) const TCP_LIVENESS: [(&str, &str); 5] = [
    ("keepalives", "1"),
    ("keepalives_idle", "1"),
    ("keepalives_interval", "1"),
    ("keepalives_count", "3"),
    ("tcp_user_timeout", "4000"),
];

/// `database_url` with `key=value` added unless the URL already sets `key`.
///
/// Handles both forms libpq accepts: a `postgres://` or `postgresql://` URL
/// gets a query parameter, a `key=value` connection string one more pair.
pub(crate) fn with_param(database_url: &str, key: &str, value: &str) -> String {
    if url_scheme_len(database_url).is_some() {
        let Some((_, query)) = database_url.split_once('?') else {
            return format!("{database_url}?{key}={value}");
        };
        let already_set = query
            .split('&')
            .any(|pair| pair.split('=').next() == Some(key));
        if already_set {
            database_url.to_owned()
        } else if query.is_empty() || query.ends_with('&') {
            format!("{database_url}{key}={value}")
        } else {
            format!("{database_url}&{key}={value}")
        }
    } else if conninfo_keywords(database_url).any(|k| k == key) {
        database_url.to_owned()
    } else if database_url.trim().is_empty() {
        format!("{key}={value}")
    } else {
        format!("{database_url} {key}={value}")
    }
}

/// `database_url` with `sslmode=disable` when it is a `postgres://` URL to a
/// loopback host (`localhost`, `127.x.x.x`, `[::1]`) that sets no `sslmode`
/// and `PGSSLMODE` is unset. libpq's default (`prefer`) would wrap every
/// query to a server on the same machine in TLS, which protects nothing
/// there and cost a quarter of the authenticated read rate
/// (docs/performance.md). An explicit `sslmode` (or `PGSSLMODE`) wins.
pub(crate) fn without_loopback_tls(database_url: &str, pgsslmode_set: bool) -> String {
    let Some(scheme_len) = url_scheme_len(database_url) else {
        return database_url.to_owned();
    };
    let (base, query) = match database_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (database_url, None),
    };
    let sets_sslmode = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair.split('=').next() == Some("sslmode"))
    });
    if pgsslmode_set || sets_sslmode {
        return database_url.to_owned();
    }
    let authority = base[scheme_len..].split('/').next().unwrap_or("");
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return database_url.to_owned();
    }
    match query {
        None => format!("{database_url}?sslmode=disable"),
        Some(q) if q.is_empty() || q.ends_with('&') => format!("{database_url}sslmode=disable"),
        Some(_) => format!("{database_url}&sslmode=disable"),
    }
}

/// The URL every connection of this crate opens: [`without_loopback_tls`],
/// then [`with_connect_timeout`] and [`TCP_LIVENESS`].
pub(crate) fn connection_url(database_url: &str, timeout: Duration) -> String {
    let pgsslmode_set = std::env::var_os("PGSSLMODE").is_some();
    let url = with_connect_timeout(&without_loopback_tls(database_url, pgsslmode_set), timeout);
    TCP_LIVENESS
        .iter()
        .fold(url, |url, (key, value)| with_param(&url, key, value))
}

/// The keywords of a `key=value` connection string, parsed as libpq does:
/// spaces around `=` allowed, values optionally in single quotes, `\`
/// escaping the next character. Stops at the first malformed pair (libpq
/// will refuse the string anyway).
fn conninfo_keywords(conninfo: &str) -> impl Iterator<Item = String> + '_ {
    let mut chars = conninfo.chars().peekable();
    std::iter::from_fn(move || {
        let skip_spaces = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            while chars.next_if(char::is_ascii_whitespace).is_some() {}
        };
        skip_spaces(&mut chars);
        let mut keyword = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_ascii_whitespace()) {
            keyword.push(c);
        }
        skip_spaces(&mut chars);
        chars.next_if_eq(&'=')?;
        skip_spaces(&mut chars);
        let quoted = chars.next_if_eq(&'\'').is_some();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '\'' if quoted => break,
                c if !quoted && c.is_ascii_whitespace() => break,
                _ => {}
            }
        }
        Some(keyword)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_without_sslmode_skip_tls_and_others_are_untouched() {
        let cases = [
            (
                "postgres://postgres@127.0.0.1:5432/db",
                "postgres://postgres@127.0.0.1:5432/db?sslmode=disable",
            ),
            (
                "postgres://localhost/db?x=1",
                "postgres://localhost/db?x=1&sslmode=disable",
            ),
            (
                "postgresql://u:p@[::1]:5433/db?",
                "postgresql://u:p@[::1]:5433/db?sslmode=disable",
            ),
            (
                "postgres://127.8.9.1/db",
                "postgres://127.8.9.1/db?sslmode=disable",
            ),
            (
                "postgres://127.0.0.1/db?sslmode=require",
                "postgres://127.0.0.1/db?sslmode=require",
            ),
            ("postgres://db.internal/db", "postgres://db.internal/db"),
            ("postgres://10.0.0.5/db", "postgres://10.0.0.5/db"),
            (
                "host=127.0.0.1 user=postgres",
                "host=127.0.0.1 user=postgres",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(without_loopback_tls(url, false), expected, "{url}");
        }
        assert_eq!(
            without_loopback_tls("postgres://127.0.0.1/db", true),
            "postgres://127.0.0.1/db",
            "PGSSLMODE wins"
        );
    }

    /// The events of one statement: start, then finish with `error`.
    fn statement(log: &mut CallLog, sql: &str, error: Option<DatabaseErrorKind>) {
        log.started();
        let error = error.map(|kind| DieselError::DatabaseError(kind, Box::new(String::new())));
        log.finished(&sql, error.as_ref());
    }

    const CLOSED: Option<DatabaseErrorKind> = Some(DatabaseErrorKind::ClosedConnection);
    const ONE: NonZeroU32 = NonZeroU32::MIN;

    fn begin(log: &mut CallLog, error: Option<DatabaseErrorKind>) {
        log.depth = 1;
        statement(log, "BEGIN", error);
    }

    fn commit(log: &mut CallLog, error: Option<DatabaseErrorKind>) {
        log.closing = Some(Closing::Commit(ONE));
        statement(log, "COMMIT", error);
    }

    #[test]
    fn a_read_that_failed_first_may_run_again() {
        let mut log = CallLog::default();
        statement(
            &mut log,
            "SELECT \"api_keys\".\"id\" FROM \"api_keys\" -- binds: []",
            CLOSED,
        );
        assert!(log.first_failure.is_some_and(|v| v.is_ok()), "{log:?}");
        let mut log = CallLog::default();
        statement(&mut log, "  select 1", CLOSED);
        assert!(log.first_failure.is_some_and(|v| v.is_ok()), "{log:?}");
    }

    #[test]
    fn a_write_outside_a_transaction_that_failed_may_not_run_again() {
        for sql in [
            "WITH locked AS (SELECT 1) UPDATE t SET a = 1",
            "UPDATE t SET a = 1",
            "SELECTED",
        ] {
            let mut log = CallLog::default();
            statement(&mut log, sql, CLOSED);
            assert!(
                log.first_failure.is_some_and(|v| v.is_err()),
                "{sql}: {log:?}"
            );
        }
    }

    #[test]
    fn a_statement_that_was_not_sent_may_run_again() {
        let mut log = CallLog::default();
        statement(
            &mut log,
            "UPDATE t SET a = 1",
            Some(DatabaseErrorKind::UnableToSendCommand),
        );
        assert!(log.first_failure.is_some_and(|v| v.is_ok()), "{log:?}");
    }

    #[test]
    fn nothing_may_run_again_after_a_statement_outside_a_transaction() {
        // A write that went through, then a read that failed.
        let mut log = CallLog::default();
        statement(&mut log, "UPDATE t SET a = 1", None);
        statement(&mut log, "SELECT 1", CLOSED);
        assert!(log.first_failure.is_some_and(|v| v.is_err()), "{log:?}");
        // Even when the first statement's end was not reported.
        let mut log = CallLog::default();
        log.started();
        statement(
            &mut log,
            "SELECT 1",
            Some(DatabaseErrorKind::UnableToSendCommand),
        );
        assert!(log.first_failure.is_some_and(|v| v.is_err()), "{log:?}");
    }

    #[test]
    fn a_transaction_that_failed_before_commit_may_run_again() {
        // At BEGIN.
        let mut log = CallLog::default();
        begin(&mut log, CLOSED);
        assert!(log.first_failure.is_some_and(|v| v.is_ok()), "{log:?}");
        // At a write inside it, whatever the rollback does next.
        let mut log = CallLog::default();
        begin(&mut log, None);
        statement(&mut log, "SELECT id FROM tenants FOR NO KEY UPDATE", None);
        statement(
            &mut log,
            "WITH locked AS (SELECT 1) INSERT INTO t VALUES (1)",
            CLOSED,
        );
        log.closing = Some(Closing::Rollback(ONE));
        statement(&mut log, "ROLLBACK", CLOSED);
        assert!(log.first_failure.is_some_and(|v| v.is_ok()), "{log:?}");
        assert_eq!(log.depth, 0);
    }

    #[test]
    fn a_failure_during_commit_may_not_run_again() {
        let mut log = CallLog::default();
        begin(&mut log, None);
        statement(&mut log, "INSERT INTO t VALUES (1)", None);
        commit(&mut log, CLOSED);
        assert!(log.first_failure.is_some_and(|v| v.is_err()), "{log:?}");
    }

    #[test]
    fn releasing_a_savepoint_is_not_a_commit() {
        let mut log = CallLog::default();
        begin(&mut log, None);
        log.depth = 2;
        statement(&mut log, "SAVEPOINT diesel_savepoint_1", None);
        log.closing = NonZeroU32::new(2).map(Closing::Commit);
        statement(&mut log, "RELEASE SAVEPOINT diesel_savepoint_1", CLOSED);
        assert!(log.first_failure.is_some_and(|v| v.is_ok()), "{log:?}");
    }

    #[test]
    fn nothing_may_run_again_after_a_commit() {
        let mut log = CallLog::default();
        begin(&mut log, None);
        statement(&mut log, "INSERT INTO t VALUES (1)", None);
        commit(&mut log, None);
        assert_eq!(log.depth, 0);
        begin(&mut log, CLOSED);
        assert!(log.first_failure.is_some_and(|v| v.is_err()), "{log:?}");
    }

    #[test]
    fn only_the_first_failure_counts() {
        let mut log = CallLog::default();
        statement(&mut log, "UPDATE t SET a = 1", CLOSED);
        statement(&mut log, "SELECT 1", CLOSED);
        assert!(log.first_failure.is_some_and(|v| v.is_err()), "{log:?}");
    }

    #[test]
    fn other_errors_are_no_connection_failure() {
        let mut log = CallLog::default();
        statement(
            &mut log,
            "SELECT 1",
            Some(DatabaseErrorKind::UniqueViolation),
        );
        assert!(log.first_failure.is_none(), "{log:?}");
    }

    const FIVE: Duration = Duration::from_secs(5);

    #[test]
    fn connect_timeout_is_added_to_a_url_without_a_query() {
        assert_eq!(
            with_connect_timeout("postgres://app@db:5432/apikeys", FIVE),
            "postgres://app@db:5432/apikeys?connect_timeout=5"
        );
        assert_eq!(
            with_connect_timeout("postgresql://db", FIVE),
            "postgresql://db?connect_timeout=5"
        );
    }

    #[test]
    fn connect_timeout_is_appended_to_a_url_query() {
        assert_eq!(
            with_connect_timeout("postgres://db/apikeys?sslmode=require", FIVE),
            "postgres://db/apikeys?sslmode=require&connect_timeout=5"
        );
        assert_eq!(
            with_connect_timeout("postgres://db/apikeys?", FIVE),
            "postgres://db/apikeys?connect_timeout=5"
        );
        assert_eq!(
            with_connect_timeout("postgres://db/apikeys?sslmode=require&", FIVE),
            "postgres://db/apikeys?sslmode=require&connect_timeout=5"
        );
    }

    #[test]
    fn a_connect_timeout_already_in_the_url_is_kept() {
        for url in [
            "postgres://db/apikeys?connect_timeout=30",
            "postgres://db/apikeys?sslmode=require&connect_timeout=0",
            "host=db connect_timeout=30",
            "host=db connect_timeout = 30 dbname=apikeys",
            "connect_timeout='30'",
        ] {
            assert_eq!(with_connect_timeout(url, FIVE), url);
        }
    }

    #[test]
    fn connect_timeout_is_appended_to_a_keyword_string() {
        assert_eq!(
            with_connect_timeout("host=/run/postgresql user=postgres", FIVE),
            "host=/run/postgresql user=postgres connect_timeout=5"
        );
        assert_eq!(with_connect_timeout("", FIVE), "connect_timeout=5");
        // Only keywords count, not text inside a (quoted) value.
        assert_eq!(
            with_connect_timeout("host=db password='x connect_timeout=1'", FIVE),
            "host=db password='x connect_timeout=1' connect_timeout=5"
        );
        assert_eq!(
            with_connect_timeout(r"host=db password=a\ connect_timeout=1", FIVE),
            r"host=db password=a\ connect_timeout=1 connect_timeout=5"
        );
    }

    #[test]
    fn connect_timeout_is_whole_seconds_rounded_up_and_at_least_two() {
        let url = "postgres://db";
        for (timeout, seconds) in [
            (Duration::from_millis(300), 2),
            (Duration::from_secs(1), 2),
            (Duration::from_secs(2), 2),
            (Duration::from_millis(2001), 3),
            (Duration::from_secs(60), 60),
            (Duration::MAX, MAX_CONNECT_TIMEOUT_SECS),
        ] {
            assert_eq!(
                with_connect_timeout(url, timeout),
                format!("{url}?connect_timeout={seconds}"),
                "{timeout:?}"
            );
        }
    }
}
