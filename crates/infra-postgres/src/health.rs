//! Whether the database answers: a store that knows it does not fails its
//! calls at once instead of letting each wait for the pool
//! (docs/api.md, "When the database is down").
//!
//! A database can be unreachable in two ways a call cannot tell apart from
//! a slow one:
//!
//! - **it refuses or drops connections** (stopped, restarting, a dead host):
//!   opening a connection fails, and the pool's error handler says so;
//! - **it stops answering without closing anything** (its processes frozen,
//!   a network that drops packets): a statement already sent waits for an
//!   answer that does not come. PostgreSQL's own `statement_timeout` cannot
//!   end it (the server is not running), and TCP keepalives cannot either
//!   while the server's kernel still acknowledges. So every pooled
//!   connection reports when its statement started ([`StatementWatch`]), and
//!   a watchdog thread marks the database down when one has been running
//!   longer than the statement timeout plus a margin: the server would have
//!   cancelled it by then.
//!
//! While down, [`PgStore::run`](crate::PgStore) fails every call with
//! `Unavailable` without touching the pool, and the watchdog probes the
//! database with a fresh connection of its own several times a second; the
//! first probe that answers marks it up again (and makes the pool check its
//! other connections before reusing them). A call stuck on a frozen server
//! stays stuck until the server answers or TCP gives up: its waiting caller
//! is bounded by the HTTP layer (`http_actix::blocking_within`), and the
//! stuck calls by the pool's size.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::Connection;

/// How often the watchdog looks at the running statements, and how long it
/// waits between two failed probes.
const TICK: Duration = Duration::from_millis(100);

/// How much longer than the statement timeout a statement may run before
/// the database counts as not answering: PostgreSQL cancels it at the
/// timeout, and the cancellation's answer needs one round trip.
const HUNG_MARGIN: Duration = Duration::from_millis(500);

/// The store's view of the database: shared by its clones, its connections
/// and its watchdog thread.
#[derive(Debug, Clone)]
pub(crate) struct Health(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    down: AtomicBool,
    /// What made the database count as down, for the calls refused meanwhile.
    reason: Mutex<&'static str>,
    /// When [`StatementWatch`] times count from.
    epoch: Instant,
    /// One slot per open pooled connection; dropped connections leave dead
    /// weak references, pruned when a connection is added.
    statements: Mutex<Vec<Weak<AtomicU64>>>,
    /// A statement running longer than this means the server is not answering.
    hung_after: Duration,
}

/// When the current statement of one connection started: milliseconds since
/// the store's epoch, plus one; 0 while none runs.
#[derive(Debug, Clone)]
pub(crate) struct StatementWatch {
    epoch: Instant,
    started: Arc<AtomicU64>,
}

impl StatementWatch {
    /// A statement is being sent.
    pub(crate) fn started(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        self.started.store(ms + 1, Ordering::Relaxed);
    }

    /// The statement's answer (or error) came back.
    pub(crate) fn finished(&self) {
        self.started.store(0, Ordering::Relaxed);
    }
}

impl Health {
    /// Up, with statements counted as hung after `statement_timeout` plus a
    /// margin.
    pub(crate) fn new(statement_timeout: Duration) -> Self {
        Health(Arc::new(Inner {
            down: AtomicBool::new(false),
            reason: Mutex::new(""),
            epoch: Instant::now(),
            statements: Mutex::new(Vec::new()),
            hung_after: statement_timeout.saturating_add(HUNG_MARGIN),
        }))
    }

    /// Whether the database is known not to answer now.
    pub(crate) fn is_down(&self) -> bool {
        self.0.down.load(Ordering::Acquire)
    }

    /// Why it counts as down (empty while up).
    pub(crate) fn reason(&self) -> &'static str {
        *self.0.reason.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the database down; the watchdog probes it until it answers.
    pub(crate) fn mark_down(&self, reason: &'static str) {
        *self.0.reason.lock().unwrap_or_else(PoisonError::into_inner) = reason;
        if !self.0.down.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                reason,
                "the database counts as down: calls fail at once until it answers a probe"
            );
        }
    }

    fn mark_up(&self) {
        if self.0.down.swap(false, Ordering::AcqRel) {
            tracing::info!("the database answers again");
        }
    }

    /// A slot for a new connection's statements.
    pub(crate) fn watch(&self) -> StatementWatch {
        let started = Arc::new(AtomicU64::new(0));
        let mut slots = self
            .0
            .statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        slots.retain(|slot| slot.strong_count() > 0);
        slots.push(Arc::downgrade(&started));
        StatementWatch {
            epoch: self.0.epoch,
            started,
        }
    }

    /// Whether some connection's statement has run longer than the server
    /// would have let it.
    fn a_statement_hangs(&self) -> bool {
        let now = u64::try_from(self.0.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let limit = u64::try_from(self.0.hung_after.as_millis()).unwrap_or(u64::MAX);
        let slots = self
            .0
            .statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        slots.iter().filter_map(Weak::upgrade).any(|slot| {
            let started = slot.load(Ordering::Relaxed);
            started != 0 && now.saturating_sub(started - 1) > limit
        })
    }

    /// Starts the watchdog: it ends by itself once every clone of this
    /// `Health` (every clone of the store) is gone. `probe_url` is the URL
    /// the pool connects with (with its connect timeout and TCP settings);
    /// `on_back` runs each time the database answers again, before calls
    /// are let through.
    pub(crate) fn spawn_watchdog(&self, probe_url: String, on_back: impl Fn() + Send + 'static) {
        let weak = Arc::downgrade(&self.0);
        let spawned = std::thread::Builder::new()
            .name("apikeys-db-watchdog".to_owned())
            .spawn(move || watchdog(&weak, &probe_url, &on_back));
        if let Err(e) = spawned {
            // Without it the store still works; it only waits for the pool
            // when the database hangs, as it did before.
            tracing::error!(error = %e, "cannot start the database watchdog");
        }
    }
}

fn watchdog(weak: &Weak<Inner>, probe_url: &str, on_back: &dyn Fn()) {
    loop {
        std::thread::sleep(TICK);
        let Some(inner) = weak.upgrade() else { return };
        let health = Health(inner);
        if !health.is_down() {
            if health.a_statement_hangs() {
                health.mark_down("a statement got no answer within the statement timeout");
            }
            continue;
        }
        // Not while holding the store alive longer than needed: the probe
        // may wait for a frozen server until it answers.
        drop(health);
        let answered = probe(probe_url);
        let Some(inner) = weak.upgrade() else { return };
        let health = Health(inner);
        if answered {
            on_back();
            health.mark_up();
        }
    }
}

/// One fresh connection and one `SELECT 1`.
fn probe(url: &str) -> bool {
    match PgConnection::establish(url) {
        Ok(mut conn) => conn.batch_execute("SELECT 1").is_ok(),
        Err(_) => false,
    }
}
