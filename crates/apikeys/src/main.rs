//! `apikeys`: serve the API, apply migrations, create tenants, or run a
//! zero-configuration development server.

use std::process::ExitCode;

use apikeys::config::Env;
use apikeys::{commands, telemetry};
use clap::{Parser, Subcommand};

/// Self-hostable API-key service.
#[derive(Debug, Parser)]
#[command(name = "apikeys", version, about)]
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
    /// pending migrations first.
    Serve,
    /// Apply the embedded database migrations (DATABASE_URL required).
    Migrate,
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Run a development server with no configuration: local PostgreSQL,
    /// database `apikeys_dev`, a fixed development hash key, and a
    /// development tenant whose keys are printed on first start.
    Dev,
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant with one live and one test full-access secret key,
    /// printed once.
    Create {
        /// The tenant's name.
        #[arg(long)]
        name: String,
        /// Print one JSON object: {"tenant_id", "name", "keys": {"live", "test"}}.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let get = |name: &str| std::env::var(name).ok();
    let env = Env::new(&get);
    let json_logs = match env.json_logs() {
        Ok(json) => json || cli.log_json,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(json_logs);
    let result = match cli.command {
        Command::Serve => commands::serve(env),
        Command::Migrate => commands::migrate(env),
        Command::Tenant {
            command: TenantCommand::Create { name, json },
        } => commands::tenant_create(env, &name, json),
        Command::Dev => commands::dev(env),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
