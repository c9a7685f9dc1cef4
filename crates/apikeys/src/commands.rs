//! What each subcommand does. Start-up work here (migrations, tenant
//! creation) is blocking by design: it runs before any request is served.

use std::time::Duration;

use anyhow::Context;
use domain::{CreatedTenant, HashKey, Origin, SystemClock};
use infra_postgres::{FeedConfig, PgStore, PoolConfig};
use key_cache::CacheConfig;
use serde::Serialize;

use crate::application::{self, Application, Settings};
use crate::config::{Env, ServerConfig};

/// The fixed hash key of `apikeys dev`. Public on purpose: keys hashed with it
/// are worthless outside a developer's machine.
pub const DEV_HASH_KEY_HEX: &str =
    "6170696b6579732d6465762d686173682d6b65792d6e6f742d666f722d70726f64756374696f6e21";
/// The database `apikeys dev` creates and uses unless `DATABASE_URL` is set.
pub const DEV_DATABASE: &str = "apikeys_dev";
/// The admin connection `apikeys dev` creates its database through.
pub const DEV_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The tenant `apikeys dev` creates on its first start.
pub const DEV_TENANT_NAME: &str = "Development";

fn connect_and_migrate(url: &str, pool: &PoolConfig) -> anyhow::Result<PgStore> {
    let store = PgStore::connect(url, pool).context("cannot set up the database pool")?;
    // `migrate` logs the versions it applied.
    store
        .migrate()
        .context("cannot apply migrations (is PostgreSQL running and DATABASE_URL right?)")?;
    Ok(store)
}

/// `apikeys migrate`.
///
/// # Errors
/// Configuration or database problems.
pub fn migrate(env: Env<'_>) -> anyhow::Result<()> {
    let db = env.database()?;
    let store = PgStore::connect(&db.url, &db.pool).context("cannot set up the database pool")?;
    let applied = store.migrate().context("cannot apply migrations")?;
    if applied.is_empty() {
        println!("The database is up to date.");
    } else {
        for version in applied {
            println!("Applied migration {version}");
        }
    }
    Ok(())
}

#[derive(Serialize)]
struct TenantJson<'a> {
    tenant_id: String,
    name: &'a str,
    keys: KeysJson,
}

#[derive(Serialize)]
struct KeysJson {
    live: String,
    test: String,
}

fn create_tenant(store: &PgStore, hash_key: HashKey, name: &str) -> anyhow::Result<CreatedTenant> {
    let service = application::service(store, SystemClock, hash_key);
    service
        .create_tenant(&Origin::cli(), name)
        .context("cannot create the tenant")
}

/// `apikeys tenant create --name NAME [--json]`.
///
/// # Errors
/// Configuration or database problems, or an invalid name.
pub fn tenant_create(env: Env<'_>, name: &str, json: bool) -> anyhow::Result<()> {
    let db = env.database()?;
    let hash_key = env.hash_key()?;
    let store = connect_and_migrate(&db.url, &db.pool)?;
    let created = create_tenant(&store, hash_key, name)?;
    let tenant_id = created.tenant.id.to_string();
    let live = created.live.secret.into_secret();
    let test = created.test.secret.into_secret();
    if json {
        let out = TenantJson {
            tenant_id,
            name: &created.tenant.name,
            keys: KeysJson { live, test },
        };
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!("Created tenant {tenant_id} ({})", created.tenant.name);
        println!("  live secret key: {live}");
        println!("  test secret key: {test}");
        println!("Store these keys now: they cannot be shown again.");
    }
    Ok(())
}

fn run_server(
    store: &PgStore,
    pool: &PoolConfig,
    hash_key: HashKey,
    server: &ServerConfig,
) -> anyhow::Result<()> {
    let system = actix_web::rt::System::new();
    let settings = Settings {
        workers: server.workers,
        cache: CacheConfig {
            max_entries: server.cache_max_keys,
            serve_stale_for: server.cache_serve_stale,
            ..CacheConfig::default()
        },
        // The feed re-reads events as far back as a write can take between
        // taking its sequence number and committing: a statement, plus margin.
        feed: FeedConfig {
            overlap: pool.statement_timeout * 2 + Duration::from_secs(5),
            ..FeedConfig::default()
        },
        flush_uses_every: None,
    };
    let app = Application::build_with(server.bind, store, SystemClock, hash_key, &settings)?;
    tracing::info!(addr = %app.addr(), "listening");
    system
        .block_on(app.run_until_stopped())
        .context("the server stopped with an error")?;
    tracing::info!("stopped");
    Ok(())
}

/// `apikeys serve`.
///
/// # Errors
/// Configuration or database problems, or an address that cannot be bound.
pub fn serve(env: Env<'_>) -> anyhow::Result<()> {
    let db = env.database()?;
    let hash_key = env.hash_key()?;
    let server = env.server()?;
    let store = connect_and_migrate(&db.url, &db.pool)?;
    run_server(&store, &db.pool, hash_key, &server)
}

/// `apikeys dev`: no configuration needed.
///
/// # Errors
/// When the local PostgreSQL cannot be reached or the address is taken.
pub fn dev(env: Env<'_>) -> anyhow::Result<()> {
    let (url, pool) = env.optional_database()?;
    let server = env.server()?;
    let url = match url {
        Some(url) => url,
        None => {
            let created = infra_postgres::ensure_database(DEV_ADMIN_URL, DEV_DATABASE).with_context(|| {
                format!(
                    "cannot reach PostgreSQL at {DEV_ADMIN_URL} to create the {DEV_DATABASE} database; \
                     start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                     or set DATABASE_URL"
                )
            })?;
            if created {
                tracing::info!(database = DEV_DATABASE, "created the development database");
            }
            infra_postgres::database_url_for(DEV_ADMIN_URL, DEV_DATABASE)
        }
    };
    warn_dev_hash_key();
    let hash_key = HashKey::from_hex(DEV_HASH_KEY_HEX).context("the development hash key")?;
    let store = connect_and_migrate(&url, &pool)?;
    let base = format!("http://{}", server.bind);
    let service = application::service(&store, SystemClock, hash_key.clone());
    match service
        .find_tenant_by_name(DEV_TENANT_NAME)
        .context("cannot look up the development tenant")?
    {
        Some(tenant) => {
            println!();
            println!("Development tenant {} exists already.", tenant.id);
            println!("Its keys were printed when it was created and cannot be shown again.");
            println!("To create another tenant with fresh keys:");
            println!(
                "  DATABASE_URL={url} APIKEYS_HASH_KEY={DEV_HASH_KEY_HEX} \\\n    cargo run -p apikeys -- tenant create --name NAME"
            );
            println!();
        }
        None => {
            let created = service
                .create_tenant(&Origin::cli(), DEV_TENANT_NAME)
                .context("cannot create the tenant")?;
            let tenant = created.tenant.id;
            let live = created.live.secret.into_secret();
            let test = created.test.secret.into_secret();
            println!();
            println!("Created the development tenant {tenant}");
            println!("  live secret key: {live}");
            println!("  test secret key: {test}");
            println!("These keys are shown once. Try:");
            println!(
                "  curl \"{base}/v1/api-keys\" -H \"Authorization: Bearer {live}\" -H \"X-Tenant-ID: {tenant}\""
            );
            println!();
        }
    }
    run_server(&store, &pool, hash_key, &server)
}

fn warn_dev_hash_key() {
    let banner = "\
************************************************************************
*  DEVELOPMENT MODE: keys are hashed with a fixed, PUBLIC hash key.    *
*  Never use `apikeys dev` or its keys in production: use `serve`      *
*  with your own APIKEYS_HASH_KEY (openssl rand -hex 32).              *
************************************************************************";
    eprintln!("{banner}");
    tracing::warn!("development mode: fixed public hash key in use");
}
