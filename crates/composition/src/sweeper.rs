//! The periodic deletion of expired idempotency records (docs/api.md,
//! "Idempotent requests"): a record's sealed response must not outlive its
//! 24 hours by more than one period.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use domain::ApiKeys;

/// How often expired records are deleted unless configured otherwise.
pub const DEFAULT_SWEEP_EVERY: Duration = Duration::from_secs(60);

/// A thread that deletes expired idempotency records every period, until
/// stopped. A failed deletion (database down) is logged and tried again at
/// the next period: nothing is lost by waiting.
#[derive(Debug)]
pub struct RecordSweeper {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RecordSweeper {
    /// Starts the thread.
    ///
    /// # Errors
    /// When the thread cannot start.
    pub fn spawn(service: Arc<ApiKeys>, every: Duration) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("apikeys-idempotency-sweeper".to_owned())
            .spawn(move || {
                // A message or a dropped sender both mean stop.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    match service.delete_expired_idempotency_records() {
                        Ok(0) => {}
                        Ok(deleted) => {
                            tracing::debug!(deleted, "deleted expired idempotency records");
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not delete expired idempotency records; retrying later");
                        }
                    }
                }
            })?;
        Ok(RecordSweeper {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the thread, waiting for a deletion in progress to finish.
    pub fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the idempotency record sweeper panicked");
            }
        }
    }
}

impl Drop for RecordSweeper {
    fn drop(&mut self) {
        self.stop();
    }
}
