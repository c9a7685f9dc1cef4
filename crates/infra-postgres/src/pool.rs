//! The r2d2 connection manager: Diesel's, plus discarding connections that
//! failed at the connection level.
//!
//! Diesel's manager only counts a connection as broken when its transaction
//! manager is; a connection the server closed between two queries looks
//! healthy and would fail once more for every checkout. Instead of testing
//! every checkout with `SELECT 1` (a round trip per query), the store marks a
//! connection broken when a query on it fails at the connection level, and the
//! pool drops it when it comes back.

use diesel::pg::PgConnection;
use diesel::r2d2::{ConnectionManager, Error as ManagerError, ManageConnection, R2D2Connection};

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

/// Diesel's connection manager, reporting [`PgConn::mark_broken`] connections
/// as broken.
#[derive(Debug)]
pub(crate) struct Manager {
    inner: ConnectionManager<PgConnection>,
}

impl Manager {
    pub(crate) fn new(database_url: &str) -> Self {
        Manager {
            inner: ConnectionManager::new(database_url),
        }
    }
}

impl ManageConnection for Manager {
    type Connection = PgConn;
    type Error = ManagerError;

    fn connect(&self) -> Result<PgConn, ManagerError> {
        Ok(PgConn {
            pg: self.inner.connect()?,
            broken: false,
        })
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
