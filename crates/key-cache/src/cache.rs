//! [`KeyCache`]: the keys last seen, by the HMAC of their value, in front of
//! the key repository (docs/cache.md).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use domain::{
    check_credentials, ApiKey, AuthError, Authenticator, Clock, Credentials, HashKey,
    KeyChangeListener, KeyHash, KeyId, KeyLookup, KeyUse, RepositoryError,
};
use moka::sync::Cache;
use time::OffsetDateTime;

use crate::freshness::Freshness;
use crate::invalidations::Invalidations;
use crate::last_used::UseBuffer;
use crate::thread_shortcut::ThreadShortcut;

/// Sizes and times of a [`KeyCache`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Most keys held (known and unknown together); the least useful are
    /// evicted first.
    pub max_entries: u64,
    /// How long a known key is kept after it was loaded (a key in use is
    /// then loaded again). Changes reach the cache through events long
    /// before; this bounds memory and the life of any entry.
    pub ttl: Duration,
    /// How long an unknown key ("no such hash") is remembered, so that a
    /// well-formed random key repeated at high rate costs one query per
    /// period, not one per request.
    pub negative_ttl: Duration,
    /// How long a confirmation by the event feed is trusted (at most 1 s:
    /// a change reaches every node within it).
    pub freshness: Duration,
    /// Opt-in: while the database is unreachable, keep answering from the
    /// cache for this long after the feed's last confirmation. `None` (the
    /// default) fails closed: no confirmation, no cached answer.
    pub serve_stale_for: Option<Duration>,
}

impl Default for CacheConfig {
    /// 100,000 entries, 10 minutes, 30 s for unknown keys, a 1 s freshness
    /// window, no stale answers.
    fn default() -> Self {
        CacheConfig {
            max_entries: 100_000,
            ttl: Duration::from_secs(600),
            negative_ttl: Duration::from_secs(30),
            freshness: Duration::from_secs(1),
            serve_stale_for: None,
        }
    }
}

/// How the cache has answered since it was made (docs/metrics.md), as
/// counters that only grow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Answered from a held key.
    pub hits: u64,
    /// Answered from a held "no key has this hash".
    pub negative_hits: u64,
    /// Looked up in storage (nothing usable was held, or the cache could not
    /// prove itself fresh).
    pub misses: u64,
    /// Changes to keys reported by this node's service or the event feed.
    pub invalidations: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    negative_hits: AtomicU64,
    misses: AtomicU64,
    invalidations: AtomicU64,
}

impl Counters {
    fn answered_from(&self, entry: &Entry) {
        let counter = if entry.key.is_some() {
            &self.hits
        } else {
            &self.negative_hits
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the cache holds for one hash.
#[derive(Debug)]
struct Entry {
    /// The key, or `None`: no key has this hash.
    key: Option<Arc<ApiKey>>,
    /// When the entry stops being used: `ttl` after the load for a key,
    /// `negative_ttl` for no key. The shared cache drops it then, and a
    /// [`ThreadShortcut`] stops answering from it.
    expires_at: Instant,
    /// The invalidation epoch when the load began: an invalidation of the
    /// key after that makes the entry stale, even if it was stored after the
    /// invalidation ran.
    loaded_epoch: u64,
    /// The published epoch at which the entry was last found current: while
    /// no invalidation has been published since, a hit need not look its key
    /// up among the invalidations again.
    checked_epoch: AtomicU64,
    /// Unix seconds of the key's last recorded use (from storage, then from
    /// this node's own recordings): a hit records a use only when this is
    /// due, so a hot key costs one buffered use a minute, not one a request.
    last_use: AtomicI64,
}

type Shared = Arc<Entry>;

/// The cache, as an [`Authenticator`] in front of the key repository and a
/// [`KeyChangeListener`] for the service and the event feed.
pub struct KeyCache {
    keys: Arc<dyn KeyLookup>,
    clock: Arc<dyn Clock>,
    hash_key: HashKey,
    entries: Cache<KeyHash, Shared>,
    /// Per thread, the entries it found last: the hit path's shortcut past
    /// `entries`.
    shortcut: ThreadShortcut<Shared>,
    /// Key id to hash, to drop an entry when an event names its key.
    hashes: Cache<KeyId, KeyHash>,
    /// Key id to the epoch of its last invalidation, kept long enough to
    /// outlive any load that was running when it happened; never lost to
    /// its bound.
    invalidated: Invalidations,
    /// The last invalidation epoch handed out.
    epoch: AtomicU64,
    /// The last epoch whose invalidation is in `invalidated`, every earlier
    /// one with it: invalidations run one at a time (`invalidating`) and
    /// publish their epoch after their record.
    published: AtomicU64,
    invalidating: Mutex<()>,
    freshness: Arc<Freshness>,
    uses: Arc<UseBuffer>,
    config: CacheConfig,
    counters: Counters,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("entries", &self.entries.entry_count())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// An invalidation is remembered this much longer than an entry can live,
/// so that no entry loaded before it can outlive the memory of it.
const INVALIDATION_MARGIN: Duration = Duration::from_secs(60);

/// Invalidations remembered per cache entry allowed. Past that, a burst of
/// changes to keys this node does not hold costs a reload of every held key
/// (the memory's floor rises), never the memory of one it does hold.
const INVALIDATIONS_PER_ENTRY: u64 = 10;

/// Expires an entry at its own `expires_at`.
struct EntryExpiry;

impl moka::Expiry<KeyHash, Shared> for EntryExpiry {
    fn expire_after_create(
        &self,
        _key: &KeyHash,
        value: &Shared,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(value.expires_at.saturating_duration_since(created_at))
    }
}

impl KeyCache {
    /// A cache in front of `keys`, judging keys at `clock`'s time, hashing
    /// presented keys with `hash_key` (the service's), collecting uses in
    /// `uses` and trusting itself while `freshness` is confirmed.
    pub fn new(
        keys: Arc<dyn KeyLookup>,
        clock: Arc<dyn Clock>,
        hash_key: HashKey,
        freshness: Arc<Freshness>,
        uses: Arc<UseBuffer>,
        config: CacheConfig,
    ) -> Self {
        let memory = config.ttl + INVALIDATION_MARGIN;
        // Bounded by `entries`: a mapping goes when its entry is evicted.
        let hashes: Cache<KeyId, KeyHash> = Cache::builder().time_to_live(memory).build();
        let entries = Cache::builder()
            .max_capacity(config.max_entries)
            .expire_after(EntryExpiry)
            .eviction_listener({
                let hashes = hashes.clone();
                move |hash: Arc<KeyHash>, entry: Shared, cause| {
                    if cause == moka::notification::RemovalCause::Replaced {
                        return;
                    }
                    if let Some(key) = &entry.key {
                        if hashes.get(&key.id).as_ref() == Some(&*hash) {
                            hashes.invalidate(&key.id);
                        }
                    }
                }
            })
            .build();
        let invalidated = Invalidations::new(
            config.max_entries.saturating_mul(INVALIDATIONS_PER_ENTRY),
            memory,
        );
        KeyCache {
            keys,
            clock,
            hash_key,
            entries,
            shortcut: ThreadShortcut::new(),
            hashes,
            invalidated,
            epoch: AtomicU64::new(0),
            published: AtomicU64::new(0),
            invalidating: Mutex::new(()),
            freshness,
            uses,
            config,
            counters: Counters::default(),
        }
    }

    /// How the cache has answered so far.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            negative_hits: c.negative_hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            invalidations: c.invalidations.load(Ordering::Relaxed),
        }
    }

    /// The freshness this cache trusts itself by.
    pub fn freshness(&self) -> &Arc<Freshness> {
        &self.freshness
    }

    /// How many hashes are held (after pending evictions ran).
    pub fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Now, to the second, as the service judges keys.
    fn now(&self) -> OffsetDateTime {
        let now = self.clock.now().to_offset(time::UtcOffset::UTC);
        now.replace_nanosecond(0).unwrap_or(now)
    }

    /// Whether `entry` may be used: it was loaded after the last
    /// invalidation of its key.
    ///
    /// An entry found current stays current until an invalidation is
    /// published, so a hit looks the key up among the invalidations only
    /// when one was published since its last check: a hot key costs one
    /// map lookup per change anywhere, not one per request.
    fn current(&self, entry: &Entry) -> bool {
        let Some(key) = &entry.key else {
            return true;
        };
        // Every invalidation up to `published` is in the map (Acquire pairs
        // with the Release in `key_changed`).
        let published = self.published.load(Ordering::Acquire);
        if entry.checked_epoch.load(Ordering::Acquire) >= published {
            return true;
        }
        let current = self.invalidated.is_current(&key.id, entry.loaded_epoch);
        if current {
            entry.checked_epoch.fetch_max(published, Ordering::AcqRel);
        }
        current
    }

    /// Whether `entry` may answer at `instant`: not expired, and loaded
    /// after the last invalidation of its key.
    fn usable(&self, entry: &Entry, instant: Instant) -> bool {
        instant < entry.expires_at && self.current(entry)
    }

    /// Loads the key with `hash` from storage into an entry.
    fn load(&self, hash: &KeyHash) -> Result<Shared, RepositoryError> {
        // Taken before the query: an invalidation while it runs is newer.
        let loaded_epoch = self.epoch.load(Ordering::Acquire) + 1;
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        let key = self.keys.find_by_hash(hash)?;
        let last_use = key
            .as_ref()
            .and_then(|k| k.last_used_at)
            .map_or(i64::MIN, OffsetDateTime::unix_timestamp);
        if let Some(key) = &key {
            self.hashes.insert(key.id, *hash);
        }
        let life = if key.is_some() {
            self.config.ttl
        } else {
            self.config.negative_ttl
        };
        Ok(Arc::new(Entry {
            expires_at: Instant::now() + life,
            key: key.map(Arc::new),
            loaded_epoch,
            checked_epoch: AtomicU64::new(0),
            last_use: AtomicI64::new(last_use),
        }))
    }

    /// The entry for `hash`, loading it once however many callers ask at the
    /// same time.
    fn entry(&self, hash: &KeyHash) -> Result<Shared, RepositoryError> {
        let mut loaded = false;
        let entry = self
            .entries
            .try_get_with(*hash, || {
                loaded = true;
                self.load(hash)
            })
            .map_err(shared_error)?;
        if self.current(&entry) {
            if !loaded {
                // Held already (another caller loaded it meanwhile).
                self.counters.answered_from(&entry);
            }
            return Ok(entry);
        }
        // Loaded before its key's last invalidation: load again.
        self.entries.invalidate(hash);
        let entry = self.load(hash)?;
        self.entries.insert(*hash, entry.clone());
        Ok(entry)
    }

    /// Judges `entry` for the request and records the use when due.
    fn verdict(
        &self,
        entry: &Entry,
        credentials: &Credentials,
        now: OffsetDateTime,
    ) -> Result<Arc<ApiKey>, AuthError> {
        check_credentials(entry.key.as_deref(), credentials, now)?;
        let key = entry.key.clone().ok_or(AuthError::InvalidKey)?;
        self.note_use(entry, &key, now);
        Ok(key)
    }

    /// Buffers a use of `key` if its last use is due (one per key per
    /// minute on this node; storage applies the rule across nodes).
    fn note_use(&self, entry: &Entry, key: &ApiKey, now: OffsetDateTime) {
        let due_before = ApiKey::last_used_due_before(now).unix_timestamp();
        let last = entry.last_use.load(Ordering::Relaxed);
        if last > due_before {
            return;
        }
        let claimed = entry
            .last_use
            .compare_exchange(
                last,
                now.unix_timestamp(),
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok();
        if claimed {
            self.uses.push(KeyUse::of(key, now));
        }
    }
}

/// `try_get_with` shares one loader error among all waiters.
fn shared_error(e: Arc<RepositoryError>) -> RepositoryError {
    if e.is_unavailable() {
        RepositoryError::unavailable("loading a key into the cache", e)
    } else {
        RepositoryError::failure("loading a key into the cache", e)
    }
}

impl Authenticator for KeyCache {
    /// A hit on a confirmed-fresh cache, judged now; `None` otherwise.
    fn authenticate_cached(
        &self,
        credentials: &Credentials,
    ) -> Option<Result<Arc<ApiKey>, AuthError>> {
        let instant = Instant::now();
        if !self.freshness.is_fresh(instant) {
            return None;
        }
        let hash = self.hash_key.hash(credentials.key());
        let entry = match self.shortcut.get(&hash) {
            Some(entry) if self.usable(&entry, instant) => entry,
            _ => {
                let entry = self.entries.get(&hash)?;
                if !self.usable(&entry, instant) {
                    return None;
                }
                self.shortcut.put(hash, entry.clone());
                entry
            }
        };
        self.counters.answered_from(&entry);
        Some(self.verdict(&entry, credentials, self.now()))
    }

    /// Through the cache while it is fresh (one query per key, shared by
    /// concurrent misses); straight to storage while it is not, falling back
    /// to the cache only if `serve_stale_for` allows and storage is down.
    fn authenticate(&self, credentials: &Credentials) -> Result<Arc<ApiKey>, AuthError> {
        let hash = self.hash_key.hash(credentials.key());
        let now = self.now();
        if self.freshness.is_fresh(Instant::now()) {
            let entry = self.entry(&hash)?;
            return self.verdict(&entry, credentials, now);
        }
        match self.load(&hash) {
            Ok(entry) => {
                self.entries.insert(hash, entry.clone());
                self.verdict(&entry, credentials, now)
            }
            Err(e) if e.is_unavailable() => {
                let stale = self.config.serve_stale_for.and_then(|bound| {
                    self.freshness
                        .confirmed_within(Instant::now(), bound)
                        .then(|| self.entries.get(&hash))
                        .flatten()
                        .filter(|entry| self.current(entry))
                });
                match stale {
                    Some(entry) => {
                        self.counters.answered_from(&entry);
                        tracing::warn!("database unreachable: answering from the cache");
                        self.verdict(&entry, credentials, now)
                    }
                    None => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

impl KeyChangeListener for KeyCache {
    fn key_changed(&self, id: &KeyId) {
        self.counters.invalidations.fetch_add(1, Ordering::Relaxed);
        // One at a time, so that epochs are published in order: a reader
        // that sees epoch n published finds every invalidation up to n.
        let _one = self
            .invalidating
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        self.invalidated.record(*id, epoch, Instant::now());
        if let Some(hash) = self.hashes.get(id) {
            self.entries.invalidate(&hash);
        }
        self.published.store(epoch, Ordering::Release);
    }

    fn caught_up(&self, as_of: Instant) {
        self.freshness.confirm(as_of);
    }
}
