//! The usage meter (docs/limits.md) over the in-memory store: several
//! meters stand for several nodes sharing one store. A use is admitted only
//! against a share the store granted, so the admitted uses of a window (or
//! of credits) never exceed the budget, whatever the interleaving.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test: a failed step is a failed test"
)]

mod common;

use std::sync::Arc;
use std::thread;

use common::{request, Harness};
use domain::testing::TestClock;
use domain::{
    Cost, CreateKey, Credits, KeyId, KeyType, RateLimit, Refill, RefillInterval, RefusalCode,
    Scopes, UsageLimits, UsageMeter,
};
use time::macros::datetime;

/// A key of the harness's tenant with `limits`, as the store holds it.
fn limited(h: &Harness, limits: UsageLimits) -> (KeyId, UsageLimits) {
    let tenant = h.tenant();
    let caller = h.principal(&tenant.live);
    let created = h.create(
        &caller,
        CreateKey {
            limits,
            ..request(KeyType::Secret, None, Scopes::full(), None)
        },
    );
    let stored = h.stored(&created.key);
    (stored.id, stored.limits)
}

fn rate(limit: u64, window: &str) -> UsageLimits {
    UsageLimits {
        rate_limit: Some(RateLimit::parse(limit, window).unwrap()),
        ..UsageLimits::default()
    }
}

fn credits(remaining: u64, refill: Option<Refill>) -> UsageLimits {
    UsageLimits {
        credits: Some(Credits::new(remaining, refill).unwrap()),
        ..UsageLimits::default()
    }
}

fn meters(h: &Harness, n: usize) -> Vec<Arc<UsageMeter>> {
    (0..n)
        .map(|_| {
            Arc::new(UsageMeter::new(
                Arc::new(h.store.clone()),
                Arc::new(h.clock.clone()),
            ))
        })
        .collect()
}

/// Spends one use on `meter` until it is refused; how many were admitted.
fn spend_until_refused(meter: &UsageMeter, key: KeyId, limits: UsageLimits) -> (u64, RefusalCode) {
    let mut admitted = 0;
    loop {
        let spent = meter.spend(&key, &limits, Cost::ONE).unwrap().unwrap();
        match spent.verdict {
            Ok(_) => admitted += 1,
            Err(refusal) => return (admitted, refusal.code),
        }
    }
}

/// A key limited to 3 uses per 10 s, used up 4 s into the window of
/// 10:00:00 by one node's meter.
fn used_up_at_10_00_04() -> (Harness, KeyId, UsageLimits, Arc<UsageMeter>) {
    let h = Harness::new();
    h.clock.set(datetime!(2026-12-03 10:00:04 UTC));
    let (key, limits) = limited(&h, rate(3, "10s"));
    let meter = meters(&h, 1).remove(0);
    assert_eq!(
        spend_until_refused(&meter, key, limits),
        (3, RefusalCode::RateLimited)
    );
    (h, key, limits, meter)
}

#[test]
fn concurrent_nodes_admit_exactly_the_limit_of_a_window_and_no_more() {
    // Given a key limited to 100 uses per 10 s and four nodes.
    let h = Harness::new();
    let (key, limits) = limited(&h, rate(100, "10s"));
    let meters = meters(&h, 4);

    // When each node's eight threads use it until refused.
    let handles: Vec<_> = meters
        .iter()
        .flat_map(|m| (0..8).map(move |_| m.clone()))
        .map(|m| thread::spawn(move || spend_until_refused(&m, key, limits)))
        .collect();
    let outcomes: Vec<(u64, RefusalCode)> =
        handles.into_iter().map(|t| t.join().unwrap()).collect();

    // Then exactly the limit was admitted, over all nodes, and every refusal
    // is rate_limited.
    assert_eq!(outcomes.iter().map(|o| o.0).sum::<u64>(), 100);
    assert!(outcomes.iter().all(|o| o.1 == RefusalCode::RateLimited));
}

#[test]
fn the_next_window_has_a_fresh_budget_and_refusals_say_when_it_starts() {
    // Given a key limited to 3 uses per 10 s, used up 4 s into a window.
    let (h, key, limits, meter) = used_up_at_10_00_04();
    let meter = &meter;

    // Then the refusal says 6 s, and reports nothing left.
    let refusal = meter
        .spend(&key, &limits, Cost::ONE)
        .unwrap()
        .unwrap()
        .verdict
        .unwrap_err();
    assert_eq!(refusal.retry_after, Some(6));
    assert_eq!(
        (
            refusal.report.limit,
            refusal.report.remaining,
            refusal.report.reset
        ),
        (3, 0, 6)
    );

    // When the window ends (exactly on the boundary).
    h.clock.set(datetime!(2026-12-03 10:00:10 UTC));

    // Then the next window admits 3 again.
    assert_eq!(
        spend_until_refused(meter, key, limits),
        (3, RefusalCode::RateLimited)
    );
}

#[test]
fn a_cost_above_the_limit_is_refused_and_a_cost_of_zero_spends_nothing() {
    let h = Harness::new();
    let (key, limits) = limited(&h, rate(5, "1m"));
    let meter = &meters(&h, 1)[0];
    let too_big = meter
        .spend(&key, &limits, Cost::new(6).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(too_big.verdict.unwrap_err().code, RefusalCode::RateLimited);
    for _ in 0..10 {
        let free = meter
            .spend(&key, &limits, Cost::new(0).unwrap())
            .unwrap()
            .unwrap();
        assert!(free.verdict.is_ok());
    }
    let five = meter
        .spend(&key, &limits, Cost::new(5).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(five.verdict.unwrap().remaining, 0);
    assert!(meter
        .spend(&key, &limits, Cost::ONE)
        .unwrap()
        .unwrap()
        .verdict
        .is_err());
}

#[test]
fn credits_run_out_across_nodes_and_are_refilled_at_midnight_utc() {
    // Given a key with 50 credits refilled daily to 20, and three nodes.
    let h = Harness::new();
    h.clock.set(datetime!(2028-02-28 23:00 UTC));
    let refill = Refill::new(20, RefillInterval::Daily).unwrap();
    let (key, limits) = limited(&h, credits(50, Some(refill)));
    let meters = meters(&h, 3);

    // When every node spends until refused.
    let admitted: u64 = meters
        .iter()
        .map(|m| spend_until_refused(m, key, limits))
        .inspect(|o| assert_eq!(o.1, RefusalCode::UsageExceeded))
        .map(|o| o.0)
        .sum();

    // Then exactly the 50 credits were admitted, and a refusal says when
    // the refill comes (in an hour).
    assert_eq!(admitted, 50);
    let refusal = meters[0]
        .spend(&key, &limits, Cost::ONE)
        .unwrap()
        .unwrap()
        .verdict
        .unwrap_err();
    assert_eq!(refusal.retry_after, Some(3600));

    // When midnight passes (into a leap day).
    h.clock.set(datetime!(2028-02-29 00:00 UTC));

    // Then the nodes together admit the refill's 20, no more.
    let admitted: u64 = meters
        .iter()
        .map(|m| spend_until_refused(m, key, limits).0)
        .sum();
    assert_eq!(admitted, 20);
}

#[test]
fn credits_without_refill_are_refused_without_retry_after() {
    let h = Harness::new();
    let (key, limits) = limited(&h, credits(2, None));
    let meter = &meters(&h, 1)[0];
    assert_eq!(
        spend_until_refused(meter, key, limits),
        (2, RefusalCode::UsageExceeded)
    );
    let refusal = meter
        .spend(&key, &limits, Cost::ONE)
        .unwrap()
        .unwrap()
        .verdict
        .unwrap_err();
    assert_eq!(refusal.retry_after, None);
}

#[test]
fn a_graceful_stop_gives_unspent_shares_back_to_the_other_nodes() {
    // Given a node that spent two uses of a key's credits: its first share
    // is 1, its second sized to its pace (it holds more than it spent).
    let h = Harness::new();
    let (key, limits) = limited(&h, credits(1000, None));
    let meters = meters(&h, 2);
    for _ in 0..2 {
        let spent = meters[0].spend(&key, &limits, Cost::ONE).unwrap().unwrap();
        assert!(spent.verdict.is_ok());
    }
    let held = 1000 - 2 - h.stored_limits(key).credits.unwrap().remaining();
    assert!(held > 0);

    // When it stops gracefully.
    let returned = meters[0].release().unwrap();

    // Then what it held is back, and the other node can spend everything
    // but the two uses.
    assert_eq!(returned, held);
    assert_eq!(h.stored_limits(key).credits.unwrap().remaining(), 998);
    assert_eq!(spend_until_refused(&meters[1], key, limits).0, 998);
}

#[test]
fn both_limits_are_spent_together_or_not_at_all() {
    // Given a key with 10 uses per minute and 3 credits.
    let h = Harness::new();
    let limits = UsageLimits {
        rate_limit: Some(RateLimit::parse(10, "1m").unwrap()),
        credits: Some(Credits::new(3, None).unwrap()),
        credits_since: None,
    };
    let (key, limits) = limited(&h, limits);
    let meter = &meters(&h, 1)[0];

    // When the credits run out first.
    assert_eq!(
        spend_until_refused(meter, key, limits),
        (3, RefusalCode::UsageExceeded)
    );

    // Then the refusals spent nothing of the window: 7 uses are left in it.
    let report = meter
        .spend(&key, &limits, Cost::new(0).unwrap())
        .unwrap()
        .unwrap()
        .verdict
        .unwrap();
    assert_eq!((report.limit, report.remaining), (10, 7));
}

#[test]
fn storage_down_is_an_error_not_an_admission() {
    let h = Harness::new();
    let (key, limits) = limited(&h, rate(10, "1s"));
    let meter = &meters(&h, 1)[0];
    h.store.set_unavailable(true);
    assert!(meter
        .spend(&key, &limits, Cost::ONE)
        .unwrap_err()
        .is_unavailable());
    assert_eq!(meter.spend_cached(&key, &limits, Cost::ONE), None);
}

#[test]
fn an_unlimited_key_spends_nothing_and_needs_no_storage() {
    let h = Harness::new();
    let meter = UsageMeter::new(
        Arc::new(h.store.clone()),
        Arc::new(TestClock::at(datetime!(2026-12-03 0:00 UTC))),
    );
    h.store.set_unavailable(true);
    let key = KeyId::parse("key_01HQ2ZJ8N0000000000000000C").unwrap();
    assert_eq!(
        meter.spend_cached(&key, &UsageLimits::default(), Cost::ONE),
        Some(None)
    );
    assert_eq!(
        meter
            .spend(&key, &UsageLimits::default(), Cost::ONE)
            .unwrap(),
        None
    );
}

#[test]
fn a_window_count_is_deleted_a_minute_after_its_window_ends() {
    // Given a key limited to 3 uses per 10 s, used up in the window of
    // 10:00:00, on one node,
    let (h, key, limits, meter) = used_up_at_10_00_04();
    let meter = &meter;
    // and another node, whose clock is behind, still inside that window.
    let behind = UsageMeter::new(Arc::new(h.store.clone()), Arc::new(h.clock.clone()));

    // Within a minute of the window's end its count is kept: the node
    // behind is refused as it should be.
    h.clock.set(datetime!(2026-12-03 10:01:09 UTC));
    assert_eq!(meter.delete_ended_windows().unwrap(), 0);
    h.clock.set(datetime!(2026-12-03 10:00:09 UTC));
    assert_eq!(
        spend_until_refused(&behind, key, limits),
        (0, RefusalCode::RateLimited)
    );

    // A minute after, it is deleted.
    h.clock.set(datetime!(2026-12-03 10:01:10 UTC));
    assert_eq!(meter.delete_ended_windows().unwrap(), 1);
    assert_eq!(meter.delete_ended_windows().unwrap(), 0);
}
