//! The bounds on leak reports, open to anyone (docs/api.md, "POST
//! /v1/leaked-keys"): a limit per client address, and the most reports
//! processed at once on a node, so that no request can queue work, memory
//! or threads without bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix_web::HttpRequest;

use crate::error::ApiError;
use crate::rate_limit::FailureLimiter;

/// Reports processed at once on one node unless configured.
pub const DEFAULT_LEAK_REPORTS_IN_FLIGHT: usize = 2;
/// Reports per client address and minute unless configured.
pub const DEFAULT_LEAK_REPORTS_PER_MINUTE: u32 = 60;

/// The bounds on leak reports: a limit per client address (a
/// [`FailureLimiter`] that counts every report) and the most reports
/// processed at once on this node. Shared by the app's workers.
#[derive(Debug)]
pub struct LeakReportGate {
    per_address: FailureLimiter,
    in_flight: AtomicUsize,
    max_in_flight: usize,
}

impl LeakReportGate {
    /// `per_address` counts each report (build it with the limit per
    /// window, such as 60 a minute, and the trusted proxies);
    /// `max_in_flight` (at least 1) reports are processed at once.
    pub fn new(per_address: FailureLimiter, max_in_flight: usize) -> Self {
        LeakReportGate {
            per_address: per_address.counting("leak reports"),
            in_flight: AtomicUsize::new(0),
            max_in_flight: max_in_flight.max(1),
        }
    }

    /// No limit per address, [`DEFAULT_LEAK_REPORTS_IN_FLIGHT`] at once.
    pub fn unlimited() -> Self {
        Self::new(FailureLimiter::disabled(), DEFAULT_LEAK_REPORTS_IN_FLIGHT)
    }

    /// Reports being processed now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a report of `req`'s client.
    ///
    /// # Errors
    /// 429 `too_many_requests` while the address is over its limit.
    pub(crate) fn admit(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let client = self.per_address.admit(req)?;
        match self.per_address.failed(client) {
            Some(too_many) => Err(too_many),
            None => Ok(()),
        }
    }

    /// A place among the reports processed at once.
    ///
    /// # Errors
    /// 503 `service_unavailable` (with `Retry-After`) when every place is
    /// taken: the report is not queued.
    pub(crate) fn enter(self: &Arc<Self>) -> Result<InFlight, ApiError> {
        let taken = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_in_flight).then_some(n + 1)
            });
        match taken {
            Ok(_) => Ok(InFlight(Arc::clone(self))),
            Err(n) => Err(ApiError::unavailable()
                .with_source(format!("{n} leak reports in flight: the most at once"))),
        }
    }
}

/// One report's place, given back when the report's work is over (not when
/// its answer is: a report whose storage call outlived the request still
/// holds a thread).
pub(crate) struct InFlight(Arc<LeakReportGate>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
