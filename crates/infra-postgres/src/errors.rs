//! The crate's public errors, and how database errors become domain errors.

use std::error::Error as StdError;
use std::fmt;

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use domain::RepositoryError;
use thiserror::Error;

type Source = Box<dyn StdError + Send + Sync + 'static>;

/// Why [`PgStore::connect`](crate::PgStore::connect) refused to build a pool.
///
/// Building the pool never touches the database, so an unreachable database is
/// not an error here: calls on the store return
/// [`RepositoryError::Unavailable`] until it is back.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The pool configuration cannot work (a size or timeout of zero).
    #[error("invalid pool configuration: {0}")]
    InvalidConfig(&'static str),
    /// The database answered, and will keep answering, that these
    /// connection settings cannot work: no such database or role, or a
    /// failed authentication. Retrying does not help.
    #[error("the database refused the connection: {0}")]
    Refused(String),
    /// The URL is malformed (libpq cannot read it): no connection was tried.
    #[error("the URL is malformed: {0}")]
    MalformedUrl(String),
}

/// Whether libpq's message for a failed connection names a problem that
/// waiting cannot fix. Its messages are English whatever the server's locale
/// when they come from libpq itself; the server's `FATAL` ones are matched on
/// their usual English text, and anything unrecognised counts as transient
/// (the caller then waits, as before).
pub(crate) fn is_permanent_connect_failure(message: &str) -> bool {
    is_malformed_url(message) || {
        const REFUSED: &[&str] = &[
            "does not exist",
            "authentication failed",
            "no pg_hba.conf entry",
            "password authentication",
            "is not permitted to log in",
        ];
        REFUSED.iter().any(|p| message.contains(p))
    }
}

/// Whether libpq's message says that it could not read the connection
/// string: nothing was sent to a server.
pub(crate) fn is_malformed_url(message: &str) -> bool {
    const MALFORMED: &[&str] = &[
        "invalid connection option",
        "invalid sslmode",
        "invalid URI",
        "invalid integer value",
        "missing \"=\"",
    ];
    MALFORMED.iter().any(|p| message.contains(p))
}

/// Why [`PgStore::migrate`](crate::PgStore::migrate) failed.
#[derive(Debug, Error)]
pub enum MigrateError {
    /// No connection to the database (see [`RepositoryError::is_unavailable`]),
    /// or another storage failure around the migrations.
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    /// A migration failed; it was rolled back and the ones after it were not run.
    #[error("applying the database migrations failed")]
    Migration {
        /// The cause.
        #[source]
        source: Source,
    },
}

#[cfg(test)]
mod tests {
    use super::is_permanent_connect_failure;

    #[test]
    fn missing_databases_roles_and_bad_passwords_are_permanent_refusals_are_not() {
        for permanent in [
            "connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  database \"nope\" does not exist",
            "connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  role \"nobody\" does not exist",
            "connection to server at \"db\", port 5432 failed: FATAL:  password authentication failed for user \"app\"",
            "invalid URI query parameter: \"bogus\"",
        ] {
            assert!(is_permanent_connect_failure(permanent), "{permanent}");
        }
        for transient in [
            "connection to server at \"127.0.0.1\", port 5999 failed: Connection refused",
            "connection to server at \"10.0.0.1\", port 5432 failed: timeout expired",
            "FATAL:  the database system is starting up",
        ] {
            assert!(!is_permanent_connect_failure(transient), "{transient}");
        }
    }
}

impl MigrateError {
    /// Whether the database could not be reached, so retrying later may work.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, MigrateError::Repository(e) if e.is_unavailable())
    }
}

/// A database error with Diesel's type erased: only its message, which names
/// constraints but never the values that broke them (no key hash leaks into
/// logs this way).
#[derive(Debug)]
pub(crate) struct DatabaseFailure(String);

impl fmt::Display for DatabaseFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for DatabaseFailure {}

impl From<&DieselError> for DatabaseFailure {
    fn from(error: &DieselError) -> Self {
        DatabaseFailure(error.to_string())
    }
}

/// How an operation on a connection ends when it does not succeed: a business
/// outcome decided along the way, or a database error still to be classified.
#[derive(Debug)]
pub(crate) enum Fail<E> {
    /// A domain outcome (not found, limit reached, ...).
    Domain(E),
    /// A Diesel error.
    Db(DieselError),
}

impl<E> From<DieselError> for Fail<E> {
    fn from(error: DieselError) -> Self {
        Fail::Db(error)
    }
}

/// Whether the error means the connection itself is gone (the server closed
/// it, or a command could not be sent): the connection must not be reused and
/// the caller may retry later. A `COMMIT` that failed so, and whose rollback
/// failed too, counts (Diesel reports the pair as `RollbackErrorOnCommit`).
pub(crate) fn is_connection_error(error: &DieselError) -> bool {
    match error {
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        )
        | DieselError::BrokenTransactionManager => true,
        DieselError::RollbackErrorOnCommit { commit_error, .. } => {
            is_connection_error(commit_error)
        }
        _ => false,
    }
}

/// Whether the error is a unique violation.
pub(crate) fn is_unique_violation(error: &DieselError) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

/// Whether the error is a foreign key violation.
pub(crate) fn is_foreign_key_violation(error: &DieselError) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)
    )
}

/// PostgreSQL's message for SQLSTATE 57014 (`query_canceled`) when
/// `statement_timeout` ran out.
const STATEMENT_TIMEOUT_MESSAGE: &str = "canceling statement due to statement timeout";

/// PostgreSQL's message for SQLSTATE 55P03 (`lock_not_available`) when
/// `lock_timeout` ran out. The store sets none, but a role or database
/// setting may.
const LOCK_TIMEOUT_MESSAGE: &str = "canceling statement due to lock timeout";

/// Whether PostgreSQL cancelled the statement because it ran out of time:
/// `statement_timeout` (57014) or `lock_timeout` (55P03).
///
/// Diesel 2.3 reports both as `DatabaseErrorKind::Unknown` and does not expose
/// the SQLSTATE, so the (English) message is matched, and any kind accepted in
/// case a later Diesel gives them one. A server with non-English
/// `lc_messages` makes these plain failures (500) instead of 503.
pub(crate) fn is_timeout(error: &DieselError) -> bool {
    matches!(
        error,
        DieselError::DatabaseError(_, info)
            if info.message() == STATEMENT_TIMEOUT_MESSAGE
                || info.message() == LOCK_TIMEOUT_MESSAGE
    )
}

/// The repository error for a database error that is no business outcome.
pub(crate) fn repository_error(context: &'static str, error: &DieselError) -> RepositoryError {
    let failure = DatabaseFailure::from(error);
    // A lost connection, and a statement cancelled for running out of time
    // (overload, or a lock held too long), are worth retrying: the HTTP layer
    // answers 503 with `Retry-After`. A cancelled statement changed nothing
    // (its transaction is rolled back), and its connection stays usable.
    if is_connection_error(error) || is_timeout(error) {
        RepositoryError::unavailable(context, failure)
    } else {
        RepositoryError::failure(context, failure)
    }
}
