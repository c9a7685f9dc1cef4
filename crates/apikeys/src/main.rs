//! `apikeys`: serve the API, apply migrations, manage tenants and their keys
//! as the operator, or run a zero-configuration development server.

use std::process::ExitCode;

use apikeys::commands::{KeyCreateArgs, Target};
use apikeys::config::Env;
use apikeys::{commands, telemetry};
use clap::{Parser, Subcommand};

// The environment each command reads, for its `--help` (the same as
// README.md's configuration table, which a test holds them to).
macro_rules! env_database {
    () => {
        "  DATABASE_URL                  PostgreSQL URL (required)
  APIKEYS_DB_POOL_SIZE          database connections, 1-1000 [default: 10]
  APIKEYS_DB_TIMEOUT            wait for a connection before 503, 1s-60s [default: 5s]
  APIKEYS_DB_STATEMENT_TIMEOUT  longest SQL statement, 1s-600s [default: 5s]
"
    };
}
macro_rules! env_hash_key {
    () => {
        "  APIKEYS_HASH_KEY              at least 32 bytes as hex (required)
"
    };
}
macro_rules! env_server {
    () => {
        "  APIKEYS_BIND                  listen address [default: 127.0.0.1:8080]
  APIKEYS_WORKERS               HTTP worker threads, 1-256 [default: one per core]
  APIKEYS_CACHE_MAX_KEYS        keys the authentication cache holds [default: 100000]
  APIKEYS_CACHE_SERVE_STALE     opt-in: answer from the cache while the database is down, 1s-3600s [default: off]
  APIKEYS_METRICS_BIND          where GET /metrics listens [default: no metrics listener]
  APIKEYS_AUTH_FAILURE_LIMIT    failed authentications per client address and window, 0 disables [default: 100]
  APIKEYS_AUTH_FAILURE_WINDOW   the window of that limit, 1s-86400s [default: 1m]
  APIKEYS_AUTH_FAILURE_MAX_ADDRESSES  client addresses tracked at once [default: 100000]
  APIKEYS_TRUSTED_PROXIES       proxies whose X-Forwarded-For is believed [default: none]
  APIKEYS_LEAK_REPORTS_PER_MINUTE  leak reports per client address and minute, 0 disables [default: 60]
  APIKEYS_LEAK_REPORTS_IN_FLIGHT   leak reports processed at once on this node, 1-1000 [default: 2]
  APIKEYS_GITHUB_PUBLIC_KEYS_FILE  GitHub's secret scanning public keys (JSON); serves POST /v1/secret-scanning/github [default: unset, not served]
  APIKEYS_WEBHOOK_ALLOW_HOSTS      hosts (comma-separated) webhooks may reach over http and at any address (local development and tests only) [default: none]
  APIKEYS_BODY_TIMEOUT          how long a request body may take, 1s-300s [default: 10s]
  APIKEYS_HEAD_TIMEOUT          how long a request head may take, 1s-300s [default: 5s]
"
    };
}
macro_rules! env_logging {
    () => {
        "  APIKEYS_LOG_FORMAT            text or json [default: text]
  RUST_LOG                      log filter [default: info]

Exit status: 0 success, 1 a configuration, database or runtime error, 2 a usage error."
    };
}

macro_rules! operator_env {
    () => {
        concat!(
            "Environment:\n",
            env_database!(),
            env_hash_key!(),
            env_logging!()
        )
    };
}
macro_rules! dev_operator_env {
    () => {
        concat!(
            "Environment (all optional; the hash key is the development one):\n",
            "  DATABASE_URL                  PostgreSQL URL [default: postgres://postgres@127.0.0.1:5432/apikeys_dev]\n",
            "  APIKEYS_DB_POOL_SIZE, APIKEYS_DB_TIMEOUT, APIKEYS_DB_STATEMENT_TIMEOUT: as for serve\n",
            env_logging!()
        )
    };
}

/// Self-hostable API-key service.
#[derive(Debug, Parser)]
#[command(
    name = "apikeys",
    version,
    about,
    after_help = concat!("Environment (see each command's --help):\n", env_logging!())
)]
struct Cli {
    /// Log as JSON lines (also `APIKEYS_LOG_FORMAT=json`).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (DATABASE_URL and APIKEYS_HASH_KEY required); applies
    /// pending migrations first, and refuses a hash key other than the
    /// database's.
    #[command(after_help = concat!(
        "Environment:\n", env_database!(), env_hash_key!(), env_server!(), env_logging!()
    ))]
    Serve,
    /// Apply the embedded database migrations (DATABASE_URL required). With
    /// APIKEYS_HASH_KEY set, also check it against the database (storing its
    /// verifier on a new database).
    #[command(after_help = concat!(
        "Environment:\n",
        env_database!(),
        "  APIKEYS_HASH_KEY              optional: checked against the database when set\n",
        env_logging!()
    ))]
    Migrate,
    /// Manage tenants.
    #[command(after_help = operator_env!())]
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Manage any tenant's keys as the operator (DATABASE_URL and
    /// APIKEYS_HASH_KEY required); every change is recorded with actor `cli`.
    #[command(after_help = operator_env!())]
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// The database's record of its hash key: every command refuses a hash
    /// key other than the one the database's keys were hashed with.
    #[command(name = "hash-key", after_help = operator_env!())]
    HashKey {
        #[command(subcommand)]
        command: HashKeyCommand,
    },
    /// Run a development server with no configuration: local PostgreSQL,
    /// database `apikeys_dev`, a fixed development hash key, and a
    /// development tenant whose keys are printed on first start. `dev key
    /// ...` and `dev tenant ...` manage that database's keys and tenants.
    #[command(after_help = concat!(
        "Environment (all optional):\n",
        "  DATABASE_URL                  PostgreSQL URL [default: postgres://postgres@127.0.0.1:5432/apikeys_dev]\n",
        "  APIKEYS_DB_POOL_SIZE, APIKEYS_DB_TIMEOUT, APIKEYS_DB_STATEMENT_TIMEOUT: as for serve\n",
        env_server!(),
        env_logging!()
    ))]
    Dev {
        #[command(subcommand)]
        command: Option<DevCommand>,
    },
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// The `tenant` commands on the development database.
    #[command(
        after_help = dev_operator_env!(),
        mut_subcommand("create", |c| c.after_help(dev_operator_env!())),
        mut_subcommand("list", |c| c.after_help(dev_operator_env!())),
    )]
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// The `key` commands on the development database (`dev key create
    /// --tenant tnt_... --name Recovery`: a new key for the development
    /// tenant).
    #[command(
        after_help = dev_operator_env!(),
        mut_subcommand("create", |c| c.after_help(dev_operator_env!())),
        mut_subcommand("list", |c| c.after_help(dev_operator_env!())),
        mut_subcommand("revoke", |c| c.after_help(dev_operator_env!())),
    )]
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum HashKeyCommand {
    /// Store the verifier of APIKEYS_HASH_KEY in the database, for a database
    /// made by a version without verifiers (check first that it is the hash
    /// key the database's keys were created with: a key then authenticates).
    #[command(after_help = operator_env!())]
    Set {
        /// Make APIKEYS_HASH_KEY the database's hash key even though its
        /// verifier is of another one: every existing key stops
        /// authenticating.
        #[arg(long)]
        replace: bool,
    },
    /// Exit 0 if APIKEYS_HASH_KEY is the database's hash key, 1 otherwise.
    #[command(after_help = operator_env!())]
    Check,
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant with one live and one test full-access secret key,
    /// printed once.
    #[command(after_help = operator_env!())]
    Create {
        /// The tenant's name.
        #[arg(long)]
        name: String,
        /// Print one JSON object: {"tenant_id", "name", "keys": {"live", "test"}}.
        #[arg(long)]
        json: bool,
    },
    /// List every tenant, oldest first.
    #[command(after_help = operator_env!())]
    List {
        /// Print one JSON array of {"tenant_id", "name", "created_at"}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Create a key for a tenant, printed once: the way back in for a tenant
    /// that lost every full-access key.
    #[command(after_help = operator_env!())]
    Create {
        /// The tenant (`tnt_...`).
        #[arg(long)]
        tenant: String,
        /// The key's name.
        #[arg(long)]
        name: String,
        /// The key's type.
        #[arg(long = "type", default_value = "secret", value_parser = ["secret", "publishable"])]
        key_type: String,
        /// The key's mode.
        #[arg(long, default_value = "live", value_parser = ["live", "test"])]
        mode: String,
        /// Comma-separated scopes (default `*`, full access).
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Lifetime, 1m to 10y (such as `90d`); default: never expires.
        #[arg(long)]
        expires_in: Option<String>,
        /// Print the API's creation response (POST /v1/api-keys, 201) as one
        /// JSON object.
        #[arg(long)]
        json: bool,
        /// Create the key even when the tenant has its limit of active keys
        /// in this mode (10,000): the way back in when keys fill it.
        #[arg(long)]
        force: bool,
    },
    /// List a tenant's keys of every mode, newest first.
    #[command(after_help = operator_env!())]
    List {
        /// The tenant (`tnt_...`).
        #[arg(long)]
        tenant: String,
        /// Also list revoked keys (without it, revoked keys are left out).
        #[arg(long)]
        revoked: bool,
        /// Print one JSON array of the API's key objects.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key now. Refused for the tenant's last active full-access
    /// live secret key unless --force.
    #[command(after_help = operator_env!())]
    Revoke {
        /// The tenant (`tnt_...`).
        #[arg(long)]
        tenant: String,
        /// The key (`key_...`).
        id: String,
        /// Revoke even the tenant's last active full-access live secret key,
        /// locking the tenant out until `apikeys key create`.
        #[arg(long)]
        force: bool,
    },
}

fn tenant(target: &Target, command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create { name, json } => commands::tenant_create(target, &name, json),
        TenantCommand::List { json } => commands::tenant_list(target, json),
    }
}

fn key(target: &Target, command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create {
            tenant,
            name,
            key_type,
            mode,
            scopes,
            expires_in,
            json,
            force,
        } => commands::key_create(
            target,
            &KeyCreateArgs {
                tenant,
                name,
                key_type,
                mode,
                scopes,
                expires_in,
            },
            json,
            force,
        ),
        KeyCommand::List {
            tenant,
            revoked,
            json,
        } => commands::key_list(target, &tenant, revoked, json),
        KeyCommand::Revoke { tenant, id, force } => {
            commands::key_revoke(target, &tenant, &id, force)
        }
    }
}

/// Exit status: 0 success; 1 a configuration, database or runtime error
/// (every configuration error alike); 2 a usage error (clap's own, for an
/// unknown command or flag).
fn main() -> ExitCode {
    let cli = Cli::parse();
    let get = |name: &str| std::env::var(name).ok();
    let env = Env::new(&get);
    let json_logs = match env.json_logs() {
        Ok(json) => json || cli.log_json,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(json_logs);
    let result = match cli.command {
        Command::Serve => commands::serve(env),
        Command::Migrate => commands::migrate(env),
        Command::Tenant { command } => Target::from_env(&env).and_then(|t| tenant(&t, command)),
        Command::Key { command } => Target::from_env(&env).and_then(|t| key(&t, command)),
        Command::HashKey { command } => Target::from_env(&env).and_then(|t| match command {
            HashKeyCommand::Set { replace } => commands::hash_key_set(&t, replace),
            HashKeyCommand::Check => commands::hash_key_check(&t),
        }),
        Command::Dev { command: None } => commands::dev(env),
        Command::Dev {
            command: Some(DevCommand::Tenant { command }),
        } => Target::dev(&env).and_then(|t| tenant(&t, command)),
        Command::Dev {
            command: Some(DevCommand::Key { command }),
        } => Target::dev(&env).and_then(|t| key(&t, command)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
