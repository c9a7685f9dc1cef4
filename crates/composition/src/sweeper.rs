//! Periodic background work: the deletion of expired idempotency records
//! (docs/api.md, "Idempotent requests"): a record's sealed response must not
//! outlive its 24 hours by more than one period; the deletion of the counts
//! of ended rate-limit windows (docs/limits.md, "Operating it"); and the
//! webhooks' expiry events (docs/webhooks.md). Each deletion is idempotent:
//! every node runs it, and one node's run leaves the next nothing to do.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use domain::{ApiKeys, UsageMeter};

/// How often expired records are deleted unless configured otherwise.
pub const DEFAULT_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A thread that runs a task every period until stopped: the deletion of
/// expired idempotency records, the expiry events of webhooks. A failed run
/// (database down) is logged by the task and tried again at the next period:
/// nothing is lost by waiting.
#[derive(Debug)]
pub struct Periodic {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Periodic {
    /// Starts thread `name` running `task` every `every`.
    ///
    /// # Errors
    /// When the thread cannot start.
    pub fn spawn(
        name: &str,
        every: Duration,
        mut task: impl FnMut() + Send + 'static,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                // A message or a dropped sender both mean stop.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    task();
                }
            })?;
        Ok(Periodic {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the thread, waiting for a run in progress to finish.
    pub fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("a periodic task panicked");
            }
        }
    }
}

/// Logs what a deletion of `what` did: a failure is tried again at the
/// next period.
fn logged(what: &str, deleted: Result<usize, domain::RepositoryError>) {
    match deleted {
        Ok(0) => {}
        Ok(deleted) => tracing::debug!(deleted, "deleted {what}"),
        Err(e) => tracing::warn!(error = %e, "could not delete {what}; retrying later"),
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A thread that deletes expired idempotency records and the counts of
/// ended rate-limit windows every period, until stopped.
#[derive(Debug)]
pub struct RecordSweeper(Periodic);

impl RecordSweeper {
    /// Starts the thread.
    ///
    /// # Errors
    /// When the thread cannot start.
    pub fn spawn(
        service: Arc<ApiKeys>,
        usage: Arc<UsageMeter>,
        every: Duration,
    ) -> std::io::Result<Self> {
        Periodic::spawn("apikeys-idempotency-sweeper", every, move || {
            logged(
                "expired idempotency records",
                service.delete_expired_idempotency_records(),
            );
            logged("counts of ended windows", usage.delete_ended_windows());
        })
        .map(RecordSweeper)
    }

    /// Stops the thread, waiting for a deletion in progress to finish.
    pub fn stop(&mut self) {
        self.0.stop();
    }
}
