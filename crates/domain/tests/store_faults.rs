//! How each refusal or failure of a store write reaches the caller, on the
//! in-memory store told to answer it once ([`Fault`]): the error named, and
//! nothing stored, no event, no change reported to the listener.

mod common;

use std::sync::Arc;

use common::{request, Harness, Recorder};
use domain::testing::Fault;
use domain::{
    ActorRefusal, CreateError, CreateTenantError, CreateTenantRepoError, CreatedTenant,
    GracePeriod, InsertError, KeyType, ListEvents, ListEventsError, Origin, Principal,
    RepositoryError, RevokeError, RevokeRepoError, RotateError, RotateRepoError, Scopes,
    TenantRepository, UpdateError, UpdateRepoError,
};

/// A store refusal, and a check of the use case's error.
type Case<R, E> = (R, fn(&E) -> bool);

/// A fresh store with a tenant, its live key as the caller, and a listener
/// of the service's changes.
struct Given {
    h: Harness,
    tenant: CreatedTenant,
    caller: Principal,
    heard: Arc<Recorder>,
    events: usize,
}

impl Given {
    fn new() -> Self {
        let heard = Recorder::new();
        let h = Harness::new();
        let tenant = h.tenant();
        let caller = h.principal(&tenant.live);
        let h = h.with_listener(heard.clone());
        let events = h.events().len();
        Given {
            h,
            tenant,
            caller,
            heard,
            events,
        }
    }

    /// No event was stored and no change reported since [`Given::new`].
    fn assert_nothing_happened(&self, error: &dyn std::fmt::Debug) {
        assert_eq!(self.h.events().len(), self.events, "{error:?}");
        assert_eq!(self.heard.take(), [], "{error:?}");
    }
}

fn unavailable() -> RepositoryError {
    RepositoryError::unavailable("test", "down")
}

fn is_failure(e: &RepositoryError) -> bool {
    matches!(e, RepositoryError::Failure { .. })
}

fn is_unavailable(e: &RepositoryError) -> bool {
    e.is_unavailable()
}

#[test]
fn each_insert_refusal_is_named_and_nothing_is_stored() {
    let cases: [Case<InsertError, CreateError>; 5] = [
        (InsertError::LimitReached, |e| {
            matches!(e, CreateError::LimitReached)
        }),
        (InsertError::ActorRefused(ActorRefusal::Revoked), |e| {
            matches!(e, CreateError::CallerRevoked)
        }),
        // A generated id or hash that collided, a tenant gone: not the
        // caller's doing, a failure.
        (
            InsertError::Duplicate,
            |e| matches!(e, CreateError::Repository(r) if is_failure(r)),
        ),
        (
            InsertError::UnknownTenant,
            |e| matches!(e, CreateError::Repository(r) if is_failure(r)),
        ),
        (
            InsertError::Repository(unavailable()),
            |e| matches!(e, CreateError::Repository(r) if is_unavailable(r)),
        ),
    ];
    for (fault, expected) in cases {
        let g = Given::new();
        g.h.store.fail_next(Fault::Insert(fault));

        let outcome = g.h.service.create(
            &g.caller,
            None,
            request(KeyType::Secret, None, Scopes::full(), None),
        );

        let error = outcome.expect_err("refused");
        assert!(expected(&error), "{error:?}");
        assert_eq!(g.h.store.stored_hashes().len(), 2, "{error:?}");
        g.assert_nothing_happened(&error);
    }
}

#[test]
fn each_update_and_revoke_refusal_is_named_and_nothing_changes() {
    let users_read = || Scopes::parse(["users:read"]).expect("scopes");
    let g = Given::new();
    let (h, caller) = (&g.h, &g.caller);
    let id = g.tenant.test.key.id;
    let update = || {
        h.service
            .update(caller, None, &id, None, Some(users_read()))
    };
    let revoke = || h.service.revoke(caller, None, &id);

    h.store.fail_next(Fault::Update(UpdateRepoError::Revoked));
    assert!(matches!(update(), Err(UpdateError::Revoked)));
    h.store
        .fail_next(Fault::Update(UpdateRepoError::LastFullAccessKey));
    assert!(matches!(update(), Err(UpdateError::LastFullAccessKey)));
    h.store.fail_next(Fault::Update(UpdateRepoError::NotFound));
    assert!(matches!(update(), Err(UpdateError::NotFound)));
    h.store
        .fail_next(Fault::Update(UpdateRepoError::ActorRefused(
            ActorRefusal::Revoked,
        )));
    assert!(matches!(update(), Err(UpdateError::CallerRevoked)));
    h.store
        .fail_next(Fault::Update(UpdateRepoError::Repository(unavailable())));
    assert!(matches!(update(), Err(UpdateError::Repository(e)) if e.is_unavailable()));

    h.store
        .fail_next(Fault::Revoke(RevokeRepoError::LastFullAccessKey));
    assert!(matches!(revoke(), Err(RevokeError::LastFullAccessKey)));
    h.store.fail_next(Fault::Revoke(RevokeRepoError::NotFound));
    assert!(matches!(revoke(), Err(RevokeError::NotFound)));
    h.store
        .fail_next(Fault::Revoke(RevokeRepoError::ActorRefused(
            ActorRefusal::Revoked,
        )));
    assert!(matches!(revoke(), Err(RevokeError::CallerRevoked)));
    h.store
        .fail_next(Fault::Revoke(RevokeRepoError::Repository(unavailable())));
    assert!(matches!(revoke(), Err(RevokeError::Repository(e)) if e.is_unavailable()));

    assert_eq!(h.stored(&g.tenant.test.key), g.tenant.test.key);
    g.assert_nothing_happened(&"update and revoke");
}

#[test]
fn each_rotation_refusal_that_needs_no_second_read_is_named_and_nothing_changes() {
    let cases: [Case<RotateRepoError, RotateError>; 4] = [
        (RotateRepoError::NotFound, |e| {
            matches!(e, RotateError::NotFound)
        }),
        (RotateRepoError::ActorRefused(ActorRefusal::Revoked), |e| {
            matches!(e, RotateError::CallerRevoked)
        }),
        (
            RotateRepoError::Duplicate,
            |e| matches!(e, RotateError::Repository(r) if is_failure(r)),
        ),
        (
            RotateRepoError::Repository(unavailable()),
            |e| matches!(e, RotateError::Repository(r) if is_unavailable(r)),
        ),
    ];
    for (fault, expected) in cases {
        let g = Given::new();
        let old = &g.tenant.test.key;
        g.h.store.fail_next(Fault::Rotate(fault));

        let outcome =
            g.h.service
                .rotate(&g.caller, None, &old.id, GracePeriod::default());

        let error = outcome.expect_err("refused");
        assert!(expected(&error), "{error:?}");
        assert_eq!(g.h.stored(old), *old, "{error:?}");
        g.assert_nothing_happened(&error);
    }
}

#[test]
fn a_tenant_whose_generated_ids_collide_is_a_failure_and_nothing_is_stored() {
    let h = Harness::new();
    h.store
        .fail_next(Fault::CreateTenant(CreateTenantRepoError::Duplicate));

    let outcome = h.service.create_tenant(&Origin::cli(), "Acme");

    assert!(
        matches!(&outcome, Err(CreateTenantError::Repository(e)) if is_failure(e)),
        "{outcome:?}"
    );
    assert_eq!(h.store.list_tenants().expect("list").len(), 0);
    assert!(h.events().is_empty());
}

#[test]
fn the_audit_log_of_an_unreachable_store_is_unavailable() {
    let h = Harness::new();
    let tenant = h.tenant();
    let caller = h.principal(&tenant.live);
    h.store.set_unavailable(true);

    let outcome = h.service.list_events(&caller, ListEvents::default());

    assert!(
        matches!(&outcome, Err(ListEventsError::Repository(e)) if e.is_unavailable()),
        "{outcome:?}"
    );
}

#[test]
fn a_failed_use_record_never_fails_authentication() {
    for fault in [
        unavailable(),
        RepositoryError::failure("record uses", "deadlock detected"),
    ] {
        let h = Harness::new();
        let tenant = h.tenant();
        h.store.fail_next(Fault::RecordUses(fault));

        let key = h
            .authenticate(&tenant.live.secret, &tenant.tenant.id)
            .expect("authenticates despite the failed write");

        assert_eq!(key.id, tenant.live.key.id);
        assert_eq!(h.stored(&key).last_used_at, None, "nothing was written");
    }
}
