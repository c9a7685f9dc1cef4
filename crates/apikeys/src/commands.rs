//! What each subcommand does. Start-up work here (migrations, tenant
//! creation) and the operator's commands are blocking by design: they run
//! before any request is served, or with no server at all.

use anyhow::{anyhow, Context};
use composition::{HashKeyCheck, HashKeyCheckError};
use domain::{
    ApiKeys, CreateKey, CreatedTenant, ExpiresIn, HashKey, KeyId, KeyName, KeyStatus, KeyType,
    KeyView, ListKeys, Mode, Origin, RevokeKeyForError, Scopes, SystemClock, TenantId,
};
use http_actix::dto::{timestamp, CreatedKeyResponse, KeyObject};
use infra_postgres::{PgStore, PoolConfig};
use key_cache::CacheConfig;
use serde::Serialize;

use crate::application::{self, Application, Settings};
/// Where the development hash key lives: with the rule that refuses it
/// outside `dev` (`config.rs`).
pub use crate::config::DEV_HASH_KEY_HEX;
use crate::config::{redact_database_url, Env, ServerConfig};

/// The database `apikeys dev` creates and uses unless `DATABASE_URL` is set.
pub const DEV_DATABASE: &str = "apikeys_dev";
/// The admin connection `apikeys dev` creates its database through.
pub const DEV_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The tenant `apikeys dev` creates on its first start.
pub const DEV_TENANT_NAME: &str = "Development";

/// The pool over `url`, failing at once on settings that can never work
/// (no such database or role, a failed authentication, a malformed URL); a
/// database that is not up yet is waited for, up to the pool's timeout.
fn connect(url: &str, pool: &PoolConfig) -> anyhow::Result<PgStore> {
    let store = PgStore::connect(url, pool).context("cannot set up the database pool")?;
    store.check_settings().context("cannot use DATABASE_URL")?;
    Ok(store)
}

fn connect_and_migrate(url: &str, pool: &PoolConfig) -> anyhow::Result<PgStore> {
    let store = connect(url, pool)?;
    // `migrate` logs the versions it applied.
    store
        .migrate()
        .context("cannot apply migrations (is PostgreSQL running and DATABASE_URL right?)")?;
    Ok(store)
}

/// Refuses `hash_key` unless it is the database's (docs/api.md, "The hash
/// key"); on a new database, stores its verifier.
fn check_hash_key(store: &PgStore, hash_key: &HashKey) -> anyhow::Result<()> {
    let check = composition::check_hash_key(store, hash_key)?;
    if check == HashKeyCheck::Stored {
        tracing::info!("stored the hash-key verifier of this new database");
    }
    Ok(())
}

/// Where an operator's command runs: a database and the hash key of its
/// keys, from the environment (`tenant`, `key`, `hash-key`) or `dev`'s.
/// `Debug` leaves the URL out: it may hold a password.
pub struct Target {
    /// `None`: `dev`'s own database, created when missing.
    url: Option<String>,
    pool: PoolConfig,
    hash_key: HashKey,
    dev: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("pool", &self.pool)
            .field("dev", &self.dev)
            .finish_non_exhaustive()
    }
}

impl Target {
    /// `DATABASE_URL`, the pool settings and `APIKEYS_HASH_KEY`.
    ///
    /// # Errors
    /// A missing or invalid variable.
    pub fn from_env(env: &Env<'_>) -> anyhow::Result<Self> {
        let db = env.database()?;
        Ok(Target {
            url: Some(db.url),
            pool: db.pool,
            hash_key: env.hash_key()?,
            dev: false,
        })
    }

    /// What `apikeys dev` runs on: `DATABASE_URL` if set, else the
    /// `apikeys_dev` database, and the development hash key.
    ///
    /// # Errors
    /// Invalid pool settings.
    pub fn dev(env: &Env<'_>) -> anyhow::Result<Self> {
        let (url, pool) = env.optional_database()?;
        Ok(Target {
            url,
            pool,
            hash_key: HashKey::from_hex(DEV_HASH_KEY_HEX).context("the development hash key")?,
            dev: true,
        })
    }

    /// The database URL, `dev`'s database created first when it is missing.
    fn url(&self) -> anyhow::Result<String> {
        if let Some(url) = &self.url {
            return Ok(url.clone());
        }
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
        Ok(infra_postgres::database_url_for(
            DEV_ADMIN_URL,
            DEV_DATABASE,
        ))
    }

    /// Connects, migrates and checks the hash key against the database.
    fn store(&self) -> anyhow::Result<PgStore> {
        let store = connect_and_migrate(&self.url()?, &self.pool)?;
        match composition::check_hash_key(&store, &self.hash_key) {
            Ok(HashKeyCheck::Stored) => {
                tracing::info!("stored the hash-key verifier of this new database");
            }
            Ok(HashKeyCheck::Matches) => {}
            // A development database made by an earlier version: its keys
            // were hashed with the development hash key.
            Err(HashKeyCheckError::Unset) if self.dev && self.url.is_none() => {
                store
                    .set_hash_key_verifier(&composition::new_verifier(&self.hash_key))
                    .context("cannot store the hash-key verifier")?;
            }
            Err(HashKeyCheckError::Unset) if self.dev => {
                return Err(anyhow!(
                    "this database has keys but no hash-key verifier, so nothing tells whether \
                     they were made by `apikeys dev`: run `apikeys dev` without DATABASE_URL, \
                     or use `apikeys serve` with the database's own hash key"
                ))
            }
            Err(HashKeyCheckError::Mismatch) if self.dev => {
                return Err(anyhow!(
                    "this database's keys were not made with the development hash key of \
                     `apikeys dev`: use `apikeys serve` with the database's own \
                     APIKEYS_HASH_KEY, or run `apikeys dev` without DATABASE_URL"
                ))
            }
            Err(e) => return Err(e.into()),
        }
        Ok(store)
    }

    /// The use cases over [`Target::store`].
    fn service(&self) -> anyhow::Result<ApiKeys> {
        let store = self.store()?;
        Ok(application::service(
            &store,
            SystemClock,
            self.hash_key.clone(),
        ))
    }
}

/// `apikeys migrate`; with `APIKEYS_HASH_KEY` set, also checks it against
/// the database (storing its verifier on a new database).
///
/// # Errors
/// Configuration or database problems, or another hash key.
pub fn migrate(env: Env<'_>) -> anyhow::Result<()> {
    let db = env.database()?;
    let hash_key = env.optional_hash_key()?;
    let store = connect(&db.url, &db.pool)?;
    let applied = store.migrate().context("cannot apply migrations")?;
    if let Some(hash_key) = hash_key {
        check_hash_key(&store, &hash_key)?;
    }
    if applied.is_empty() {
        println!("The database is up to date.");
    } else {
        for version in applied {
            println!("Applied migration {version}");
        }
    }
    Ok(())
}

/// `apikeys hash-key set [--replace]`: stores the verifier of
/// `APIKEYS_HASH_KEY`, for a database made before verifiers existed, or with
/// `replace` to make another hash key the database's (every existing key
/// then stops authenticating).
///
/// # Errors
/// Configuration or database problems; another hash key's verifier without
/// `replace`.
pub fn hash_key_set(target: &Target, replace: bool) -> anyhow::Result<()> {
    let store = connect_and_migrate(&target.url()?, &target.pool)?;
    let stored = store
        .hash_key_verifier()
        .context("cannot read the hash-key verifier")?;
    match stored {
        Some(stored) if target.hash_key.is_verified_by(&stored) => {
            println!("APIKEYS_HASH_KEY is this database's hash key already; nothing changed.");
            return Ok(());
        }
        Some(_) if !replace => {
            return Err(anyhow!(
                "this database's keys were hashed with another hash key. Set APIKEYS_HASH_KEY \
                 to that one; or pass --replace to make this one the database's hash key, and \
                 every key created before stops authenticating"
            ))
        }
        _ => {}
    }
    store
        .set_hash_key_verifier(&composition::new_verifier(&target.hash_key))
        .context("cannot store the hash-key verifier")?;
    println!(
        "Stored the verifier of APIKEYS_HASH_KEY: every command now refuses another hash key \
         for this database."
    );
    Ok(())
}

/// `apikeys hash-key check`: whether `APIKEYS_HASH_KEY` is the database's.
///
/// # Errors
/// Configuration or database problems, or another hash key.
pub fn hash_key_check(target: &Target) -> anyhow::Result<()> {
    target.store()?;
    println!("APIKEYS_HASH_KEY is this database's hash key.");
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

/// `apikeys tenant create --name NAME [--json]`.
///
/// # Errors
/// Configuration or database problems, or an invalid name.
pub fn tenant_create(target: &Target, name: &str, json: bool) -> anyhow::Result<()> {
    let created: CreatedTenant = target
        .service()?
        .create_tenant(&Origin::cli(), name)
        .context("cannot create the tenant")?;
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

/// Ids are not echoed back: a mistyped one may be a pasted key.
fn parse_tenant(tenant: &str) -> anyhow::Result<TenantId> {
    TenantId::parse(tenant).context("invalid --tenant")
}

#[derive(Serialize)]
struct TenantRowJson<'a> {
    tenant_id: String,
    name: &'a str,
    created_at: String,
}

/// `apikeys tenant list [--json]`: every tenant, oldest first.
///
/// # Errors
/// Configuration or database problems.
pub fn tenant_list(target: &Target, json: bool) -> anyhow::Result<()> {
    let service = target.service()?;
    let tenants = service.list_tenants().context("cannot list the tenants")?;
    if json {
        let rows: Vec<TenantRowJson<'_>> = tenants
            .iter()
            .map(|t| TenantRowJson {
                tenant_id: t.id.to_string(),
                name: &t.name,
                created_at: timestamp(t.created_at),
            })
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
    } else if tenants.is_empty() {
        println!("No tenants.");
    } else {
        let rows = tenants
            .iter()
            .map(|t| vec![t.id.to_string(), timestamp(t.created_at), t.name.clone()]);
        print_table(&["TENANT_ID", "CREATED_AT", "NAME"], rows);
    }
    Ok(())
}

/// What `apikeys key create` was given, as typed; checked by
/// [`key_create`] before anything else.
#[derive(Debug, Clone)]
pub struct KeyCreateArgs {
    /// `--tenant`.
    pub tenant: String,
    /// `--name`.
    pub name: String,
    /// `--type`: `secret` or `publishable`.
    pub key_type: String,
    /// `--mode`: `live` or `test`.
    pub mode: String,
    /// `--scopes`, split at commas; empty means `*`.
    pub scopes: Vec<String>,
    /// `--expires-in`.
    pub expires_in: Option<String>,
}

impl KeyCreateArgs {
    /// The tenant and the request, or why they are invalid.
    fn parse(&self) -> anyhow::Result<(TenantId, CreateKey)> {
        let tenant = parse_tenant(&self.tenant)?;
        let name = KeyName::parse(&self.name).context("invalid --name")?;
        let key_type = KeyType::parse(&self.key_type).context("invalid --type")?;
        let mode = Mode::parse(&self.mode).context("invalid --mode")?;
        let scopes = if self.scopes.is_empty() {
            Scopes::full()
        } else {
            Scopes::parse(self.scopes.iter().map(|s| s.trim())).context("invalid --scopes")?
        };
        let expires_in = self
            .expires_in
            .as_deref()
            .map(ExpiresIn::parse)
            .transpose()
            .context("invalid --expires-in")?;
        let request = CreateKey {
            name,
            key_type,
            mode: Some(mode),
            scopes,
            expires_in,
            restrictions: domain::KeyRestrictions::default(),
            metadata: domain::Metadata::default(),
        };
        Ok((tenant, request))
    }
}

/// `apikeys key create --tenant T --name N [...] [--json] [--force]`: a key
/// for any tenant, printed once. `--json` prints the API's 201 body of
/// `POST /v1/api-keys`; `--force` passes the tenant's key limit.
///
/// # Errors
/// Invalid arguments, an unknown tenant, the key limit (without `force`),
/// configuration or database problems.
pub fn key_create(
    target: &Target,
    args: &KeyCreateArgs,
    json: bool,
    force: bool,
) -> anyhow::Result<()> {
    let (tenant, request) = args.parse()?;
    let service = target.service()?;
    let created = if force {
        service.create_key_for_past_the_limit(&Origin::cli(), &tenant, request)
    } else {
        service.create_key_for(&Origin::cli(), &tenant, request)
    }
    .context("cannot create the key")?;
    let out = CreatedKeyResponse::from(created);
    if json {
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!(
            "Created {} {} key {} for tenant {tenant}",
            out.mode, out.key_type, out.id
        );
        println!("  name:    {}", out.name);
        println!("  scopes:  {}", out.scopes.join(","));
        println!(
            "  expires: {}",
            out.expires_at.as_deref().unwrap_or("never")
        );
        println!("  key:     {}", out.key);
        println!("Store this key now: it cannot be shown again.");
    }
    Ok(())
}

/// Prints `header` and `rows` as aligned columns, the last one unpadded.
fn print_table(header: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    lines.extend(rows);
    let mut widths = vec![0; header.len()];
    for line in &lines {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for line in &lines {
        let last = line.len().saturating_sub(1);
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                if i == last {
                    cell.clone()
                } else {
                    format!("{cell:<width$}")
                }
            })
            .collect();
        println!("{}", cells.join("  "));
    }
}

fn status_text(view: &KeyView) -> String {
    match view.status {
        KeyStatus::Active => "active".to_owned(),
        KeyStatus::Expired => "expired".to_owned(),
        KeyStatus::Revoked => "revoked".to_owned(),
        KeyStatus::RevocationScheduled => match view.key.revokes_at {
            Some(at) => format!("revokes at {}", timestamp(at)),
            None => "revoking".to_owned(),
        },
    }
}

/// `apikeys key list --tenant T [--revoked] [--json]`: the tenant's keys of
/// every mode, newest first; revoked keys only with `--revoked`. `--json`
/// prints one array of the API's key objects.
///
/// # Errors
/// An invalid or unknown tenant, configuration or database problems.
pub fn key_list(target: &Target, tenant: &str, revoked: bool, json: bool) -> anyhow::Result<()> {
    let tenant = parse_tenant(tenant)?;
    let service = target.service()?;
    let mut keys = Vec::new();
    let mut starting_after = None;
    loop {
        let request = ListKeys {
            include_revoked: revoked,
            starting_after,
            ..ListKeys::default()
        };
        let page = service
            .list_keys_for(&tenant, request)
            .context("cannot list the keys")?;
        let last = page.keys.last().map(|k| k.key.id);
        keys.extend(page.keys);
        match last {
            Some(last) if page.has_more => starting_after = Some(last),
            _ => break,
        }
    }
    if json {
        let objects: Vec<KeyObject> = keys.iter().map(KeyObject::from).collect();
        println!("{}", serde_json::to_string(&objects)?);
    } else if keys.is_empty() {
        println!(
            "No keys{}.",
            if revoked {
                ""
            } else {
                " (--revoked also lists revoked keys)"
            }
        );
    } else {
        let rows = keys.iter().map(|view| {
            let key = &view.key;
            vec![
                key.id.to_string(),
                key.mode.as_str().to_owned(),
                key.key_type.as_str().to_owned(),
                format!("{}...{}", key.prefix, key.last_four),
                status_text(view),
                key.expires_at.map_or_else(|| "never".to_owned(), timestamp),
                key.scopes.names().collect::<Vec<_>>().join(","),
                key.name.as_str().to_owned(),
            ]
        });
        let header = [
            "ID",
            "MODE",
            "TYPE",
            "KEY",
            "STATUS",
            "EXPIRES_AT",
            "SCOPES",
            "NAME",
        ];
        print_table(&header, rows);
    }
    Ok(())
}

/// `apikeys key revoke --tenant T ID [--force]`: revokes now. Refused for
/// the tenant's last active full-access live secret key unless `force`. A
/// revoked key: success, nothing changes.
///
/// # Errors
/// Invalid arguments, an unknown tenant or key, the lockout guard,
/// configuration or database problems.
pub fn key_revoke(target: &Target, tenant: &str, id: &str, force: bool) -> anyhow::Result<()> {
    let tenant = parse_tenant(tenant)?;
    let id = KeyId::parse(id).context("invalid key id")?;
    let service = target.service()?;
    let revoked = match service.revoke_key_for(&Origin::cli(), &tenant, &id, force) {
        Ok(revoked) => revoked,
        Err(e @ RevokeKeyForError::LastFullAccessKey(_)) => {
            return Err(anyhow!(
                "cannot revoke the key: {e}. Create another full-access live secret key first \
                 (apikeys key create --tenant {tenant} --name NAME), or pass --force to revoke it \
                 anyway"
            ))
        }
        Err(e) => return Err(anyhow::Error::new(e).context("cannot revoke the key")),
    };
    let key = &revoked.key.key;
    if revoked.changed {
        println!(
            "Revoked {} {} key {id} ({}) of tenant {tenant}",
            key.mode,
            key.key_type,
            key.name.as_str()
        );
    } else {
        let at = key
            .revokes_at
            .map_or_else(String::new, |at| format!(" at {}", timestamp(at)));
        println!("Key {id} was already revoked{at}; nothing changed.");
    }
    Ok(())
}

fn run_server(store: &PgStore, hash_key: HashKey, server: &ServerConfig) -> anyhow::Result<()> {
    let system = actix_web::rt::System::new();
    let settings = Settings {
        workers: server.workers,
        services: composition::Settings {
            cache: CacheConfig {
                max_entries: server.cache_max_keys,
                serve_stale_for: server.cache_serve_stale,
                ..CacheConfig::default()
            },
            ..composition::Settings::default()
        },
        metrics_bind: server.metrics_bind,
        failure_limit: server.failure_limit.clone(),
        request_limits: server.request_limits,
        leak_reports: server.leak_reports,
    };
    let app = Application::build_with(server.bind, store, SystemClock, hash_key, &settings)?;
    tracing::info!(addr = %app.addr(), "listening");
    if let Some(addr) = app.metrics_addr() {
        tracing::info!(addr = %addr, "serving metrics at /metrics");
    }
    system
        .block_on(app.run_until_stopped())
        .context("the server stopped with an error")?;
    tracing::info!("stopped");
    Ok(())
}

/// `apikeys serve`.
///
/// # Errors
/// Configuration or database problems, another hash key than the
/// database's, or an address that cannot be bound.
pub fn serve(env: Env<'_>) -> anyhow::Result<()> {
    let target = Target::from_env(&env)?;
    let server = env.server()?;
    let store = target.store()?;
    run_server(&store, target.hash_key.clone(), &server)
}

/// `apikeys dev`: no configuration needed.
///
/// # Errors
/// When the local PostgreSQL cannot be reached, the database's keys were
/// not made by `dev`, or the address is taken.
pub fn dev(env: Env<'_>) -> anyhow::Result<()> {
    let target = Target::dev(&env)?;
    let server = env.server()?;
    warn_dev_hash_key();
    let store = target.store()?;
    let base = format!("http://{}", server.bind);
    let service = application::service(&store, SystemClock, target.hash_key.clone());
    match service
        .find_tenant_by_name(DEV_TENANT_NAME)
        .context("cannot look up the development tenant")?
    {
        Some(tenant) => {
            println!();
            println!("Development tenant {} exists already.", tenant.id);
            println!("Its keys were printed when it was created and cannot be shown again.");
            println!("To give it a new full-access live secret key (printed once):");
            let (env_prefix, note) = match &target.url {
                None => (String::new(), ""),
                Some(url) => {
                    let shown = redact_database_url(url);
                    let note = if shown == *url {
                        ""
                    } else {
                        "  (with your password in place of PASSWORD)\n"
                    };
                    (format!("DATABASE_URL='{shown}' "), note)
                }
            };
            println!(
                "  {env_prefix}cargo run -p apikeys -- dev key create --tenant {} --name Recovery",
                tenant.id
            );
            print!("{note}");
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
    run_server(&store, target.hash_key.clone(), &server)
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
