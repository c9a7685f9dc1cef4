//! The contract of [`UsageBudget`] and of the limit fields of a key
//! (docs/limits.md), run against every store by
//! [`repository_contract_tests!`](crate::repository_contract_tests): a
//! share is never more than what is left, refills apply when due, returns
//! go back only where they came from, and the limits round-trip.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    missing_docs,
    reason = "test suite: a failed step is a failed check"
)]

use time::Duration;

use crate::events::{EventData, FieldChanges};
use crate::limits::{Credits, LimitsUpdate, RateLimit, Refill, RefillInterval, UsageLimits};
use crate::ports::{CreditShare, RefillDue, WindowShare};
use crate::testing::contract::{events_of, Fixture, Store, T0};

fn limits(credits: u64) -> UsageLimits {
    UsageLimits {
        rate_limit: Some(RateLimit::parse(100, "10s").unwrap()),
        credits: Some(
            Credits::new(
                credits,
                Some(Refill::new(50, RefillInterval::Daily).unwrap()),
            )
            .unwrap(),
        ),
        credits_since: Some(T0),
    }
}

/// Limits are stored with the key, and an update changes them, records
/// them in its event, and starts the credits' period at the update.
pub fn limits_round_trip_and_update_with_their_event(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let mut new = f.key(&tenant);
    new.key.limits = limits(100);
    f.insert(store, &new);
    assert_eq!(
        store.find(&tenant.id, &new.key.id).expect("find"),
        Some(new.key.clone())
    );

    let update = LimitsUpdate {
        rate_limit: Some(None),
        credits: Some(Some(Credits::new(7, None).unwrap())),
    };
    let changes = FieldChanges::between(&new.key, None, None).with_limits(&new.key, &update);
    let at = T0 + Duration::hours(1);
    let updated = f.update(store, &new.key, &changes, at).expect("update");
    let expected = UsageLimits {
        rate_limit: None,
        credits: Some(Credits::new(7, None).unwrap()),
        credits_since: Some(at),
    };
    assert_eq!(updated.limits, expected);
    assert_eq!(
        store
            .find(&tenant.id, &new.key.id)
            .expect("find")
            .map(|k| k.limits),
        Some(expected)
    );
    let events = events_of(store, &tenant.id);
    assert_eq!(events[0].data, EventData::KeyUpdated { changes });
}

/// Shares of a window add up to at most its limit; a return gives uses back.
pub fn window_shares_never_exceed_the_limit(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let new = f.key(&tenant);
    f.insert(store, &new);
    let (id, w) = (new.key.id, T0);
    let take = |want| store.take_window_share(&id, w, 100, want).expect("take");
    assert_eq!(
        take(40),
        WindowShare {
            granted: 40,
            used: 40
        }
    );
    assert_eq!(
        take(70),
        WindowShare {
            granted: 60,
            used: 100
        }
    );
    assert_eq!(
        take(1),
        WindowShare {
            granted: 0,
            used: 100
        }
    );
    // Another window has its own count.
    let next = store
        .take_window_share(&id, w + Duration::seconds(10), 100, 5)
        .expect("take");
    assert_eq!(
        next,
        WindowShare {
            granted: 5,
            used: 5
        }
    );
    // A return gives uses back, never below zero.
    store.return_window_share(&id, w, 30).expect("return");
    assert_eq!(
        take(50),
        WindowShare {
            granted: 30,
            used: 100
        }
    );
    store
        .return_window_share(&id, w + Duration::seconds(10), 500)
        .expect("return");
    let again = store
        .take_window_share(&id, w + Duration::seconds(10), 100, 1000)
        .expect("take");
    assert_eq!(
        again,
        WindowShare {
            granted: 100,
            used: 100
        }
    );
    // A lower limit than the count grants nothing.
    assert_eq!(
        store
            .take_window_share(&id, w, 10, 5)
            .expect("take")
            .granted,
        0
    );
}

/// Shares of credits never exceed them; a due refill applies first; a
/// return goes back only into the period it was taken from.
pub fn credit_shares_never_exceed_the_credits(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let mut new = f.key(&tenant);
    new.key.limits = limits(100);
    f.insert(store, &new);
    let id = new.key.id;
    let share = |granted, remaining, period| CreditShare {
        granted,
        remaining,
        period,
    };
    assert_eq!(
        store.take_credits(&id, 60, None).expect("take"),
        Some(share(60, 40, T0))
    );
    assert_eq!(
        store.take_credits(&id, 60, None).expect("take"),
        Some(share(40, 0, T0))
    );
    assert_eq!(
        store.take_credits(&id, 1, None).expect("take"),
        Some(share(0, 0, T0))
    );
    // A refill that is not due yet (before the period) changes nothing.
    let early = RefillDue {
        amount: 50,
        at: T0 - Duration::days(1),
    };
    assert_eq!(
        store.take_credits(&id, 1, Some(early)).expect("take"),
        Some(share(0, 0, T0))
    );
    // A due refill sets the credits, then the share is taken.
    let day = T0 + Duration::days(1);
    let due = RefillDue {
        amount: 50,
        at: day,
    };
    assert_eq!(
        store.take_credits(&id, 10, Some(due)).expect("take"),
        Some(share(10, 40, day))
    );
    assert_eq!(
        store.take_credits(&id, 10, Some(due)).expect("take"),
        Some(share(10, 30, day))
    );
    // A return into an old period is dropped; into the current one, kept.
    store.return_credits(&id, T0, 5).expect("return");
    store.return_credits(&id, day, 5).expect("return");
    assert_eq!(
        store.take_credits(&id, 1000, Some(due)).expect("take"),
        Some(share(35, 0, day))
    );
    // A key without credits has none to take.
    let plain = f.key(&tenant);
    f.insert(store, &plain);
    assert_eq!(
        store.take_credits(&plain.key.id, 1, None).expect("take"),
        None
    );
}

/// The counts of ended windows are deleted, the current one's kept; a key
/// without a rate limit keeps none.
pub fn ended_windows_are_deleted_and_current_ones_kept(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    // A key limited per 10 s, and one that is not (any more).
    let mut limited = f.key(&tenant);
    limited.key.limits = limits(100);
    f.insert(store, &limited);
    let unlimited = f.key(&tenant);
    f.insert(store, &unlimited);
    let (a, b) = (limited.key.id, unlimited.key.id);
    let take = |id, at| store.take_window_share(id, at, 100, 30).expect("take");
    for start in [T0, T0 + Duration::seconds(10), T0 + Duration::seconds(20)] {
        take(&a, start);
    }
    take(&b, T0 + Duration::seconds(20));

    // Before T0 + 20 s: the windows from T0 and T0 + 10 s have ended (the
    // second exactly then), the one from T0 + 20 s has not.
    let deleted = store
        .delete_ended_windows(T0 + Duration::seconds(20))
        .expect("delete");
    assert_eq!(deleted, 3);
    // The kept window counts on; the deleted ones start again from 0.
    assert_eq!(
        take(&a, T0 + Duration::seconds(20)),
        WindowShare {
            granted: 30,
            used: 60
        }
    );
    assert_eq!(
        take(&a, T0),
        WindowShare {
            granted: 30,
            used: 30
        }
    );
    assert_eq!(
        take(&b, T0 + Duration::seconds(20)),
        WindowShare {
            granted: 30,
            used: 30
        }
    );
    // Again: nothing ended since, but the two counts just made again.
    assert_eq!(
        store
            .delete_ended_windows(T0 + Duration::seconds(20))
            .expect("delete"),
        2
    );
    assert_eq!(
        store
            .delete_ended_windows(T0 + Duration::seconds(20))
            .expect("delete"),
        0
    );
}

/// A rotation stores the successor's limits as given (the use case copies
/// the old key's).
pub fn rotation_stores_the_successors_limits(store: &impl Store) {
    let f = Fixture::new();
    let tenant = f.stored_tenant(store, "Acme");
    let mut old = f.key(&tenant);
    old.key.limits = limits(100);
    f.insert(store, &old);
    let mut successor = f.key(&tenant);
    successor.key.limits = UsageLimits {
        credits_since: Some(T0 + Duration::hours(1)),
        ..limits(100)
    };

    f.rotate(
        store,
        &old.key,
        &successor,
        Duration::hours(1),
        T0 + Duration::hours(1),
    )
    .expect("rotate");

    let stored = store
        .find_by_hash(&successor.hash)
        .expect("find")
        .expect("successor");
    assert_eq!(stored.limits, successor.key.limits);
}
