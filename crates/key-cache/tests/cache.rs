//! `KeyCache` on a fresh cache: hits answered from memory, keys judged
//! against the clock on every hit, unknown keys remembered, one query for
//! concurrent misses, a bound on size, and invalidation (also of a load that
//! races it).

#![expect(
    clippy::expect_used,
    reason = "test helpers: a failed set-up step is a failed test"
)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{credentials, eventually, unknown_key, Harness, T0};
use domain::testing::SeqSecretSource;
use domain::{AuthError, Authenticator, Credentials, GracePeriod, KeyChangeListener, KeyId};
use key_cache::{CacheConfig, CacheStats, Freshness};

#[test]
fn a_miss_is_not_answered_from_memory_and_authenticate_loads_it_once() {
    let h = Harness::new();
    let t = h.tenant();

    assert!(h.cached(&t.live).is_none(), "nothing is held yet");
    assert_eq!(h.repo.finds(), 0, "a cached answer never asks storage");

    let key = h.auth(&t.live).expect("the key authenticates");
    assert_eq!(key.id, t.live.key.id);
    assert_eq!(h.repo.finds(), 1);

    let again = h.auth(&t.live).expect("still");
    assert_eq!(again.id, t.live.key.id);
    assert_eq!(h.repo.finds(), 1, "the second call is a hit");
    assert_eq!(h.cache.len(), 1);
}

#[test]
fn a_hit_on_a_fresh_cache_is_answered_from_memory() {
    let h = Harness::new();
    let t = h.tenant();
    h.auth(&t.live).expect("load");

    for _ in 0..10 {
        let key = h
            .cached(&t.live)
            .expect("a hit on a fresh cache")
            .expect("a valid key");
        assert_eq!(*key, t.live.key);
    }
    assert_eq!(h.repo.finds(), 1, "only the first load asked storage");
}

#[test]
fn an_expiring_key_is_refused_from_the_cache_at_its_expiry_second() {
    let h = Harness::new();
    let t = h.tenant();
    let key = h.create(&t, Some(time::Duration::minutes(1)));
    let expires_at = T0 + time::Duration::minutes(1);
    assert_eq!(key.key.expires_at, Some(expires_at));
    h.auth(&key).expect("valid at creation");

    h.clock.set(expires_at - time::Duration::seconds(1));
    assert!(matches!(h.cached(&key), Some(Ok(_))));
    // Judged to the second, as the service judges: still valid just before.
    h.clock.set(expires_at - time::Duration::milliseconds(1));
    assert!(matches!(h.cached(&key), Some(Ok(_))));

    h.clock.set(expires_at);
    assert!(matches!(h.cached(&key), Some(Err(AuthError::Expired))));
    assert!(matches!(h.auth(&key), Err(AuthError::Expired)));
    assert!(
        matches!(
            h.node.authenticate(&credentials(&key)),
            Err(AuthError::Expired)
        ),
        "the uncached path agrees"
    );
    assert_eq!(h.repo.finds(), 1, "no invalidation, no reload");
}

#[test]
fn a_rotated_key_works_until_revokes_at_then_is_revoked_without_invalidation() {
    let h = Harness::new();
    let t = h.tenant();
    h.auth(&t.live).expect("load");

    let grace = GracePeriod::new(time::Duration::minutes(2)).expect("grace");
    let rotated = h
        .node
        .rotate(&t.admin, None, &t.live.key.id, grace)
        .expect("rotate");
    let revokes_at = T0 + time::Duration::minutes(2);
    assert_eq!(rotated.old_key_revokes_at, revokes_at);
    // The service told the cache: the next request loads the rotated row.
    assert!(h.cached(&t.live).is_none());
    let old = h.auth(&t.live).expect("in its grace period");
    assert_eq!(old.revokes_at, Some(revokes_at));
    assert_eq!(h.repo.finds(), 2);

    h.clock.set(revokes_at - time::Duration::seconds(1));
    assert!(matches!(h.cached(&t.live), Some(Ok(_))));

    h.clock.set(revokes_at);
    assert!(matches!(h.cached(&t.live), Some(Err(AuthError::Revoked))));
    assert!(matches!(h.auth(&t.live), Err(AuthError::Revoked)));
    assert_eq!(h.repo.finds(), 2, "no invalidation, no reload");

    let successor = Credentials::new(rotated.secret.clone(), t.id);
    let new = h
        .cache
        .authenticate(&successor)
        .expect("the successor works");
    assert_eq!(new.id, rotated.key.id);
}

#[test]
fn a_key_presented_for_another_tenant_is_refused_from_the_cache() {
    let h = Harness::new();
    let a = h.tenant();
    let b = h.tenant();
    h.auth(&a.live).expect("load");
    h.uses.flush(h.repo.as_ref()).expect("flush");
    h.clock.advance(time::Duration::minutes(1));

    let elsewhere = Credentials::new(a.live.secret.clone(), b.id);
    assert!(matches!(
        h.cache.authenticate_cached(&elsewhere),
        Some(Err(AuthError::TenantMismatch))
    ));
    assert!(matches!(
        h.cache.authenticate(&elsewhere),
        Err(AuthError::TenantMismatch)
    ));
    assert_eq!(h.repo.finds(), 1);
    assert!(
        h.uses.is_empty(),
        "a refusal records no use, even when one is due"
    );
}

#[test]
fn an_unknown_key_costs_one_query_however_often_it_is_presented() {
    let h = Harness::new();
    let t = h.tenant();
    let unknown = Credentials::new(unknown_key(1234), t.id);

    for _ in 0..100 {
        assert!(matches!(
            h.cache.authenticate(&unknown),
            Err(AuthError::InvalidKey)
        ));
    }
    assert!(matches!(
        h.cache.authenticate_cached(&unknown),
        Some(Err(AuthError::InvalidKey))
    ));
    assert_eq!(h.repo.finds(), 1);
    assert_eq!(h.cache.len(), 1, "one negative entry");
}

#[test]
fn an_unknown_key_is_asked_for_again_after_negative_ttl() {
    let config = CacheConfig {
        negative_ttl: Duration::from_millis(50),
        ..CacheConfig::default()
    };
    let h = Harness::confirmed(config);
    let t = h.tenant();
    let unknown = Credentials::new(unknown_key(1234), t.id);
    h.auth(&t.live).expect("a known key, kept for `ttl`");

    assert!(matches!(
        h.cache.authenticate(&unknown),
        Err(AuthError::InvalidKey)
    ));
    assert_eq!(h.repo.finds(), 2);
    let asked_again = eventually(Duration::from_secs(10), || {
        let refused = matches!(h.cache.authenticate(&unknown), Err(AuthError::InvalidKey));
        assert!(refused, "an unknown key stays unknown");
        h.repo.finds() > 2
    });
    assert!(asked_again, "the negative entry expired");
    assert!(
        matches!(h.cached(&t.live), Some(Ok(_))),
        "known keys are kept longer"
    );
}

/// A thread answers repeated hits from the entries it found last; those
/// stop answering when the entry expires, as the shared cache's do.
#[test]
fn hits_on_one_thread_stop_at_the_entrys_expiry_known_or_unknown() {
    let config = CacheConfig {
        ttl: Duration::from_millis(80),
        negative_ttl: Duration::from_millis(50),
        ..CacheConfig::default()
    };
    let h = Harness::confirmed(config);
    let t = h.tenant();
    let unknown = Credentials::new(unknown_key(99), t.id);
    h.auth(&t.live).expect("a known key");
    assert!(matches!(
        h.cache.authenticate(&unknown),
        Err(AuthError::InvalidKey)
    ));
    // Hits on this thread, held since.
    assert!(matches!(h.cached(&t.live), Some(Ok(_))));
    assert!(matches!(
        h.cache.authenticate_cached(&unknown),
        Some(Err(AuthError::InvalidKey))
    ));
    let finds = h.repo.finds();

    let both_expired = eventually(Duration::from_secs(10), || {
        h.cached(&t.live).is_none() && h.cache.authenticate_cached(&unknown).is_none()
    });
    assert!(both_expired, "an expired entry is not a hit");
    assert_eq!(
        h.repo.finds(),
        finds,
        "a hit or a non-answer never asks storage"
    );
    h.auth(&t.live).expect("loaded again");
    assert_eq!(h.repo.finds(), finds + 1);
}

#[test]
fn concurrent_misses_of_one_key_share_one_query() {
    const THREADS: usize = 16;
    let h = Harness::new();
    let t = h.tenant();
    let unknown = Credentials::new(unknown_key(1234), t.id);
    h.repo
        .set_after_find(|| std::thread::sleep(Duration::from_millis(50)));

    for (credentials, known) in [(credentials(&t.live), true), (unknown, false)] {
        let before = h.repo.finds();
        let start = Barrier::new(THREADS);
        let results: Vec<_> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        h.cache.authenticate(&credentials)
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("no panic"))
                .collect()
        });
        for result in &results {
            match result {
                Ok(key) => assert!(known && key.id == t.live.key.id),
                Err(e) => assert!(!known && matches!(e, AuthError::InvalidKey)),
            }
        }
        assert_eq!(h.repo.finds() - before, 1, "one query for {THREADS} misses");
    }
}

#[test]
fn the_cache_holds_at_most_max_entries() {
    const MAX: u64 = 8;
    let config = CacheConfig {
        max_entries: MAX,
        ..CacheConfig::default()
    };
    let h = Harness::confirmed(config);
    let t = h.tenant();

    for i in 0..40 {
        let key = h.create(&t, None);
        assert_eq!(h.auth(&key).expect("valid").id, key.key.id);
        let unknown = Credentials::new(unknown_key(1000 + i), t.id);
        assert!(matches!(
            h.cache.authenticate(&unknown),
            Err(AuthError::InvalidKey)
        ));
        assert!(h.cache.len() <= MAX, "{} entries", h.cache.len());
    }
    assert!(h.cache.len() <= MAX);
    assert!(!h.cache.is_empty());
    // Evicted keys still authenticate: they are loaded again.
    assert_eq!(h.auth(&t.live).expect("valid").id, t.live.key.id);
}

#[test]
fn a_change_reported_by_key_changed_is_seen_by_the_next_request() {
    let h = Harness::new();
    let t = h.tenant();
    h.auth(&t.test).expect("load");

    // Another node revokes the key; until the feed reports it, this node's
    // entry is what it loaded.
    h.other_node
        .revoke(&t.admin, None, &t.test.key.id)
        .expect("revoke");
    assert!(matches!(h.cached(&t.test), Some(Ok(_))));

    h.cache.key_changed(&t.test.key.id);
    assert!(h.cached(&t.test).is_none(), "the entry was dropped");
    assert!(matches!(h.auth(&t.test), Err(AuthError::Revoked)));
    assert_eq!(h.repo.finds(), 2);
    assert!(matches!(h.cached(&t.test), Some(Err(AuthError::Revoked))));
    assert_eq!(h.repo.finds(), 2, "the revoked row is held");
}

#[test]
fn a_change_on_this_node_reaches_the_cache_before_the_service_returns() {
    let h = Harness::new();
    let t = h.tenant();
    h.auth(&t.test).expect("load");

    h.node
        .revoke(&t.admin, None, &t.test.key.id)
        .expect("revoke");
    assert!(h.cached(&t.test).is_none());
    assert!(matches!(h.auth(&t.test), Err(AuthError::Revoked)));
}

#[test]
fn a_key_loaded_after_its_invalidation_is_held() {
    let h = Harness::new();
    let t = h.tenant();

    h.cache.key_changed(&t.live.key.id);
    h.auth(&t.live).expect("load");
    assert!(matches!(h.cached(&t.live), Some(Ok(_))));
    h.auth(&t.live).expect("hit");
    assert_eq!(h.repo.finds(), 1, "an older invalidation does not void it");
}

/// The memory of invalidations is bounded (ten per entry allowed); a flood
/// of changes to other keys, before and after a revocation, must not make
/// the revoked key's entry, still held by this thread, look current.
#[test]
fn a_revocation_is_seen_however_many_other_keys_changed_around_it() {
    const MAX: u64 = 2;
    // Several times as many keys as the cache remembers invalidations of
    // (10 per entry).
    const OTHERS: u64 = 5 * MAX * 10;
    const CHANGES_EACH: usize = 8;
    let config = CacheConfig {
        max_entries: MAX,
        ..CacheConfig::default()
    };
    let h = Harness::confirmed(config);
    let t = h.tenant();
    // Given a key made on another node (this cache has heard nothing of it)
    // and held by this thread,
    let key = h.create_by(&h.other_node, &t, None);
    h.auth(&key).expect("load");
    assert!(matches!(h.cached(&key), Some(Ok(_))));
    // Other keys that change often: more of them than the cache remembers
    // invalidations for, each more often than the revoked key.
    let secrets = SeqSecretSource::new(4242);
    let others: Vec<KeyId> = (0..OTHERS).map(|_| KeyId::generate(T0, &secrets)).collect();
    let flood = || {
        for _ in 0..CHANGES_EACH {
            for id in &others {
                h.cache.key_changed(id);
            }
        }
    };

    // when other keys change, it is revoked and reported, and more change,
    flood();
    h.other_node
        .revoke(&t.admin, None, &key.key.id)
        .expect("revoke");
    h.cache.key_changed(&key.key.id);
    flood();

    // then no request is answered from what was held before.
    let cached = h.cached(&key);
    assert!(
        matches!(cached, None | Some(Err(AuthError::Revoked))),
        "{cached:?}"
    );
    assert!(matches!(h.auth(&key), Err(AuthError::Revoked)));
    assert!(matches!(h.cached(&key), Some(Err(AuthError::Revoked))));
}

/// Authenticates the tenant's test key on another thread while, between
/// the repository reading its (valid) row and returning it, the key is
/// revoked elsewhere and the change reported to the cache; the result of
/// that in-flight request.
fn revoke_during_load(h: &Harness, t: &common::Tenant) -> Result<Arc<domain::ApiKey>, AuthError> {
    let read = Arc::new(Barrier::new(2));
    let resume = Arc::new(Barrier::new(2));
    let armed = Arc::new(AtomicBool::new(true));
    {
        let (read, resume, armed) = (read.clone(), resume.clone(), armed.clone());
        h.repo.set_after_find(move || {
            if armed.swap(false, Ordering::SeqCst) {
                // The old row is read; hold it until the change is reported.
                read.wait();
                resume.wait();
            }
        });
    }
    std::thread::scope(|s| {
        let loader = s.spawn(|| h.auth(&t.test));
        read.wait();
        h.other_node
            .revoke(&t.admin, None, &t.test.key.id)
            .expect("revoke");
        h.cache.key_changed(&t.test.key.id);
        resume.wait();
        loader.join().expect("no panic")
    })
}

#[test]
fn an_invalidation_during_a_load_is_not_answered_by_that_load() {
    let h = Harness::new();
    let t = h.tenant();

    let in_flight = revoke_during_load(&h, &t);
    // On a fresh cache the loader sees its entry is older than the
    // invalidation and loads again.
    assert!(
        matches!(in_flight, Err(AuthError::Revoked)),
        "{in_flight:?}"
    );
    assert_eq!(h.repo.finds(), 2);
    assert!(matches!(h.cached(&t.test), Some(Err(AuthError::Revoked))));
    assert_eq!(h.repo.finds(), 2);
}

#[test]
fn an_entry_stored_by_a_load_that_raced_an_invalidation_is_never_served() {
    // Not confirmed yet: the load goes straight to storage and stores what
    // it read, after the invalidation ran.
    let h = Harness::with(CacheConfig::default(), Freshness::new(common::LONG));
    let t = h.tenant();

    let in_flight = revoke_during_load(&h, &t);
    // The request that began before the change may see the old row...
    let old = in_flight.expect("the row it read was valid");
    assert_eq!(old.revokes_at, None);
    assert_eq!(h.repo.finds(), 1);

    // ...but once the cache is trusted, no later one does.
    h.freshness.confirm(std::time::Instant::now());
    assert!(h.cached(&t.test).is_none(), "the stale entry is not served");
    assert!(matches!(h.auth(&t.test), Err(AuthError::Revoked)));
    assert_eq!(h.repo.finds(), 2);
    assert!(matches!(h.cached(&t.test), Some(Err(AuthError::Revoked))));
    assert_eq!(h.repo.finds(), 2);
}

#[test]
fn stats_count_hits_negative_hits_misses_and_invalidations() {
    let h = Harness::new();
    let t = h.tenant();
    let unknown = Credentials::new(unknown_key(77), t.id);
    // Creating the tenant's keys on this node reported them as changes.
    let before = h.cache.stats();
    assert_eq!(
        (before.hits, before.negative_hits, before.misses),
        (0, 0, 0)
    );

    // Given one load of a key and one of an unknown hash,
    h.auth(&t.live).expect("valid");
    assert!(h.cache.authenticate(&unknown).is_err());
    // when each is presented three times more from memory, and the key changes,
    for _ in 0..3 {
        assert!(matches!(h.cached(&t.live), Some(Ok(_))));
        assert!(matches!(
            h.cache.authenticate_cached(&unknown),
            Some(Err(AuthError::InvalidKey))
        ));
    }
    h.cache.key_changed(&t.live.key.id);

    // then the stats say so exactly.
    assert_eq!(
        h.cache.stats(),
        CacheStats {
            hits: 3,
            negative_hits: 3,
            misses: 2,
            invalidations: before.invalidations + 1,
        }
    );
}
