//! Spending a limited key's budget in memory (docs/limits.md): a node takes
//! a share of a window's uses, or of a key's credits, from the
//! [`UsageBudget`] with one conditional write, admits uses against it
//! without I/O, and takes the next share when it runs out. A use is only
//! ever admitted against a share the store granted: no over-admission.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use time::{Duration, OffsetDateTime};

use crate::clock::Clock;
use crate::ids::KeyId;
use crate::limits::{Cost, RateLimit, UsageLimits};
use crate::ports::{RefillDue, RepositoryError, UsageBudget};

/// How far ahead a share reaches at the rate a node has seen: a share is
/// sized to about this much of the key's recent uses on this node.
pub const SHARE_HORIZON: Duration = Duration::milliseconds(250);
/// A window share is at most this part of the window's limit (and at least
/// the cost of the use that asks): a node that crashes strands at most one
/// share per window (docs/limits.md).
pub const WINDOW_SHARE_DIVISOR: u32 = 8;
/// A share of credits is at most this many credits (or the use's cost):
/// what a crashed node can strand, until the next refill.
pub const MAX_CREDIT_SHARE: u64 = 1000;
/// Keys a meter remembers before it forgets those that hold nothing.
const MAX_METERED_KEYS: usize = 100_000;

/// Why a use was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalCode {
    /// The window is used up: 429 `rate_limited`.
    RateLimited,
    /// The credits are used up: 429 `usage_exceeded`.
    UsageExceeded,
}

/// What a limited key's response tells about its budget (`RateLimit-*`
/// headers, verify's `limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageReport {
    /// The rate limit, or for a key with credits only, its refill amount
    /// (without a refill: its remaining credits).
    pub limit: u64,
    /// What is left (an estimate across nodes: this node's share plus what
    /// the store had left when it last took one).
    pub remaining: u64,
    /// Seconds until the window ends, or until the next refill (0: none).
    pub reset: u64,
}

/// A refused use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub code: RefusalCode,
    /// Seconds until it may succeed (`Retry-After`), if it ever will.
    pub retry_after: Option<u64>,
    /// The budget as it stands.
    pub report: UsageReport,
}

/// The verdict on a use.
pub type Verdict = Result<UsageReport, Refusal>;

/// Which budget a share was taken of, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareKind {
    /// A window's uses.
    Window,
    /// Credits.
    Credits,
}

/// A use judged, with the shares taken from the store to judge it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spent {
    /// Admitted (with the report) or refused.
    pub verdict: Verdict,
    /// Window shares taken from the store for this use (0 or 1).
    pub window_shares: u32,
    /// Credit shares taken from the store for this use (0 or 1).
    pub credit_shares: u32,
}

/// This node's part of one window.
#[derive(Debug, Clone, Copy)]
struct WindowLocal {
    start: OffsetDateTime,
    /// `start` in Unix seconds, compared on every use.
    start_unix: i64,
    left: u32,
    /// The window's uses handed out to all nodes when this node last took.
    used: u32,
    /// The store had nothing more to give.
    exhausted: bool,
}

/// This node's part of a key's credits.
#[derive(Debug, Clone, Copy)]
struct CreditsLocal {
    period: OffsetDateTime,
    left: u64,
    /// Credits left in the store when this node last took.
    stored: u64,
    exhausted: bool,
    /// The store said the key has no credits: uses are not metered.
    unmetered: bool,
}

/// Uses admitted since a share was last taken, to size the next.
#[derive(Debug, Clone, Copy)]
struct Pace {
    since: OffsetDateTime,
    uses: u64,
}

impl Pace {
    fn new(now: OffsetDateTime) -> Self {
        Pace {
            since: now,
            uses: 0,
        }
    }

    /// Uses expected in [`SHARE_HORIZON`] at the pace seen, between `cost`
    /// and `cap` (`cap` is raised to `cost`).
    fn share(&self, now: OffsetDateTime, cost: u64, cap: u64) -> u64 {
        let elapsed = (now - self.since)
            .whole_microseconds()
            .max(1000)
            .unsigned_abs();
        let horizon = SHARE_HORIZON.whole_microseconds().unsigned_abs();
        let expected = u128::from(self.uses) * horizon / elapsed + 1;
        let expected = u64::try_from(expected).unwrap_or(u64::MAX);
        expected.clamp(cost, cap.max(cost))
    }
}

/// One key's local state.
#[derive(Debug, Clone, Copy)]
struct Local {
    limits: UsageLimits,
    window: Option<WindowLocal>,
    credits: Option<CreditsLocal>,
    window_pace: Pace,
    credit_pace: Pace,
}

/// What the local state can say without the store.
enum Local1 {
    Judged(Verdict),
    NeedWindow,
    NeedCredits,
}

fn seconds_until(now: OffsetDateTime, at: OffsetDateTime) -> u64 {
    let micros = (at - now).whole_microseconds().max(0).unsigned_abs();
    u64::try_from(micros.div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

impl Local {
    fn new(limits: UsageLimits, now: OffsetDateTime) -> Self {
        Local {
            limits,
            window: None,
            credits: None,
            window_pace: Pace::new(now),
            credit_pace: Pace::new(now),
        }
    }

    fn window_now(&self, rate: &RateLimit, now: OffsetDateTime) -> Option<WindowLocal> {
        let start = rate.window_start_unix(now.unix_timestamp());
        self.window.filter(|w| w.start_unix == start)
    }

    fn credits_now(&self, now: OffsetDateTime) -> Option<CreditsLocal> {
        let period = self.limits.credits_period(now)?;
        self.credits.filter(|c| c.period >= period)
    }

    fn report(&self, now: OffsetDateTime) -> UsageReport {
        if let Some(rate) = self.limits.rate_limit {
            let limit = u64::from(rate.limit());
            let remaining = self.window_now(&rate, now).map_or(limit, |w| {
                u64::from(w.left) + limit.saturating_sub(u64::from(w.used))
            });
            return UsageReport {
                limit,
                remaining: remaining.min(limit),
                reset: rate.seconds_to_window_end(now.unix_timestamp()),
            };
        }
        let credits = self.limits.credits;
        let refill = credits.and_then(|c| c.refill());
        let remaining = match self.credits_now(now) {
            Some(c) => c.left.saturating_add(c.stored),
            None => credits.map_or(0, |c| c.remaining()),
        };
        UsageReport {
            limit: refill.map_or(remaining, |r| r.amount()),
            remaining,
            reset: refill.map_or(0, |r| seconds_until(now, r.interval().next_refill(now))),
        }
    }

    fn refuse(&self, code: RefusalCode, now: OffsetDateTime) -> Verdict {
        let retry_after = match code {
            RefusalCode::RateLimited => self
                .limits
                .rate_limit
                .map(|r| r.seconds_to_window_end(now.unix_timestamp()).max(1)),
            RefusalCode::UsageExceeded => self
                .limits
                .credits
                .and_then(|c| c.refill())
                .map(|r| seconds_until(now, r.interval().next_refill(now)).max(1)),
        };
        Err(Refusal {
            code,
            retry_after,
            report: self.report(now),
        })
    }

    /// Judges a use of `cost` from memory, spending it when admitted.
    fn judge(&mut self, cost: Cost, now: OffsetDateTime) -> Local1 {
        let cost = cost.get();
        if cost == 0 {
            return Local1::Judged(Ok(self.report(now)));
        }
        let mut need_window = false;
        if let Some(rate) = self.limits.rate_limit {
            if cost > rate.limit() {
                return Local1::Judged(self.refuse(RefusalCode::RateLimited, now));
            }
            match self.window_now(&rate, now) {
                Some(w) if w.left >= cost => {}
                Some(w) if w.exhausted => {
                    return Local1::Judged(self.refuse(RefusalCode::RateLimited, now))
                }
                _ => need_window = true,
            }
        }
        let mut need_credits = false;
        if self.limits.credits.is_some() {
            match self.credits_now(now) {
                Some(c) if c.unmetered || c.left >= u64::from(cost) => {}
                Some(c) if c.exhausted => {
                    return Local1::Judged(self.refuse(RefusalCode::UsageExceeded, now))
                }
                _ => need_credits = true,
            }
        }
        if need_window {
            return Local1::NeedWindow;
        }
        if need_credits {
            return Local1::NeedCredits;
        }
        // Both budgets hold the cost: spend both, or (above) neither.
        if let Some(w) = self
            .window
            .as_mut()
            .filter(|_| self.limits.rate_limit.is_some())
        {
            w.left -= cost;
            self.window_pace.uses += u64::from(cost);
        }
        if let Some(c) = self
            .credits
            .as_mut()
            .filter(|_| self.limits.credits.is_some())
        {
            if !c.unmetered {
                c.left -= u64::from(cost);
            }
            self.credit_pace.uses += u64::from(cost);
        }
        Local1::Judged(Ok(self.report(now)))
    }
}

/// What a share depends on: the limits as a person set them, not the
/// credits' `remaining`, which a cache reads anew as nodes spend.
fn fingerprint(
    limits: &UsageLimits,
) -> (
    Option<RateLimit>,
    Option<Option<crate::limits::Refill>>,
    Option<OffsetDateTime>,
) {
    (
        limits.rate_limit,
        limits.credits.map(|c| c.refill()),
        limits.credits.and(limits.credits_since),
    )
}

/// One key's meter: its state, and a lock held while a share is taken so
/// that one thread per key and node asks the store at a time.
#[derive(Debug)]
struct KeyMeter {
    local: Mutex<Local>,
    taking: Mutex<()>,
}

/// Counts of what a meter did, for metrics and tests.
#[derive(Debug, Default)]
pub struct MeterCounts {
    /// Shares taken from the store (each one write).
    pub shares_taken: AtomicU64,
}

/// Spends limited keys' budgets in memory, taking shares from a
/// [`UsageBudget`]. One per node.
pub struct UsageMeter {
    budget: Arc<dyn UsageBudget>,
    clock: Arc<dyn Clock>,
    keys: RwLock<HashMap<KeyId, Arc<KeyMeter>>>,
    counts: MeterCounts,
}

impl std::fmt::Debug for UsageMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageMeter").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl UsageMeter {
    /// A meter over `budget`, telling time by `clock`.
    pub fn new(budget: Arc<dyn UsageBudget>, clock: Arc<dyn Clock>) -> Self {
        UsageMeter {
            budget,
            clock,
            keys: RwLock::new(HashMap::new()),
            counts: MeterCounts::default(),
        }
    }

    /// What the meter did so far.
    pub fn counts(&self) -> &MeterCounts {
        &self.counts
    }

    /// How long after a window ended its count is kept: nodes' clocks may
    /// differ a little, and a node still inside a window by its own clock
    /// must find the window's count, not start it again (docs/limits.md,
    /// "Operating it").
    pub const ENDED_WINDOWS_KEPT_FOR: Duration = Duration::minutes(1);

    /// Deletes the counts of windows that ended more than
    /// [`UsageMeter::ENDED_WINDOWS_KEPT_FOR`] ago, so that the table holds
    /// about one row per limited key and window in use, however long the
    /// service runs. Returns how many were deleted.
    ///
    /// # Errors
    /// [`RepositoryError`]; the next call deletes them.
    pub fn delete_ended_windows(&self) -> Result<usize, RepositoryError> {
        let before = self.clock.now() - Self::ENDED_WINDOWS_KEPT_FOR;
        self.budget.delete_ended_windows(before)
    }

    fn meter(&self, key: &KeyId, limits: &UsageLimits, now: OffsetDateTime) -> Arc<KeyMeter> {
        if let Some(m) = self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return Arc::clone(m);
        }
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= MAX_METERED_KEYS {
            keys.retain(|_, m| {
                let l = lock(&m.local);
                l.window.is_some_and(|w| w.left > 0) || l.credits.is_some_and(|c| c.left > 0)
            });
        }
        Arc::clone(keys.entry(*key).or_insert_with(|| {
            Arc::new(KeyMeter {
                local: Mutex::new(Local::new(*limits, now)),
                taking: Mutex::new(()),
            })
        }))
    }

    /// Judges from memory, or `None` when a share must be taken first.
    fn judge_local(
        meter: &KeyMeter,
        limits: &UsageLimits,
        cost: Cost,
        now: OffsetDateTime,
    ) -> Result<Verdict, Local1> {
        let mut local = lock(&meter.local);
        if fingerprint(&local.limits) != fingerprint(limits) {
            // Changed limits void this node's shares (docs/limits.md).
            *local = Local::new(*limits, now);
        }
        match local.judge(cost, now) {
            Local1::Judged(verdict) => Ok(verdict),
            need => Err(need),
        }
    }

    /// What this node can say of key `key`'s budget now, spending nothing
    /// and asking no store: for a response to a use refused before its
    /// budget was judged (its type or scopes). `None` for an unlimited key.
    /// A key this node has not metered yet reports its limits as the key
    /// holds them (a whole window, the credits not handed out).
    pub fn report(&self, key: &KeyId, limits: &UsageLimits) -> Option<UsageReport> {
        if limits.is_unlimited() {
            return None;
        }
        let now = self.clock.now();
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        let report = match keys.get(key) {
            Some(meter) => {
                let local = lock(&meter.local);
                if fingerprint(&local.limits) == fingerprint(limits) {
                    local.report(now)
                } else {
                    Local::new(*limits, now).report(now)
                }
            }
            None => Local::new(*limits, now).report(now),
        };
        Some(report)
    }

    /// Judges a use of key `key` (with `limits` as the key holds them) of
    /// `cost` from memory, without blocking: `None` when a share must be
    /// taken from the store first ([`spend`](Self::spend), on a thread that
    /// may block). An unlimited key is always admitted, with no report.
    pub fn spend_cached(
        &self,
        key: &KeyId,
        limits: &UsageLimits,
        cost: Cost,
    ) -> Option<Option<Verdict>> {
        if limits.is_unlimited() {
            return Some(None);
        }
        let now = self.clock.now();
        // The hot path: judged under the map's read lock, without cloning
        // the key's meter.
        if let Some(meter) = self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return Self::judge_local(meter, limits, cost, now).ok().map(Some);
        }
        let meter = self.meter(key, limits, now);
        Self::judge_local(&meter, limits, cost, now).ok().map(Some)
    }

    /// Judges a use as [`spend_cached`](Self::spend_cached), taking shares
    /// from the store when this node's are spent. May block.
    ///
    /// # Errors
    /// [`RepositoryError`] when the store cannot be reached: the use is
    /// neither admitted nor refused.
    pub fn spend(
        &self,
        key: &KeyId,
        limits: &UsageLimits,
        cost: Cost,
    ) -> Result<Option<Spent>, RepositoryError> {
        if limits.is_unlimited() {
            return Ok(None);
        }
        let mut spent = Spent {
            verdict: Ok(UsageReport {
                limit: 0,
                remaining: 0,
                reset: 0,
            }),
            window_shares: 0,
            credit_shares: 0,
        };
        let meter = self.meter(key, limits, self.clock.now());
        // At most one share of each kind per use: a use whose share was
        // spent by others meanwhile takes the next one.
        for _ in 0..4 {
            let now = self.clock.now();
            if let Ok(verdict) = Self::judge_local(&meter, limits, cost, now) {
                spent.verdict = verdict;
                return Ok(Some(spent));
            }
            let _taking = lock(&meter.taking);
            // Another thread may have taken a share while this one waited.
            let need = match Self::judge_local(&meter, limits, cost, now) {
                Ok(verdict) => {
                    spent.verdict = verdict;
                    return Ok(Some(spent));
                }
                Err(need) => need,
            };
            match need {
                Local1::NeedWindow => {
                    self.take_window(&meter, key, limits, cost, now)?;
                    spent.window_shares += 1;
                }
                Local1::NeedCredits => {
                    self.take_credits(&meter, key, limits, cost, now)?;
                    spent.credit_shares += 1;
                }
                Local1::Judged(_) => {}
            }
        }
        // Shares kept being spent by other threads: refuse rather than loop.
        let local = lock(&meter.local);
        spent.verdict = local.refuse(
            if limits.rate_limit.is_some() {
                RefusalCode::RateLimited
            } else {
                RefusalCode::UsageExceeded
            },
            self.clock.now(),
        );
        Ok(Some(spent))
    }

    fn take_window(
        &self,
        meter: &KeyMeter,
        key: &KeyId,
        limits: &UsageLimits,
        cost: Cost,
        now: OffsetDateTime,
    ) -> Result<(), RepositoryError> {
        let Some(rate) = limits.rate_limit else {
            return Ok(());
        };
        let start = rate.window_start(now);
        let want = {
            let local = lock(&meter.local);
            let cap = u64::from((rate.limit() / WINDOW_SHARE_DIVISOR).max(1));
            let want = local.window_pace.share(now, u64::from(cost.get()), cap);
            let held = local.window_now(&rate, now).map_or(0, |w| w.left);
            // What is held counts toward the cost: ask for the rest.
            u32::try_from(want)
                .unwrap_or(u32::MAX)
                .saturating_sub(held)
                .max(1)
        };
        let share = self
            .budget
            .take_window_share(key, start, rate.limit(), want)?;
        self.counts.shares_taken.fetch_add(1, Ordering::Relaxed);
        let mut local = lock(&meter.local);
        if fingerprint(&local.limits) != fingerprint(limits) {
            return Ok(());
        }
        let exhausted = share.granted < want;
        local.window = Some(match local.window_now(&rate, now) {
            Some(w) => WindowLocal {
                start,
                start_unix: start.unix_timestamp(),
                left: w.left + share.granted,
                used: share.used,
                exhausted,
            },
            None => WindowLocal {
                start,
                start_unix: start.unix_timestamp(),
                left: share.granted,
                used: share.used,
                exhausted,
            },
        });
        local.window_pace = Pace::new(now);
        Ok(())
    }

    fn take_credits(
        &self,
        meter: &KeyMeter,
        key: &KeyId,
        limits: &UsageLimits,
        cost: Cost,
        now: OffsetDateTime,
    ) -> Result<(), RepositoryError> {
        let Some(credits) = limits.credits else {
            return Ok(());
        };
        let want = {
            let local = lock(&meter.local);
            let want = local
                .credit_pace
                .share(now, u64::from(cost.get()), MAX_CREDIT_SHARE);
            let held = local.credits_now(now).map_or(0, |c| c.left);
            want.saturating_sub(held).max(1)
        };
        let refill = credits.refill().map(|r| RefillDue {
            amount: r.amount(),
            at: r.interval().last_refill(now),
        });
        let share = self.budget.take_credits(key, want, refill)?;
        self.counts.shares_taken.fetch_add(1, Ordering::Relaxed);
        let mut local = lock(&meter.local);
        if fingerprint(&local.limits) != fingerprint(limits) {
            return Ok(());
        }
        let period = limits.credits_period(now).unwrap_or(now);
        local.credits = Some(match share {
            None => CreditsLocal {
                period,
                left: 0,
                stored: 0,
                exhausted: false,
                unmetered: true,
            },
            Some(share) => {
                // A share of an older period than the one held (a refill
                // seen only here) starts afresh.
                let kept = match local.credits_now(now) {
                    Some(c) if c.period == share.period.max(period) => c.left,
                    _ => 0,
                };
                CreditsLocal {
                    period: share.period.max(period),
                    left: kept + share.granted,
                    stored: share.remaining,
                    exhausted: share.granted < want,
                    unmetered: false,
                }
            }
        });
        local.credit_pace = Pace::new(now);
        Ok(())
    }

    /// Gives every unspent share of the current windows and credit periods
    /// back to the store: what a graceful stop does. Returns how many uses
    /// and credits went back.
    ///
    /// # Errors
    /// The first [`RepositoryError`]; the shares not returned are lost
    /// (under-admission, never over-admission).
    pub fn release(&self) -> Result<u64, RepositoryError> {
        let now = self.clock.now();
        let keys: Vec<(KeyId, Arc<KeyMeter>)> = self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, m)| (*k, Arc::clone(m)))
            .collect();
        let mut returned = 0;
        for (key, meter) in keys {
            let (window, credits) = {
                let mut local = lock(&meter.local);
                let window = local
                    .limits
                    .rate_limit
                    .and_then(|r| local.window_now(&r, now))
                    .filter(|w| w.left > 0);
                let credits = local
                    .credits_now(now)
                    .filter(|c| c.left > 0 && !c.unmetered);
                local.window = None;
                local.credits = None;
                (window, credits)
            };
            if let Some(w) = window {
                self.budget.return_window_share(&key, w.start, w.left)?;
                returned += u64::from(w.left);
            }
            if let Some(c) = credits {
                self.budget.return_credits(&key, c.period, c.left)?;
                returned += c.left;
            }
        }
        Ok(returned)
    }
}
