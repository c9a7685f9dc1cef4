//! Runs the example app on `127.0.0.1:8081` against `DATABASE_URL` with the
//! hash key `APIKEYS_HASH_KEY` (64 hex digits), creating a tenant named
//! `Example` on its first start and printing its keys once.
//! `TRUSTED_PROXIES` (optional): the reverse proxies in front of it, such
//! as `10.0.0.0/8`.

// ANCHOR: main
use actix_web::HttpServer;
use anyhow::Context;
use domain::{HashKey, KeyName};
use http_actix::TrustedProxies;

fn main() -> anyhow::Result<()> {
    let database_url = std::env::var("DATABASE_URL").context("set DATABASE_URL")?;
    let hash_key = std::env::var("APIKEYS_HASH_KEY").context("set APIKEYS_HASH_KEY")?;
    let hash_key = HashKey::from_hex(&hash_key).context("APIKEYS_HASH_KEY")?;
    let proxies = std::env::var("TRUSTED_PROXIES").unwrap_or_default();
    let proxies = TrustedProxies::parse(&proxies)
        .map_err(|entry| anyhow::anyhow!("TRUSTED_PROXIES: {entry:?} is not an address"))?;
    // `mut`: `stop()` below writes the buffered key uses and ends the threads.
    let mut keys = embed_example::start_keys(&database_url, hash_key, proxies)?;
    let service = keys.services.service();
    if service.find_tenant_by_name("Example")?.is_none() {
        let created = embed_example::create_tenant(service, "Example")?;
        let web = embed_example::create_publishable_key(
            service,
            &created.tenant.id,
            KeyName::parse("Web front end")?,
        )?;
        println!("tenant          {}", created.tenant.id);
        println!("live secret     {}", created.live.secret.expose_secret());
        println!("web publishable {}", web.secret.expose_secret());
    }
    // The authenticator and the failure limiter, for every worker's app.
    let registration = keys.services.registration();
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || embed_example::app(registration.clone()))
            .bind(("127.0.0.1", 8081))?
            .run()
            .await
    })?;
    keys.services.stop();
    Ok(())
}
// ANCHOR_END: main
