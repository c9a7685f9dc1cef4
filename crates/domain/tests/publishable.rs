//! Publishable keys are public (docs/api.md, "Scopes"): they never hold or
//! satisfy a sensitive scope (every `:write`, `audit-logs:read`,
//! `webhooks:read`), and their `*` stands for the other scopes only.

#![allow(clippy::expect_used, reason = "tests")]

mod common;

use common::{request, Harness};
use domain::{
    AccessError, CreateError, CreateKeyForError, KeyType, Mode, Origin, Principal, Scope, Scopes,
    UpdateError,
};

const SENSITIVE: [Scope; 6] = [
    Scope::UsersWrite,
    Scope::SessionsWrite,
    Scope::OrganizationsWrite,
    Scope::WebhooksRead,
    Scope::WebhooksWrite,
    Scope::AuditLogsRead,
];

#[test]
fn the_sensitive_scopes_are_the_writes_audit_logs_and_webhooks_read() {
    let sensitive: Vec<Scope> = Scope::ALL
        .into_iter()
        .filter(|s| s.is_sensitive())
        .collect();
    assert_eq!(sensitive, SENSITIVE);
}

#[test]
fn a_publishable_key_with_star_satisfies_only_the_other_scopes() {
    let h = Harness::new();
    let tenant = h.tenant();
    let admin = h.principal(&tenant.live);
    let public = h.create_kind(&admin, KeyType::Publishable, Mode::Live);
    assert_eq!(public.key.scopes, Scopes::full());
    let principal = h.principal(&public);
    for scope in Scope::ALL.into_iter().filter(|s| *s != Scope::All) {
        let expected = if scope.is_sensitive() {
            Err(AccessError::InsufficientScope { required: scope })
        } else {
            Ok(())
        };
        assert_eq!(principal.require_scope(scope), expected, "{scope}");
        assert_eq!(
            public.key.scopes.allow_for(KeyType::Publishable, scope),
            !scope.is_sensitive()
        );
        // A secret key with `*` has every scope.
        assert!(public.key.scopes.allow_for(KeyType::Secret, scope));
    }
}

#[test]
fn a_stored_publishable_key_with_a_write_scope_never_satisfies_it() {
    // Keys created before the rule keep what they hold in the database.
    let h = Harness::new();
    let tenant = h.tenant();
    let admin = h.principal(&tenant.live);
    let public = h.create_kind(&admin, KeyType::Publishable, Mode::Live);
    let mut legacy = public.key.clone();
    legacy.scopes = Scopes::new([Scope::UsersRead, Scope::UsersWrite]).expect("scopes");
    let principal = Principal::of(&legacy);
    assert_eq!(principal.require_scope(Scope::UsersRead), Ok(()));
    assert_eq!(
        principal.require_scope(Scope::UsersWrite),
        Err(AccessError::InsufficientScope {
            required: Scope::UsersWrite
        })
    );
}

#[test]
fn creating_a_publishable_key_with_a_sensitive_scope_is_refused() {
    let h = Harness::new();
    let tenant = h.tenant();
    let admin = h.principal(&tenant.live);
    for scope in SENSITIVE {
        let scopes = Scopes::new([Scope::UsersRead, scope]).expect("scopes");
        let outcome = h.service.create(
            &admin,
            None,
            request(KeyType::Publishable, None, scopes, None),
        );
        assert!(
            matches!(outcome, Err(CreateError::SensitiveScope(s)) if s == scope),
            "{scope}: {outcome:?}"
        );
        // The same scopes are fine on a secret key.
        h.create(&admin, request(KeyType::Secret, None, scopes, None));
    }
    let message = CreateError::SensitiveScope(Scope::UsersWrite).to_string();
    assert_eq!(
        message,
        "a publishable key cannot hold users:write: it is public by design"
    );
    // The operator's command line follows the same rule.
    let outcome = h.service.create_key_for(
        &Origin::cli(),
        &tenant.tenant.id,
        request(
            KeyType::Publishable,
            None,
            Scopes::new([Scope::AuditLogsRead]).expect("scopes"),
            None,
        ),
    );
    assert!(matches!(
        outcome,
        Err(CreateKeyForError::SensitiveScope(Scope::AuditLogsRead))
    ));
    // Nothing was written for the refusals: the tenant's two seed keys and
    // the one publishable and six secret keys created above.
    assert_eq!(h.events().len(), 1 + 2 + 6);
}

#[test]
fn re_scoping_a_publishable_key_with_a_sensitive_scope_is_refused() {
    let h = Harness::new();
    let tenant = h.tenant();
    let admin = h.principal(&tenant.live);
    let public = h.create(
        &admin,
        request(
            KeyType::Publishable,
            None,
            Scopes::new([Scope::UsersRead]).expect("scopes"),
            None,
        ),
    );
    let events = h.events().len();
    let outcome = h.service.update(
        &admin,
        None,
        &public.key.id,
        None,
        Some(Scopes::new([Scope::SessionsWrite]).expect("scopes")),
    );
    assert!(
        matches!(
            outcome,
            Err(UpdateError::SensitiveScope(Scope::SessionsWrite))
        ),
        "{outcome:?}"
    );
    assert_eq!(h.events().len(), events);
    assert_eq!(h.stored(&public.key).scopes, public.key.scopes);
    // `*` is allowed: it stands for the other scopes.
    let widened = h
        .service
        .update(&admin, None, &public.key.id, None, Some(Scopes::full()))
        .expect("update");
    assert_eq!(widened.key.scopes, Scopes::full());
}
