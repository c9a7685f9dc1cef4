//! Creating databases: `apikeys dev` and the test support.

use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use thiserror::Error;

use crate::errors::DatabaseFailure;

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why [`ensure_database`] failed.
#[derive(Debug, Error)]
pub enum EnsureDatabaseError {
    /// The name is empty, longer than 63 bytes, or has characters other than
    /// ASCII letters, digits, `_` and `-`.
    #[error("invalid database name {0:?}: use 1 to 63 ASCII letters, digits, `_` or `-`")]
    InvalidName(String),
    /// The admin connection could not be opened.
    #[error("cannot connect to PostgreSQL")]
    Unavailable {
        /// The cause.
        #[source]
        source: Source,
    },
    /// A query failed.
    #[error("{context} failed")]
    Failure {
        /// What was being done.
        context: &'static str,
        /// The cause.
        #[source]
        source: Source,
    },
}

/// Creates the database `name` through the admin connection `admin_url` unless
/// it exists; returns whether it created it. Safe to call concurrently.
///
/// # Errors
/// [`EnsureDatabaseError`].
pub fn ensure_database(admin_url: &str, name: &str) -> Result<bool, EnsureDatabaseError> {
    let quoted = quote_identifier(name)?;
    let mut conn =
        PgConnection::establish(admin_url).map_err(|e| EnsureDatabaseError::Unavailable {
            source: Box::new(e),
        })?;
    if database_exists(&mut conn, name)? {
        return Ok(false);
    }
    match diesel::sql_query(format!("CREATE DATABASE {quoted}")).execute(&mut conn) {
        Ok(_) => Ok(true),
        // Created by someone else in the meantime?
        Err(_) if database_exists(&mut conn, name)? => Ok(false),
        Err(e) => Err(EnsureDatabaseError::Failure {
            context: "creating the database",
            source: Box::new(DatabaseFailure::from(&e)),
        }),
    }
}

/// Drops the database `name` if it exists, closing its connections.
#[cfg(feature = "test-support")]
pub(crate) fn drop_database(admin_url: &str, name: &str) -> Result<(), EnsureDatabaseError> {
    let quoted = quote_identifier(name)?;
    let mut conn =
        PgConnection::establish(admin_url).map_err(|e| EnsureDatabaseError::Unavailable {
            source: Box::new(e),
        })?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
        .execute(&mut conn)
        .map_err(|e| EnsureDatabaseError::Failure {
            context: "dropping the database",
            source: Box::new(DatabaseFailure::from(&e)),
        })?;
    Ok(())
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = Bool)]
    exists: bool,
}

fn database_exists(conn: &mut PgConnection, name: &str) -> Result<bool, EnsureDatabaseError> {
    diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
        .bind::<Text, _>(name)
        .get_result::<Exists>(conn)
        .map(|row| row.exists)
        .map_err(|e| EnsureDatabaseError::Failure {
            context: "looking the database up",
            source: Box::new(DatabaseFailure::from(&e)),
        })
}

fn quote_identifier(name: &str) -> Result<String, EnsureDatabaseError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(format!("\"{name}\""))
    } else {
        Err(EnsureDatabaseError::InvalidName(name.to_owned()))
    }
}

/// The URL of database `name` on the server of `admin_url`: the same
/// connection with another database.
///
/// `admin_url` is a `postgres://` or `postgresql://` URL (its path is replaced,
/// its query kept) or a `key=value` connection string (`dbname` is appended,
/// and the last one wins). `name` is used as it is: keep to ASCII letters,
/// digits, `_` and `-`.
///
/// ```
/// assert_eq!(
///     infra_postgres::database_url_for("postgres://postgres@127.0.0.1:5432/postgres", "apikeys"),
///     "postgres://postgres@127.0.0.1:5432/apikeys",
/// );
/// ```
pub fn database_url_for(admin_url: &str, name: &str) -> String {
    let Some(scheme_end) = url_scheme_len(admin_url) else {
        return format!("{admin_url} dbname={name}");
    };
    let (base, query) = match admin_url.find('?') {
        Some(at) => admin_url.split_at(at),
        None => (admin_url, ""),
    };
    let authority_end = base
        .get(scheme_end..)
        .and_then(|rest| rest.find('/'))
        .map_or(base.len(), |at| scheme_end + at);
    let authority = base.get(..authority_end).unwrap_or(base);
    format!("{authority}/{name}{query}")
}

/// `database_url` with its connections' `search_path` set to `schema` alone
/// (libpq's `options=-c search_path=...`), so that the migrations create,
/// and every query finds, the tables in that schema instead of `public`
/// (docs/embedding.md, "Tables in a schema of your own"). Create the schema
/// first (`CREATE SCHEMA apikeys`): PostgreSQL does not.
///
/// A `postgres://` URL gets the `options` query parameter; a `key=value`
/// string gets `options='-c search_path=...'`. Any `options` already there
/// is left in place before it (libpq takes the last). `schema` is used as it
/// is: keep to lower-case ASCII letters, digits and `_`.
///
/// ```
/// assert_eq!(
///     infra_postgres::database_url_with_schema("postgres://app@db/main", "apikeys"),
///     "postgres://app@db/main?options=-csearch_path%3Dapikeys",
/// );
/// ```
pub fn database_url_with_schema(database_url: &str, schema: &str) -> String {
    if url_scheme_len(database_url).is_none() {
        return format!("{database_url} options='-c search_path={schema}'");
    }
    let separator = match database_url.split_once('?') {
        None => "?",
        Some((_, q)) if q.is_empty() || q.ends_with('&') => "",
        Some(_) => "&",
    };
    format!("{database_url}{separator}options=-csearch_path%3D{schema}")
}

/// The length of the `postgres://` or `postgresql://` prefix of a connection
/// URL; `None` for a `key=value` connection string.
pub(crate) fn url_scheme_len(url: &str) -> Option<usize> {
    url.strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .map(|rest| url.len() - rest.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_for_replaces_the_path_and_keeps_the_query() {
        assert_eq!(
            database_url_for(
                "postgresql://app:pw@db:5432/postgres?sslmode=require",
                "apikeys"
            ),
            "postgresql://app:pw@db:5432/apikeys?sslmode=require"
        );
        assert_eq!(
            database_url_for("postgres://db", "apikeys"),
            "postgres://db/apikeys"
        );
        assert_eq!(
            database_url_for("postgres://db?connect_timeout=2", "apikeys"),
            "postgres://db/apikeys?connect_timeout=2"
        );
    }

    #[test]
    fn database_url_with_schema_adds_the_search_path_option() {
        assert_eq!(
            database_url_with_schema("postgres://db/x?sslmode=require", "s1"),
            "postgres://db/x?sslmode=require&options=-csearch_path%3Ds1"
        );
        assert_eq!(
            database_url_with_schema("postgres://db/x?", "s1"),
            "postgres://db/x?options=-csearch_path%3Ds1"
        );
        assert_eq!(
            database_url_with_schema("host=/tmp dbname=x", "s1"),
            "host=/tmp dbname=x options='-c search_path=s1'"
        );
    }

    #[test]
    fn database_url_for_appends_dbname_to_a_keyword_string() {
        assert_eq!(
            database_url_for("host=/run/postgresql user=postgres", "apikeys"),
            "host=/run/postgresql user=postgres dbname=apikeys"
        );
    }

    #[test]
    fn database_names_are_restricted_to_safe_characters() {
        assert_eq!(
            quote_identifier("apikeys_dev-1").ok(),
            Some("\"apikeys_dev-1\"".to_owned())
        );
        for bad in ["", "a\"b", "a b", "x;DROP", &"n".repeat(64)] {
            assert!(
                matches!(
                    quote_identifier(bad),
                    Err(EnsureDatabaseError::InvalidName(_))
                ),
                "{bad:?}"
            );
        }
    }
}
