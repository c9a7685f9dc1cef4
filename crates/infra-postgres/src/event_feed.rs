//! The event feed: how a node learns of every other node's changes
//! (docs/cache.md, "Invalidation across nodes").
//!
//! One thread with a session connection of its own (outside the request
//! pool) `LISTEN`s on `apikeys_key_events` and reads `key_events`: at once
//! when notified, and at least every [`FeedConfig::poll_interval`] without a
//! notification (a notification is a hint, and one sent while the connection
//! was down is lost). Sequence numbers commit out of order without bound, so
//! the feed does not follow them: it follows the writing transactions' ids
//! (`xact_id`). Each read takes every event whose transaction id is at or
//! above a mark, and then moves the mark to the oldest transaction still
//! running when the read's snapshot was taken (`pg_snapshot_xmin`): a
//! transaction below it has ended, so its events (if it committed) were in
//! that read or an earlier one, and every event that commits later has an id
//! at or above it (docs/events.md). No timing assumption is involved. Events
//! already reported are skipped. Each complete read tells the listener every
//! change committed before the read began has been reported
//! ([`KeyChangeListener::caught_up`]); on any error the connection is
//! dropped, reopened after a pause, and the first read catches up before the
//! listener hears "caught up" again. The feed refuses a standby (its
//! snapshots do not show the primary's running transactions).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Nullable, Text};
use diesel::{sql_query, QueryableByName};
use domain::{KeyChangeListener, KeyId};

use crate::pool::connection_url;

/// How the feed reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedConfig {
    /// The longest wait between two reads without a notification.
    pub poll_interval: Duration,
    /// Opening a connection, and each read, give up after this long.
    pub timeout: Duration,
    /// On start, the feed also re-reads this many of the latest events
    /// (besides every event of a transaction still running then): a cache
    /// may have loaded keys before the feed's first read.
    pub initial_overlap_events: i64,
}

impl Default for FeedConfig {
    /// A read at least every 200 ms, 5 s timeouts, 100,000 events on start.
    fn default() -> Self {
        FeedConfig {
            poll_interval: Duration::from_millis(200),
            timeout: Duration::from_secs(5),
            initial_overlap_events: 100_000,
        }
    }
}

/// The running feed; dropping it stops the thread.
#[derive(Debug)]
pub struct EventFeed {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EventFeed {
    /// Starts following the events of the database at `database_url`,
    /// reporting to `listener`.
    ///
    /// # Errors
    /// When the thread cannot be started (not when the database is down: the
    /// feed keeps trying, and the listener never hears "caught up" until it
    /// succeeds).
    pub fn spawn(
        database_url: &str,
        config: FeedConfig,
        listener: Arc<dyn KeyChangeListener>,
    ) -> std::io::Result<Self> {
        let url = connection_url(database_url, config.timeout);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("apikeys-event-feed".to_owned())
                .spawn(move || Follower::new(url, config, listener, stop).run())?
        };
        Ok(EventFeed {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the feed and waits for its thread.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the event feed panicked");
            }
        }
    }
}

impl Drop for EventFeed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One read: the snapshot's horizon and the events found, in sequence
/// order (one row, so that the horizon and the events come from one
/// snapshot).
#[derive(QueryableByName)]
struct Read {
    /// `pg_snapshot_xmin` of the read's snapshot.
    #[diesel(sql_type = BigInt)]
    horizon: i64,
    #[diesel(sql_type = Array<BigInt>)]
    seqs: Vec<i64>,
    /// The writing transactions' ids (0 for events written before the
    /// column existed).
    #[diesel(sql_type = Array<BigInt>)]
    xacts: Vec<i64>,
    #[diesel(sql_type = Array<Nullable<Text>>)]
    key_ids: Vec<Option<String>>,
}

/// Where the first read starts: the latest sequence number and the horizon
/// when the feed (re)connected.
#[derive(QueryableByName)]
struct Start {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = BigInt)]
    horizon: i64,
}

#[derive(QueryableByName)]
struct Recovery {
    #[diesel(sql_type = Bool)]
    in_recovery: bool,
}

/// The horizon of the statement's snapshot: every transaction with a lower
/// id has ended. `xid8` has no cast to `bigint`; its text form is the number.
const HORIZON: &str = "pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

/// The events of every transaction at or above the mark (`$1`), and those
/// after sequence number `$2` (the first read's extra overlap).
static READ: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {HORIZON} AS horizon,
       coalesce(array_agg(seq ORDER BY seq), '{{}}') AS seqs,
       coalesce(array_agg(coalesce(xact_id::text::bigint, 0) ORDER BY seq), '{{}}') AS xacts,
       coalesce(array_agg(key_id ORDER BY seq), '{{}}') AS key_ids
FROM key_events
WHERE xact_id >= $1::bigint::text::xid8 OR seq > $2"
    )
});

/// Where the feed reads from.
#[derive(Debug, Clone, Copy)]
struct Mark {
    /// Every event of a transaction at or above this id.
    xact: i64,
    /// And every event after this sequence number (only the first read
    /// after a connection; `i64::MAX` afterwards).
    seq: i64,
}

struct Follower {
    url: String,
    config: FeedConfig,
    listener: Arc<dyn KeyChangeListener>,
    stop: Arc<AtomicBool>,
    /// Where the next read starts (`None` until the first read).
    mark: Option<Mark>,
    /// (transaction id, sequence number) of the events at or above the
    /// mark already reported.
    seen: BTreeSet<(i64, i64)>,
}

impl Follower {
    fn new(
        url: String,
        config: FeedConfig,
        listener: Arc<dyn KeyChangeListener>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        Follower {
            url,
            config,
            listener,
            stop,
            mark: None,
            seen: BTreeSet::new(),
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn run(mut self) {
        let mut pause = Duration::from_millis(50);
        while !self.stopped() {
            match self.connect() {
                Ok(mut conn) => {
                    pause = Duration::from_millis(50);
                    if let Err(e) = self.follow(&mut conn) {
                        tracing::warn!(error = %e, "event feed lost its connection; reconnecting");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "event feed cannot connect; retrying"),
            }
            if self.stopped() {
                break;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    fn connect(&self) -> Result<PgConnection, Box<dyn std::error::Error + Send + Sync>> {
        let mut conn = PgConnection::establish(&self.url)?;
        let timeout_ms = self.config.timeout.as_millis().clamp(1, 2_147_483_647);
        conn.batch_execute(&format!("SET statement_timeout = {timeout_ms}"))?;
        let standby = sql_query("SELECT pg_is_in_recovery() AS in_recovery")
            .get_result::<Recovery>(&mut conn)?
            .in_recovery;
        if standby {
            return Err("the event feed needs the primary database, not a standby".into());
        }
        conn.batch_execute("LISTEN apikeys_key_events")?;
        Ok(conn)
    }

    /// Reads, then waits for a notification or the poll interval, until an
    /// error or a stop.
    fn follow(&mut self, conn: &mut PgConnection) -> QueryResult<()> {
        while !self.stopped() {
            self.read(conn)?;
            self.wait(conn)?;
        }
        Ok(())
    }

    /// Waits up to the poll interval, returning early on a notification.
    /// Checking costs no round trip: it reads what already arrived on the
    /// socket.
    fn wait(&self, conn: &mut PgConnection) -> QueryResult<()> {
        let until = Instant::now() + self.config.poll_interval;
        while Instant::now() < until && !self.stopped() {
            let mut notified = false;
            for notification in conn.notifications_iter() {
                notification?;
                notified = true;
            }
            if notified {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// One complete read: every event at or above the mark, each reported
    /// once; then the mark moves up to the read's horizon.
    fn read(&mut self, conn: &mut PgConnection) -> QueryResult<()> {
        let started = Instant::now();
        let mark = match self.mark {
            Some(mark) => mark,
            None => {
                let start = sql_query(format!(
                    "SELECT coalesce(max(seq), 0) AS seq, {HORIZON} AS horizon FROM key_events"
                ))
                .get_result::<Start>(conn)?;
                Mark {
                    xact: start.horizon,
                    seq: (start.seq - self.config.initial_overlap_events).max(0),
                }
            }
        };
        let read = sql_query(READ.as_str())
            .bind::<BigInt, _>(mark.xact)
            .bind::<BigInt, _>(mark.seq)
            .get_result::<Read>(conn)?;
        let events = read.seqs.iter().zip(&read.xacts).zip(&read.key_ids);
        for ((&seq, &xact), key_id) in events {
            if !self.seen.insert((xact, seq)) {
                continue;
            }
            if let Some(id) = key_id.as_deref().and_then(|id| KeyId::parse(id).ok()) {
                self.listener.key_changed(&id);
            }
        }
        // Every transaction below the horizon has ended: its events are in
        // this read or an earlier one, and are never read again.
        let xact = mark.xact.max(read.horizon);
        self.mark = Some(Mark {
            xact,
            seq: i64::MAX,
        });
        self.seen = self.seen.split_off(&(xact, i64::MIN));
        self.listener.caught_up(started);
        Ok(())
    }
}
