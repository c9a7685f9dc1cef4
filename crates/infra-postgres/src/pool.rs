//! The r2d2 connection manager: Diesel's, plus time limits on every new
//! connection and discarding connections that failed at the connection level.
//!
//! Diesel's manager only counts a connection as broken when its transaction
//! manager is; a connection the server closed between two queries looks
//! healthy and would fail once more for every checkout. Instead of testing
//! every checkout with `SELECT 1` (a round trip per query), the store marks a
//! connection broken when a query on it fails at the connection level, and the
//! pool drops it when it comes back.
//!
//! The pool's `connection_timeout` only bounds the wait for a connection. So
//! that a fault never hangs a thread for longer, every connection is opened
//! with libpq's `connect_timeout` (a host that drops packets would otherwise
//! hold an r2d2 thread until the operating system gives up on TCP) and runs
//! `SET statement_timeout` once, when it is opened (a query stuck behind a
//! lock or on an overloaded server is cancelled by the server).

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Error as ManagerError, ManageConnection, R2D2Connection};

use crate::admin::url_scheme_len;

/// A pooled PostgreSQL connection and whether it failed at the connection level.
pub(crate) struct PgConn {
    pub(crate) pg: PgConnection,
    broken: bool,
}

impl PgConn {
    /// Makes the pool close this connection instead of reusing it.
    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }
}

/// Diesel's connection manager, setting the statement timeout of each new
/// connection and reporting [`PgConn::mark_broken`] connections as broken.
#[derive(Debug)]
pub(crate) struct Manager {
    inner: ConnectionManager<PgConnection>,
    /// `SET statement_timeout = <ms>`, run once per new connection.
    set_statement_timeout: String,
}

impl Manager {
    /// Connects to `database_url` (which should carry a `connect_timeout`, see
    /// [`with_connect_timeout`]); every connection cancels statements that
    /// run longer than `statement_timeout_ms` milliseconds.
    pub(crate) fn new(database_url: &str, statement_timeout_ms: u64) -> Self {
        Manager {
            inner: ConnectionManager::new(database_url),
            set_statement_timeout: format!("SET statement_timeout = {statement_timeout_ms}"),
        }
    }
}

impl ManageConnection for Manager {
    type Connection = PgConn;
    type Error = ManagerError;

    fn connect(&self) -> Result<PgConn, ManagerError> {
        let mut pg = self.inner.connect()?;
        // Once per connection rather than per checkout: a session setting
        // outlives transactions, and nothing in the store changes it except
        // the migrations, whose connection is discarded afterwards.
        pg.batch_execute(&self.set_statement_timeout)
            .map_err(ManagerError::QueryError)?;
        Ok(PgConn { pg, broken: false })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), ManagerError> {
        conn.pg.ping().map_err(ManagerError::QueryError)
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.broken || self.inner.has_broken(&mut conn.pg)
    }
}

/// Logs connection failures of the pool through `tracing` (r2d2's default
/// handler uses the `log` crate).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TracingErrorHandler;

impl diesel::r2d2::HandleError<ManagerError> for TracingErrorHandler {
    fn handle_error(&self, error: ManagerError) {
        tracing::warn!(error = %error, "cannot open a PostgreSQL connection");
    }
}

/// libpq's smallest `connect_timeout`: 1 would be taken as 2 anyway.
const MIN_CONNECT_TIMEOUT_SECS: u64 = 2;

/// The largest `connect_timeout` libpq accepts (a C `int`).
const MAX_CONNECT_TIMEOUT_SECS: u64 = 2_147_483_647;

/// `database_url` with libpq's `connect_timeout` set to `timeout` in whole
/// seconds, rounded up and at least 2, unless the URL already sets one (the
/// URL's own value wins, and so does it over `PGCONNECT_TIMEOUT`).
///
/// Handles both forms libpq accepts: a `postgres://` or `postgresql://` URL
/// gets a query parameter, a `key=value` connection string one more pair.
pub(crate) fn with_connect_timeout(database_url: &str, timeout: Duration) -> String {
    let rounded_up = timeout
        .as_secs()
        .saturating_add(u64::from(timeout.subsec_nanos() > 0));
    let seconds = rounded_up.clamp(MIN_CONNECT_TIMEOUT_SECS, MAX_CONNECT_TIMEOUT_SECS);
    if url_scheme_len(database_url).is_some() {
        let Some((_, query)) = database_url.split_once('?') else {
            return format!("{database_url}?connect_timeout={seconds}");
        };
        let already_set = query
            .split('&')
            .any(|pair| pair.split('=').next() == Some("connect_timeout"));
        if already_set {
            database_url.to_owned()
        } else if query.is_empty() || query.ends_with('&') {
            format!("{database_url}connect_timeout={seconds}")
        } else {
            format!("{database_url}&connect_timeout={seconds}")
        }
    } else if conninfo_keywords(database_url).any(|key| key == "connect_timeout") {
        database_url.to_owned()
    } else if database_url.trim().is_empty() {
        format!("connect_timeout={seconds}")
    } else {
        format!("{database_url} connect_timeout={seconds}")
    }
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
