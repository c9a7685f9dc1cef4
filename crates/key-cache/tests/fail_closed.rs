//! Fail closed: the cache answers only while the event feed's confirmation
//! ([`Freshness`]) is within its window; otherwise every request asks
//! storage, and an unreachable store is a refusal, unless `serve_stale_for`
//! allows answering from the cache for a bounded time.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, is_unavailable, Harness, LONG, T0};
use domain::{AuthError, Authenticator, Credentials, KeyChangeListener};
use key_cache::{CacheConfig, Freshness};

/// Time enough for a short window or bound to pass, on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(10);

// ---- Freshness on its own, at explicit instants ----

#[test]
fn a_confirmation_is_trusted_for_the_window_and_no_longer() {
    let f = Freshness::new(Duration::from_secs(1));
    let t0 = Instant::now();
    assert!(!f.is_fresh(t0), "never confirmed");
    assert!(!f.confirmed_within(t0, LONG), "never confirmed");

    f.confirm(t0);
    assert!(f.is_fresh(t0));
    assert!(f.is_fresh(t0 + Duration::from_millis(999)));
    assert!(!f.is_fresh(t0 + Duration::from_secs(1)));
    assert!(f.confirmed_within(t0 + Duration::from_secs(5), Duration::from_secs(6)));
    assert!(!f.confirmed_within(t0 + Duration::from_secs(6), Duration::from_secs(6)));
}

#[test]
fn an_older_confirmation_does_not_move_it_back_and_reset_forgets() {
    let f = Freshness::new(Duration::from_secs(1));
    let t0 = Instant::now();
    f.confirm(t0 + Duration::from_secs(2));
    f.confirm(t0);
    assert!(f.is_fresh(t0 + Duration::from_millis(2999)));

    f.reset();
    assert!(!f.is_fresh(t0 + Duration::from_secs(2)));
    f.confirm(t0);
    assert!(f.is_fresh(t0), "confirmable again after a reset");
}

#[test]
fn a_confirmation_from_before_the_freshness_was_made_is_not_moved_forward() {
    let Some(past) = Instant::now().checked_sub(Duration::from_secs(10)) else {
        return; // the machine booted less than 10 s ago
    };
    let f = Freshness::new(Duration::from_secs(1));
    f.confirm(past);
    assert!(
        !f.is_fresh(Instant::now()),
        "a 10-second-old confirmation is outside a 1-second window"
    );
}

#[test]
fn caught_up_confirms_the_cache() {
    let h = Harness::with(CacheConfig::default(), Freshness::new(LONG));
    let t = h.tenant();
    h.auth(&t.live).expect("load");
    assert!(h.cached(&t.live).is_none(), "not confirmed yet");

    h.cache.caught_up(Instant::now());
    assert!(h.freshness.is_fresh(Instant::now()));
    assert!(matches!(h.cached(&t.live), Some(Ok(_))));
}

// ---- Not fresh: storage every time ----

#[test]
fn a_cache_never_confirmed_asks_storage_every_time() {
    let h = Harness::with(CacheConfig::default(), Freshness::new(LONG));
    let t = h.tenant();

    for n in 1..=5 {
        assert_eq!(h.auth(&t.live).expect("valid").id, t.live.key.id);
        assert!(h.cached(&t.live).is_none());
        assert_eq!(h.repo.finds(), n);
    }
}

#[test]
fn a_confirmation_older_than_the_window_is_not_trusted() {
    let h = Harness::with(
        CacheConfig::default(),
        Freshness::new(Duration::from_millis(20)),
    );
    h.freshness.confirm(Instant::now());
    let t = h.tenant();
    h.auth(&t.live).expect("load");
    assert!(eventually(PATIENCE, || !h
        .freshness
        .is_fresh(Instant::now())));

    let before = h.repo.finds();
    for n in 1..=3 {
        assert!(h.cached(&t.live).is_none());
        h.auth(&t.live).expect("valid");
        assert_eq!(h.repo.finds(), before + n);
    }
}

#[test]
fn without_a_confirmation_an_unreachable_store_is_a_refusal_not_a_cached_yes() {
    let h = Harness::new();
    let t = h.tenant();
    h.auth(&t.live).expect("held while fresh");
    // The feed lost track.
    h.freshness.reset();
    h.store.set_unavailable(true);

    assert!(h.cached(&t.live).is_none());
    let refused = h.auth(&t.live);
    assert!(is_unavailable(&refused), "{refused:?}");

    h.store.set_unavailable(false);
    assert_eq!(h.auth(&t.live).expect("back").id, t.live.key.id);
}

#[test]
fn a_fresh_cache_answers_hits_while_the_store_is_unreachable_but_not_misses() {
    let h = Harness::new();
    let t = h.tenant();
    h.auth(&t.live).expect("load");
    h.store.set_unavailable(true);

    assert!(matches!(h.cached(&t.live), Some(Ok(_))));
    assert_eq!(h.auth(&t.live).expect("a hit").id, t.live.key.id);
    let miss = h.auth(&t.test);
    assert!(is_unavailable(&miss), "{miss:?}");
    let unknown = Credentials::new(common::unknown_key(1234), t.id);
    let miss = h.cache.authenticate(&unknown);
    assert!(is_unavailable(&miss), "not remembered as unknown: {miss:?}");

    // The failed loads left nothing behind.
    h.store.set_unavailable(false);
    assert_eq!(h.auth(&t.test).expect("loaded now").id, t.test.key.id);
    assert!(matches!(
        h.cache.authenticate(&unknown),
        Err(AuthError::InvalidKey)
    ));
}

// ---- Opt-in stale answers ----

/// A cache whose confirmation goes out of its 10 ms window almost at once,
/// answering stale for `serve_stale_for`.
fn stale_harness(serve_stale_for: Duration) -> Harness {
    let config = CacheConfig {
        serve_stale_for: Some(serve_stale_for),
        ..CacheConfig::default()
    };
    Harness::with(config, Freshness::new(Duration::from_millis(10)))
}

#[test]
fn serve_stale_answers_from_the_cache_within_its_bound() {
    let h = stale_harness(LONG);
    h.freshness.confirm(Instant::now());
    let t = h.tenant();
    let expiring = h.create(&t, Some(time::Duration::minutes(1)));
    h.auth(&t.live).expect("load");
    h.auth(&expiring).expect("load");
    h.store.set_unavailable(true);
    assert!(eventually(PATIENCE, || !h
        .freshness
        .is_fresh(Instant::now())));

    assert_eq!(h.auth(&t.live).expect("stale, allowed").id, t.live.key.id);
    assert!(h.cached(&t.live).is_none(), "never on the executor thread");
    // Stale answers are judged at the clock's time too.
    h.clock.set(T0 + time::Duration::minutes(1));
    assert!(matches!(h.auth(&expiring), Err(AuthError::Expired)));
    // A key it does not hold is still a refusal.
    let miss = h.auth(&t.test);
    assert!(is_unavailable(&miss), "{miss:?}");
}

#[test]
fn serve_stale_stops_once_its_bound_has_passed() {
    let bound = Duration::from_millis(200);
    let h = stale_harness(bound);
    let t = h.tenant();
    let confirmed = Instant::now();
    h.freshness.confirm(confirmed);
    h.auth(&t.live).expect("load");
    h.store.set_unavailable(true);

    let stopped = eventually(PATIENCE, || match h.auth(&t.live) {
        Ok(key) => {
            assert_eq!(key.id, t.live.key.id);
            false
        }
        Err(e) => {
            assert!(
                matches!(&e, AuthError::Repository(r) if r.is_unavailable()),
                "{e:?}"
            );
            true
        }
    });
    assert!(stopped, "stale answers stop");
    assert!(confirmed.elapsed() >= bound, "not before the bound passed");
    assert!(is_unavailable(&h.auth(&t.live)), "and stay stopped");
}

#[test]
fn without_serve_stale_nothing_is_answered_stale() {
    let h = Harness::with(
        CacheConfig::default(),
        Freshness::new(Duration::from_millis(10)),
    );
    h.freshness.confirm(Instant::now());
    let t = h.tenant();
    h.auth(&t.live).expect("load");
    h.store.set_unavailable(true);
    assert!(eventually(PATIENCE, || !h
        .freshness
        .is_fresh(Instant::now())));

    // The confirmation is milliseconds old, but stale answers are off.
    assert!(h
        .freshness
        .confirmed_within(Instant::now(), Duration::from_secs(3600)));
    assert!(is_unavailable(&h.auth(&t.live)));
}
