//! Runs the example app on `127.0.0.1:8081` against `DATABASE_URL` with the
//! hash key `APIKEYS_HASH_KEY` (64 hex digits), creating a tenant named
//! `Example` on its first start and printing its keys once.

use std::sync::Arc;

use actix_web::HttpServer;
use anyhow::Context;
use domain::{HashKey, KeyName};

fn main() -> anyhow::Result<()> {
    let database_url = std::env::var("DATABASE_URL").context("set DATABASE_URL")?;
    let hash_key = std::env::var("APIKEYS_HASH_KEY").context("set APIKEYS_HASH_KEY")?;
    let hash_key = HashKey::from_hex(&hash_key).context("APIKEYS_HASH_KEY")?;
    let keys = embed_example::start_keys(&database_url, hash_key)?;
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
    let authenticator = Arc::clone(keys.services.authenticator());
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || embed_example::app(Arc::clone(&authenticator)))
            .bind(("127.0.0.1", 8081))?
            .run()
            .await
    })?;
    Ok(())
}
