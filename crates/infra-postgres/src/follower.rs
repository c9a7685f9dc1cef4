//! The event feed: how a node learns of every other node's changes
//! (docs/cache.md, "Invalidation across nodes").
//!
//! One thread with a session connection of its own (outside the request
//! pool) `LISTEN`s on `apikeys_key_events` and reads `key_events` by
//! sequence number: at once when notified, and at least every
//! [`FeedConfig::poll_interval`] without a notification (a notification is
//! a hint, and one sent while the connection was down is lost). Each read
//! re-reads an overlap window, because sequence numbers are handed out at
//! insert time and can commit out of order (docs/events.md); events already
//! reported are skipped. Each complete read tells the listener every change
//! committed before the read began has been reported
//! ([`KeyChangeListener::caught_up`]); on any error the connection is
//! dropped, reopened after a pause, and the first read catches up before the
//! listener hears "caught up" again.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{sql_query, QueryableByName};
use domain::{KeyChangeListener, KeyId};

use crate::pool::connection_url;

/// How the feed reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedConfig {
    /// The longest wait between two reads without a notification.
    pub poll_interval: Duration,
    /// How far back every read looks again: longer than any write
    /// transaction can take between taking its sequence number and
    /// committing (the statement timeout bounds it, plus a margin).
    pub overlap: Duration,
    /// Opening a connection, and each read, give up after this long.
    pub timeout: Duration,
    /// On start, the feed also re-reads this many of the latest events, as
    /// its first overlap (it has no earlier reads to measure one from).
    pub initial_overlap_events: i64,
}

impl Default for FeedConfig {
    /// A read at least every 200 ms, an overlap of 15 s (the default
    /// statement timeout is 5 s), 5 s timeouts, 100,000 events on start.
    fn default() -> Self {
        FeedConfig {
            poll_interval: Duration::from_millis(200),
            overlap: Duration::from_secs(15),
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

#[derive(QueryableByName)]
struct EventKey {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Nullable<Text>)]
    key_id: Option<String>,
}

#[derive(QueryableByName)]
struct MaxSeq {
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

struct Follower {
    url: String,
    config: FeedConfig,
    listener: Arc<dyn KeyChangeListener>,
    stop: Arc<AtomicBool>,
    /// Re-read everything after this sequence number.
    low: Option<i64>,
    /// Sequence numbers above `low` already reported.
    seen: BTreeSet<i64>,
    /// (start of a complete read, highest number seen by then), oldest first.
    reads: VecDeque<(Instant, i64)>,
    /// When the previous complete read began.
    previous_read: Option<Instant>,
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
            low: None,
            seen: BTreeSet::new(),
            reads: VecDeque::new(),
            previous_read: None,
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
        conn.batch_execute(&format!(
            "SET statement_timeout = {timeout_ms}; LISTEN apikeys_key_events"
        ))?;
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

    /// One complete read: every event after `low`, each reported once.
    fn read(&mut self, conn: &mut PgConnection) -> QueryResult<()> {
        let started = Instant::now();
        let low = match self.low {
            Some(low) => low,
            None => {
                let latest = sql_query("SELECT coalesce(max(seq), 0) AS seq FROM key_events")
                    .get_result::<MaxSeq>(conn)?
                    .seq;
                (latest - self.config.initial_overlap_events).max(0)
            }
        };
        let rows = sql_query("SELECT seq, key_id FROM key_events WHERE seq > $1 ORDER BY seq")
            .bind::<BigInt, _>(low)
            .load::<EventKey>(conn)?;
        let mut highest = low;
        for row in &rows {
            highest = highest.max(row.seq);
            if !self.seen.insert(row.seq) {
                continue;
            }
            if let Some(id) = row.key_id.as_deref().and_then(|id| KeyId::parse(id).ok()) {
                self.listener.key_changed(&id);
            }
        }
        if let Some((_, previous_highest)) = self.reads.back() {
            highest = highest.max(*previous_highest);
        }
        self.reads.push_back((started, highest));
        self.advance_low(low);
        self.previous_read = Some(started);
        self.listener.caught_up(started);
        Ok(())
    }

    /// Moves `low` to the highest number seen by the newest read that began
    /// at least one overlap before the previous read: a number above it may
    /// still commit; one at or below it cannot (docs/events.md).
    fn advance_low(&mut self, current_low: i64) {
        let Some(previous) = self.previous_read else {
            self.low = Some(current_low);
            return;
        };
        let horizon = previous.checked_sub(self.config.overlap);
        let mut low = current_low;
        while let (Some(&(at, highest)), Some(horizon)) = (self.reads.front(), horizon) {
            if at > horizon {
                break;
            }
            low = low.max(highest);
            self.reads.pop_front();
        }
        self.low = Some(low);
        // Forget what lies at or below the new low: it is never read again.
        self.seen = self.seen.split_off(&(low + 1));
    }
}
