//! Another team's actix-web app that protects its own routes with `apikeys`
//! keys, as docs/embedding.md shows it (the guide quotes this file, and a
//! test checks that the quotes are exact).
//!
//! - `GET /v1/users`: a secret key with the `users:read` scope;
//! - `GET /v1/config`: any key of the tenant, publishable keys included
//!   (they are public: a browser may hold one).

use actix_web::{web, App, HttpResponse};
use composition::{Registration, Services, Settings};
use domain::{
    ApiKeys, CreateKey, CreateKeyForError, CreateTenantError, CreatedKey, CreatedTenant, HashKey,
    KeyName, KeyType, Mode, Origin, Scope, Scopes, SystemClock, TenantId,
};
use http_actix::{ApiError, Authenticated, FailureLimitConfig, TrustedProxies};
use infra_postgres::{PgStore, PoolConfig};
use serde_json::json;

// ANCHOR: routes
/// `GET /v1/users`: the tenant's users, for a secret key with `users:read`.
async fn list_users(caller: Authenticated) -> Result<HttpResponse, ApiError> {
    // Publishable keys are public (shipped to browsers): never for user data.
    caller.require_secret()?;
    caller.require_scope(Scope::UsersRead)?;
    Ok(HttpResponse::Ok().json(json!({
        "tenant_id": caller.tenant_id.to_string(),
        "users": [],
    })))
}

/// `GET /v1/config`: public settings, for any key of the tenant.
async fn public_config(caller: Authenticated) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "tenant_id": caller.tenant_id.to_string(),
        "mode": caller.mode.as_str(),
    }))
}

/// The app's routes, protected by the `Authenticated` extractor, which finds
/// the authenticator and the failure limiter in the app data, where
/// `registration` puts them. No middleware is needed.
pub fn app(
    registration: Registration,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .configure(|cfg| registration.register(cfg))
        .route("/v1/users", web::get().to(list_users))
        .route("/v1/config", web::get().to(public_config))
}
// ANCHOR_END: routes

// ANCHOR: compose
/// The key service on PostgreSQL, composed once at start-up.
pub struct Keys {
    /// The connection pool (keep it for `/readyz` and shutdown).
    pub store: PgStore,
    /// The use cases and the authenticator, with their background threads.
    pub services: Services,
}

/// Connects to `database_url`, applies the migrations, checks `hash_key`
/// against the database and starts the services: the same
/// `Services::start` call the `apikeys` program makes. `trusted_proxies`:
/// the reverse proxies in front of the app, whose `X-Forwarded-For` names
/// the client that the failure limit counts (`TrustedProxies::none()`
/// without a proxy).
///
/// # Errors
/// When the URL is invalid, the migrations fail, the hash key is not the
/// database's, or a thread cannot start.
pub fn start_keys(
    database_url: &str,
    hash_key: HashKey,
    trusted_proxies: TrustedProxies,
) -> anyhow::Result<Keys> {
    let store = PgStore::connect(database_url, &PoolConfig::default())?;
    store.migrate()?;
    composition::check_hash_key(&store, &hash_key)?;
    let settings = Settings {
        // 100 failed authentications a minute per client address, then 429.
        failure_limit: FailureLimitConfig {
            trusted_proxies,
            ..FailureLimitConfig::default()
        },
        ..Settings::default()
    };
    let services = Services::start(&store, SystemClock, hash_key, &settings)?;
    Ok(Keys { store, services })
}
// ANCHOR_END: compose

// ANCHOR: tenant
/// Creates a tenant with its first two keys (a live and a test full-access
/// secret key), recorded in the audit log with actor `cli`. Show the keys
/// once (`created.live.secret.expose_secret()`), then drop them.
///
/// # Errors
/// An invalid name, or a storage failure.
pub fn create_tenant(service: &ApiKeys, name: &str) -> Result<CreatedTenant, CreateTenantError> {
    service.create_tenant(&Origin::cli(), name)
}

/// Creates one more key for `tenant` without a calling key: here a live
/// publishable key, for the tenant's web front end.
///
/// # Errors
/// An unknown tenant, the tenant's key limit, or a storage failure.
pub fn create_publishable_key(
    service: &ApiKeys,
    tenant: &TenantId,
    name: KeyName,
) -> Result<CreatedKey, CreateKeyForError> {
    let request = CreateKey {
        name,
        key_type: KeyType::Publishable,
        mode: Some(Mode::Live),
        scopes: Scopes::full(),
        expires_in: None,
        restrictions: domain::KeyRestrictions::default(),
        metadata: domain::Metadata::default(),
    };
    service.create_key_for(&Origin::cli(), tenant, request)
}
// ANCHOR_END: tenant
