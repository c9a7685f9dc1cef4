//! Configuration from the environment, checked once at start.
//!
//! Every problem is reported with the variable's name and what it should be,
//! and ends the program with a non-zero exit before anything is served.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use domain::{parse_duration, HashKey};
use http_actix::rate_limit::{DEFAULT_FAILURE_LIMIT, DEFAULT_MAX_ADDRESSES};
use http_actix::{FailureLimitConfig, GithubPublicKeys, RequestLimits, TrustedProxies};
use infra_postgres::PoolConfig;

use crate::application::LeakReportLimits;
use thiserror::Error;

/// The fixed hash key of `apikeys dev`. Public on purpose: keys hashed with it
/// are worthless outside a developer's machine.
pub const DEV_HASH_KEY_HEX: &str =
    "6170696b6579732d6465762d686173682d6b65792d6e6f742d666f722d70726f64756374696f6e21";

/// Where `serve` listens unless `APIKEYS_BIND` says otherwise.
pub const DEFAULT_BIND: &str = "127.0.0.1:8080";

/// A configuration problem, naming the variable at fault.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("{0} is not set; {1}")]
    Missing(&'static str, &'static str),
    /// A variable is set to something unusable.
    #[error("{var} is invalid: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// What is wrong, without echoing a secret value.
        reason: String,
    },
}

/// Settings shared by every command that talks to the database. `Debug`
/// leaves the URL out: it may carry a password.
#[derive(Clone)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`.
    pub url: String,
    /// `APIKEYS_DB_POOL_SIZE`, `APIKEYS_DB_TIMEOUT` and
    /// `APIKEYS_DB_STATEMENT_TIMEOUT`.
    pub pool: PoolConfig,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &"[redacted]")
            .field("pool", &self.pool)
            .finish()
    }
}

/// Settings of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `APIKEYS_BIND`.
    pub bind: SocketAddr,
    /// `APIKEYS_WORKERS`; `None` lets actix choose (one per core).
    pub workers: Option<usize>,
    /// `APIKEYS_CACHE_MAX_KEYS`: most keys the authentication cache holds.
    pub cache_max_keys: u64,
    /// `APIKEYS_CACHE_SERVE_STALE`: opt-in, how long after the event feed's
    /// last confirmation cached keys may still be served while the database
    /// is unreachable; `None` (the default) fails closed.
    pub cache_serve_stale: Option<Duration>,
    /// `APIKEYS_METRICS_BIND`: where `GET /metrics` listens; `None` (the
    /// default): no metrics listener.
    pub metrics_bind: Option<SocketAddr>,
    /// `APIKEYS_AUTH_FAILURE_LIMIT`, `APIKEYS_AUTH_FAILURE_WINDOW`,
    /// `APIKEYS_AUTH_FAILURE_MAX_ADDRESSES` and `APIKEYS_TRUSTED_PROXIES`.
    pub failure_limit: FailureLimitConfig,
    /// `APIKEYS_BODY_TIMEOUT` and `APIKEYS_HEAD_TIMEOUT`.
    pub request_limits: RequestLimits,
    /// `APIKEYS_LEAK_REPORTS_PER_MINUTE` and `APIKEYS_LEAK_REPORTS_IN_FLIGHT`.
    pub leak_reports: LeakReportLimits,
    /// `APIKEYS_WEBHOOK_ALLOW_HOSTS`: hosts (comma-separated) that webhook
    /// endpoints may reach over plain http and at any address, loopback and
    /// private ones included (docs/webhooks.md); none by default.
    pub webhook_allow_hosts: Vec<String>,
    /// `APIKEYS_GITHUB_PUBLIC_KEYS_FILE`, read and checked: GitHub's secret
    /// scanning keys; `None` (the default): `POST
    /// /v1/secret-scanning/github` is not served.
    pub github_public_keys: Option<Arc<GithubPublicKeys>>,
}

/// Keys the authentication cache holds unless `APIKEYS_CACHE_MAX_KEYS` says
/// otherwise: about 100 MB at most (a cached key takes well under 1 KiB).
pub const DEFAULT_CACHE_MAX_KEYS: u64 = 100_000;

/// `raw` as a listen address (`HOST:PORT`, the host resolved).
fn socket_addr(var: &'static str, raw: &str) -> Result<SocketAddr, ConfigError> {
    raw.trim()
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| ConfigError::Invalid {
            var,
            reason: format!("expected HOST:PORT such as 127.0.0.1:8080, got {raw:?}"),
        })
}

/// `url` with its password, if any, replaced by `PASSWORD`: in a URL's user
/// information (`postgres://app:PASSWORD@db/apikeys`), a `password`
/// query parameter, or a `password=` setting of a key-value connection
/// string. For printing a `DATABASE_URL` a person may copy.
pub fn redact_database_url(url: &str) -> String {
    let is_password = |setting: &str| {
        setting
            .split_once('=')
            .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case("password"))
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        // A key-value connection string: `host=db password=secret`.
        return url
            .split(' ')
            .map(|word| {
                if is_password(word) {
                    "password=PASSWORD"
                } else {
                    word
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    let (authority_end, _) = rest
        .char_indices()
        .find(|(_, c)| *c == '/' || *c == '?')
        .unwrap_or((rest.len(), ' '));
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{user}:PASSWORD@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let path = match path.split_once('?') {
        Some((path, query)) => {
            let query: Vec<&str> = query
                .split('&')
                .map(|p| {
                    if is_password(p) {
                        "password=PASSWORD"
                    } else {
                        p
                    }
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => path.to_owned(),
    };
    format!("{scheme}://{authority}{path}")
}

/// Fewer different byte values than this in a hash key means it was not
/// drawn at random: 32 random bytes hold about 30, and fewer than 8 happens
/// by chance with a probability under 10^-36.
const MIN_DISTINCT_BYTES: usize = 8;

/// Whether `bytes` cannot be a random hash key: all zeros, one byte
/// repeated, or a few values (an ASCII word repeated, a short pattern).
fn is_weak_hash_key(bytes: &[u8]) -> bool {
    let mut seen = [false; 256];
    for b in bytes {
        seen[usize::from(*b)] = true;
    }
    seen.iter().filter(|s| **s).count() < MIN_DISTINCT_BYTES
}

/// Reads variables through `get`, so tests need not touch the process
/// environment.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    get: &'a dyn Fn(&str) -> Option<String>,
}

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Env")
    }
}

impl<'a> Env<'a> {
    /// Variables from `get` (`std::env::var(..).ok()` in the program).
    pub fn new(get: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Env { get }
    }

    fn var(&self, name: &str) -> Option<String> {
        (self.get)(name).filter(|v| !v.trim().is_empty())
    }

    /// `DATABASE_URL` (required) and the pool settings.
    ///
    /// # Errors
    /// [`ConfigError`] naming the variable.
    pub fn database(&self) -> Result<DatabaseConfig, ConfigError> {
        let url = self.var("DATABASE_URL").ok_or(ConfigError::Missing(
            "DATABASE_URL",
            "set it to a PostgreSQL URL such as postgres://postgres@127.0.0.1:5432/apikeys",
        ))?;
        Ok(DatabaseConfig {
            url,
            pool: self.pool()?,
        })
    }

    /// `DATABASE_URL` if set, for `dev`, which otherwise uses its own database.
    ///
    /// # Errors
    /// [`ConfigError`] for bad pool settings.
    pub fn optional_database(&self) -> Result<(Option<String>, PoolConfig), ConfigError> {
        Ok((self.var("DATABASE_URL"), self.pool()?))
    }

    /// `APIKEYS_DB_POOL_SIZE` (1–1000, default 10), `APIKEYS_DB_TIMEOUT`
    /// (a duration such as `5s`, 1 s to 60 s, default 5 s) and
    /// `APIKEYS_DB_STATEMENT_TIMEOUT` (how long one SQL statement may run,
    /// lock waits included, before it is cancelled and the request answered
    /// 503; 1 s to 600 s, default 5 s).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`].
    pub fn pool(&self) -> Result<PoolConfig, ConfigError> {
        let mut pool = PoolConfig::default();
        if let Some(size) = self.var("APIKEYS_DB_POOL_SIZE") {
            pool.max_size = size
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or_else(|| ConfigError::Invalid {
                    var: "APIKEYS_DB_POOL_SIZE",
                    reason: format!("expected a whole number from 1 to 1000, got {size:?}"),
                })?;
        }
        if let Some(timeout) = self.seconds("APIKEYS_DB_TIMEOUT", 60)? {
            pool.connection_timeout = timeout;
        }
        if let Some(timeout) = self.seconds("APIKEYS_DB_STATEMENT_TIMEOUT", 600)? {
            pool.statement_timeout = timeout;
        }
        Ok(pool)
    }

    /// A duration variable (`5s`, `2m`) of 1 to `max_secs` whole seconds;
    /// `None` when unset.
    fn seconds(&self, var: &'static str, max_secs: i64) -> Result<Option<Duration>, ConfigError> {
        let Some(raw) = self.var(var) else {
            return Ok(None);
        };
        parse_duration(raw.trim())
            .ok()
            .map(|d| d.whole_seconds())
            .filter(|secs| (1..=max_secs).contains(secs))
            .map(|secs| Some(Duration::from_secs(secs.unsigned_abs())))
            .ok_or_else(|| ConfigError::Invalid {
                var,
                reason: format!(
                    "expected a duration from 1s to {max_secs}s such as 5s, got {raw:?}"
                ),
            })
    }

    /// `APIKEYS_HASH_KEY`: at least 32 bytes, as hex (required).
    ///
    /// # Errors
    /// [`ConfigError`]; the value itself is never echoed.
    pub fn hash_key(&self) -> Result<HashKey, ConfigError> {
        let hex = self.var("APIKEYS_HASH_KEY").ok_or(ConfigError::Missing(
            "APIKEYS_HASH_KEY",
            "set it to at least 32 random bytes as hex, e.g. the output of `openssl rand -hex 32`",
        ))?;
        let invalid = |reason: String| ConfigError::Invalid {
            var: "APIKEYS_HASH_KEY",
            reason,
        };
        let key = HashKey::from_hex(&hex).map_err(|e| invalid(e.to_string()))?;
        let bytes = hex::decode(hex.trim()).map_err(|e| invalid(e.to_string()))?;
        if bytes == hex::decode(DEV_HASH_KEY_HEX).unwrap_or_default() {
            return Err(invalid(
                "it is the published development hash key of `apikeys dev`, which anyone can \
                 read: generate your own with `openssl rand -hex 32`"
                    .to_owned(),
            ));
        }
        if is_weak_hash_key(&bytes) {
            return Err(invalid(format!(
                "it is not random (fewer than {MIN_DISTINCT_BYTES} different byte values, such \
                 as all zeros or one byte repeated): generate one with `openssl rand -hex 32`"
            )));
        }
        Ok(key)
    }

    /// `APIKEYS_HASH_KEY` if set, checked as [`Env::hash_key`] does (for
    /// `migrate`, which stores or checks the hash-key verifier when it has
    /// one).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`].
    pub fn optional_hash_key(&self) -> Result<Option<HashKey>, ConfigError> {
        match self.var("APIKEYS_HASH_KEY") {
            None => Ok(None),
            Some(_) => self.hash_key().map(Some),
        }
    }

    /// `APIKEYS_BIND` (default `127.0.0.1:8080`), `APIKEYS_WORKERS`,
    /// `APIKEYS_CACHE_MAX_KEYS` (default 100,000),
    /// `APIKEYS_CACHE_SERVE_STALE` (1s–3600s; default off) and
    /// `APIKEYS_METRICS_BIND` (default: no metrics listener).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for an address that does not resolve or a bad
    /// worker count.
    pub fn server(&self) -> Result<ServerConfig, ConfigError> {
        let raw = self
            .var("APIKEYS_BIND")
            .unwrap_or_else(|| DEFAULT_BIND.to_owned());
        let bind = socket_addr("APIKEYS_BIND", &raw)?;
        let metrics_bind = self
            .var("APIKEYS_METRICS_BIND")
            .map(|raw| socket_addr("APIKEYS_METRICS_BIND", &raw))
            .transpose()?;
        let workers = match self.var("APIKEYS_WORKERS") {
            None => None,
            Some(w) => Some(
                w.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=256).contains(n))
                    .ok_or_else(|| ConfigError::Invalid {
                        var: "APIKEYS_WORKERS",
                        reason: format!("expected a whole number from 1 to 256, got {w:?}"),
                    })?,
            ),
        };
        let cache_max_keys = self.number(
            "APIKEYS_CACHE_MAX_KEYS",
            1,
            100_000_000,
            DEFAULT_CACHE_MAX_KEYS,
        )?;
        let cache_serve_stale = self.seconds("APIKEYS_CACHE_SERVE_STALE", 3600)?;
        Ok(ServerConfig {
            bind,
            workers,
            cache_max_keys,
            cache_serve_stale,
            metrics_bind,
            failure_limit: self.failure_limit()?,
            request_limits: self.request_limits()?,
            leak_reports: self.leak_reports()?,
            webhook_allow_hosts: self
                .var("APIKEYS_WEBHOOK_ALLOW_HOSTS")
                .map(|raw| {
                    raw.split(',')
                        .map(str::trim)
                        .filter(|h| !h.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            github_public_keys: self.github_public_keys()?.map(Arc::new),
        })
    }

    /// A whole number from `min` to `max`; `default` when unset.
    fn number(
        &self,
        var: &'static str,
        min: u64,
        max: u64,
        default: u64,
    ) -> Result<u64, ConfigError> {
        let Some(raw) = self.var(var) else {
            return Ok(default);
        };
        raw.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| ConfigError::Invalid {
                var,
                reason: format!("expected a whole number from {min} to {max}, got {raw:?}"),
            })
    }

    /// `APIKEYS_AUTH_FAILURE_LIMIT` (failed authentications per client
    /// address and window, 0–1,000,000, default 100, 0 disables),
    /// `APIKEYS_AUTH_FAILURE_WINDOW` (1s–86400s, default 1m),
    /// `APIKEYS_AUTH_FAILURE_MAX_ADDRESSES` (addresses tracked at once,
    /// 1–10,000,000, default 100,000) and `APIKEYS_TRUSTED_PROXIES`
    /// (addresses and CIDR ranges whose `X-Forwarded-For` is believed;
    /// default none).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`].
    pub fn failure_limit(&self) -> Result<FailureLimitConfig, ConfigError> {
        let limit = self.number(
            "APIKEYS_AUTH_FAILURE_LIMIT",
            0,
            1_000_000,
            u64::from(DEFAULT_FAILURE_LIMIT),
        )?;
        let defaults = FailureLimitConfig::default();
        let trusted_proxies = match self.var("APIKEYS_TRUSTED_PROXIES") {
            None => TrustedProxies::none(),
            Some(list) => TrustedProxies::parse(&list).map_err(|entry| ConfigError::Invalid {
                var: "APIKEYS_TRUSTED_PROXIES",
                reason: format!(
                    "expected addresses or CIDR ranges separated by commas, such as 10.0.0.0/8, 192.168.1.10; {entry:?} is neither"
                ),
            })?,
        };
        Ok(FailureLimitConfig {
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            window: self
                .seconds("APIKEYS_AUTH_FAILURE_WINDOW", 86_400)?
                .unwrap_or(defaults.window),
            max_addresses: self.number(
                "APIKEYS_AUTH_FAILURE_MAX_ADDRESSES",
                1,
                10_000_000,
                DEFAULT_MAX_ADDRESSES,
            )?,
            trusted_proxies,
        })
    }

    /// `APIKEYS_BODY_TIMEOUT` (how long a request body may take to arrive,
    /// 1s–300s, default 10s) and `APIKEYS_HEAD_TIMEOUT` (the same for the
    /// request head, 1s–300s, default 5s). The wait for storage comes from
    /// the store ([`infra_postgres::PgStore::call_bound`]).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`].
    pub fn request_limits(&self) -> Result<RequestLimits, ConfigError> {
        let defaults = RequestLimits::default();
        Ok(RequestLimits {
            body_timeout: self
                .seconds("APIKEYS_BODY_TIMEOUT", 300)?
                .unwrap_or(defaults.body_timeout),
            head_timeout: self
                .seconds("APIKEYS_HEAD_TIMEOUT", 300)?
                .unwrap_or(defaults.head_timeout),
            ..defaults
        })
    }

    /// `APIKEYS_LEAK_REPORTS_PER_MINUTE` (leak reports per client address
    /// and minute, 0–1,000,000, 0 for no limit, default 60) and
    /// `APIKEYS_LEAK_REPORTS_IN_FLIGHT` (reports processed at once on this
    /// node, 1–1,000, default 2).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`].
    pub fn leak_reports(&self) -> Result<LeakReportLimits, ConfigError> {
        let defaults = LeakReportLimits::default();
        let per_minute = self.number(
            "APIKEYS_LEAK_REPORTS_PER_MINUTE",
            0,
            1_000_000,
            u64::from(defaults.per_minute),
        )?;
        let in_flight = self.number(
            "APIKEYS_LEAK_REPORTS_IN_FLIGHT",
            1,
            1_000,
            u64::try_from(defaults.in_flight).unwrap_or(u64::MAX),
        )?;
        Ok(LeakReportLimits {
            per_minute: u32::try_from(per_minute).unwrap_or(u32::MAX),
            in_flight: usize::try_from(in_flight).unwrap_or(usize::MAX),
        })
    }

    /// `APIKEYS_GITHUB_PUBLIC_KEYS_FILE`: a file holding GitHub's secret
    /// scanning public keys, as `https://api.github.com/meta/public_keys/secret_scanning`
    /// serves them (docs/secret-scanning.md), read once now; `None` when
    /// unset.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a file that cannot be read or is not
    /// that document.
    pub fn github_public_keys(&self) -> Result<Option<GithubPublicKeys>, ConfigError> {
        const VAR: &str = "APIKEYS_GITHUB_PUBLIC_KEYS_FILE";
        let Some(path) = self.var(VAR) else {
            return Ok(None);
        };
        let invalid = |reason: String| ConfigError::Invalid { var: VAR, reason };
        let text = std::fs::read_to_string(path.trim())
            .map_err(|e| invalid(format!("cannot read {path:?}: {e}")))?;
        GithubPublicKeys::from_json(&text).map(Some).map_err(|e| {
            invalid(format!(
                "{path:?}: {e}; save https://api.github.com/meta/public_keys/secret_scanning in it"
            ))
        })
    }

    /// Whether `APIKEYS_LOG_FORMAT=json`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a value other than `json` or `text`.
    pub fn json_logs(&self) -> Result<bool, ConfigError> {
        match self.var("APIKEYS_LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("text") => Ok(false),
            Some("json") => Ok(true),
            Some(other) => Err(ConfigError::Invalid {
                var: "APIKEYS_LOG_FORMAT",
                reason: format!("expected json or text, got {other:?}"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    const GOOD_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn debug_of_the_database_config_hides_the_url() {
        let get = env(&[("DATABASE_URL", "postgres://app:s3cret@db/apikeys")]);
        let db = Env::new(&get).database().unwrap();
        let debug = format!("{db:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
    }

    #[test]
    fn missing_database_url_is_named() {
        let get = env(&[]);
        let err = Env::new(&get).database().unwrap_err();
        assert!(matches!(err, ConfigError::Missing("DATABASE_URL", _)));
    }

    #[test]
    fn short_hash_key_is_refused_without_echoing_it() {
        let get = env(&[("APIKEYS_HASH_KEY", "abcdef0123")]);
        let err = Env::new(&get).hash_key().unwrap_err();
        assert_eq!(
            err,
            ConfigError::Invalid {
                var: "APIKEYS_HASH_KEY",
                reason: "the hash key must be at least 32 bytes (64 hex characters)".into()
            }
        );
        assert!(!err.to_string().contains("abcdef0123"));
    }

    #[test]
    fn non_hex_hash_key_is_refused() {
        let get = env(&[("APIKEYS_HASH_KEY", &"zz".repeat(32))]);
        let err = Env::new(&get).hash_key().unwrap_err();
        assert_eq!(
            err.to_string(),
            "APIKEYS_HASH_KEY is invalid: the hash key must be hex"
        );
    }

    #[test]
    fn the_development_hash_key_is_refused_outside_dev() {
        let get = env(&[("APIKEYS_HASH_KEY", DEV_HASH_KEY_HEX)]);
        let err = Env::new(&get).hash_key().unwrap_err();
        assert_eq!(
            err.to_string(),
            "APIKEYS_HASH_KEY is invalid: it is the published development hash key of \
             `apikeys dev`, which anyone can read: generate your own with `openssl rand -hex 32`"
        );
        // In upper case too.
        let upper = DEV_HASH_KEY_HEX.to_uppercase();
        let get = env(&[("APIKEYS_HASH_KEY", &upper)]);
        assert!(Env::new(&get).hash_key().is_err());
        assert!(Env::new(&get).optional_hash_key().is_err());
    }

    #[test]
    fn a_hash_key_of_zeros_or_a_repeated_byte_is_refused() {
        let repeated = "ab".repeat(32);
        let pattern = "01020304".repeat(8);
        let word = "70617373776f7264".repeat(4); // "password" four times
        for weak in ["00".repeat(32), repeated, "00".repeat(64), pattern, word] {
            let get = env(&[("APIKEYS_HASH_KEY", &weak)]);
            let err = Env::new(&get).hash_key().unwrap_err();
            assert_eq!(
                err.to_string(),
                "APIKEYS_HASH_KEY is invalid: it is not random (fewer than 8 different byte \
                 values, such as all zeros or one byte repeated): generate one with \
                 `openssl rand -hex 32`",
                "{weak}"
            );
        }
    }

    #[test]
    fn good_hash_key_is_accepted() {
        let get = env(&[("APIKEYS_HASH_KEY", GOOD_KEY)]);
        assert!(Env::new(&get).hash_key().is_ok());
    }

    #[test]
    fn a_database_url_is_printed_without_its_password() {
        for (url, shown) in [
            (
                "postgres://app:s3cret@db:5432/apikeys",
                "postgres://app:PASSWORD@db:5432/apikeys",
            ),
            (
                "postgresql://app:s3c@ret@db/apikeys?sslmode=require",
                "postgresql://app:PASSWORD@db/apikeys?sslmode=require",
            ),
            (
                "postgres://db/apikeys?user=app&password=s3cret&sslmode=require",
                "postgres://db/apikeys?user=app&password=PASSWORD&sslmode=require",
            ),
            (
                "host=db user=app password=s3cret dbname=apikeys",
                "host=db user=app password=PASSWORD dbname=apikeys",
            ),
            (
                "postgres://postgres@127.0.0.1:5432/apikeys_dev",
                "postgres://postgres@127.0.0.1:5432/apikeys_dev",
            ),
        ] {
            assert_eq!(redact_database_url(url), shown, "{url}");
        }
    }

    #[test]
    fn bind_defaults_to_loopback_8080() {
        let get = env(&[]);
        let server = Env::new(&get).server().unwrap();
        assert_eq!(server.bind, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
        assert_eq!(server.workers, None);
        assert_eq!(
            server.metrics_bind, None,
            "no metrics listener unless asked"
        );
    }

    #[test]
    fn metrics_bind_is_read_and_checked() {
        let get = env(&[("APIKEYS_METRICS_BIND", "127.0.0.1:9464")]);
        assert_eq!(
            Env::new(&get).server().unwrap().metrics_bind,
            Some("127.0.0.1:9464".parse::<SocketAddr>().unwrap())
        );
        let get = env(&[("APIKEYS_METRICS_BIND", "9464")]);
        assert_eq!(
            Env::new(&get).server().unwrap_err(),
            ConfigError::Invalid {
                var: "APIKEYS_METRICS_BIND",
                reason: "expected HOST:PORT such as 127.0.0.1:8080, got \"9464\"".into(),
            }
        );
    }

    #[test]
    fn unusable_bind_address_is_refused() {
        let get = env(&[("APIKEYS_BIND", "not an address")]);
        let err = Env::new(&get).server().unwrap_err();
        assert!(matches!(
            err,
            ConfigError::Invalid {
                var: "APIKEYS_BIND",
                ..
            }
        ));
    }

    #[test]
    fn pool_settings_are_read_and_checked() {
        let get = env(&[("APIKEYS_DB_POOL_SIZE", "4"), ("APIKEYS_DB_TIMEOUT", "2s")]);
        let pool = Env::new(&get).pool().unwrap();
        assert_eq!(pool.max_size, 4);
        assert_eq!(pool.connection_timeout, Duration::from_secs(2));

        let get = env(&[("APIKEYS_DB_TIMEOUT", "5m")]);
        assert!(matches!(
            Env::new(&get).pool().unwrap_err(),
            ConfigError::Invalid {
                var: "APIKEYS_DB_TIMEOUT",
                ..
            }
        ));
        let get = env(&[("APIKEYS_DB_POOL_SIZE", "0")]);
        assert!(matches!(
            Env::new(&get).pool().unwrap_err(),
            ConfigError::Invalid {
                var: "APIKEYS_DB_POOL_SIZE",
                ..
            }
        ));
    }

    #[test]
    fn statement_timeout_is_read_and_checked() {
        let get = env(&[]);
        assert_eq!(
            Env::new(&get).pool().unwrap().statement_timeout,
            Duration::from_secs(5)
        );
        for (value, seconds) in [("1s", 1), ("30s", 30), ("10m", 600)] {
            let get = env(&[("APIKEYS_DB_STATEMENT_TIMEOUT", value)]);
            assert_eq!(
                Env::new(&get).pool().unwrap().statement_timeout,
                Duration::from_secs(seconds),
                "{value}"
            );
        }

        for value in ["0s", "11m", "1h", "5", "soon"] {
            let get = env(&[("APIKEYS_DB_STATEMENT_TIMEOUT", value)]);
            assert_eq!(
                Env::new(&get).pool().unwrap_err(),
                ConfigError::Invalid {
                    var: "APIKEYS_DB_STATEMENT_TIMEOUT",
                    reason: format!(
                        "expected a duration from 1s to 600s such as 5s, got {value:?}"
                    ),
                },
                "{value}"
            );
        }
    }

    #[test]
    fn failure_limit_defaults_allow_a_few_dozen_mistakes_a_minute() {
        let get = env(&[]);
        let limit = Env::new(&get).failure_limit().unwrap();
        assert_eq!(limit.limit, 100);
        assert_eq!(limit.window, Duration::from_secs(60));
        assert_eq!(limit.max_addresses, 100_000);
        assert!(limit.trusted_proxies.is_empty());
    }

    #[test]
    fn failure_limit_settings_are_read_and_checked() {
        let get = env(&[
            ("APIKEYS_AUTH_FAILURE_LIMIT", "0"),
            ("APIKEYS_AUTH_FAILURE_WINDOW", "10m"),
            ("APIKEYS_AUTH_FAILURE_MAX_ADDRESSES", "5000"),
            ("APIKEYS_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.10"),
        ]);
        let limit = Env::new(&get).failure_limit().unwrap();
        assert_eq!(limit.limit, 0);
        assert_eq!(limit.window, Duration::from_secs(600));
        assert_eq!(limit.max_addresses, 5000);
        assert_eq!(
            limit.trusted_proxies.to_string(),
            "10.0.0.0/8, 192.168.1.10/32"
        );
        for (var, value, reason) in [
            (
                "APIKEYS_AUTH_FAILURE_LIMIT",
                "-1",
                "expected a whole number from 0 to 1000000, got \"-1\"",
            ),
            (
                "APIKEYS_AUTH_FAILURE_WINDOW",
                "2d",
                "expected a duration from 1s to 86400s such as 5s, got \"2d\"",
            ),
            (
                "APIKEYS_AUTH_FAILURE_MAX_ADDRESSES",
                "0",
                "expected a whole number from 1 to 10000000, got \"0\"",
            ),
            (
                "APIKEYS_TRUSTED_PROXIES",
                "10.0.0.0/8, proxy.local",
                "expected addresses or CIDR ranges separated by commas, such as 10.0.0.0/8, 192.168.1.10; \"proxy.local\" is neither",
            ),
        ] {
            let get = env(&[(var, value)]);
            assert_eq!(
                Env::new(&get).failure_limit().unwrap_err(),
                ConfigError::Invalid {
                    var,
                    reason: reason.into()
                },
                "{var}"
            );
        }
    }

    #[test]
    fn request_timeouts_are_read_and_checked() {
        let get = env(&[]);
        let limits = Env::new(&get).request_limits().unwrap();
        assert_eq!(limits.body_timeout, Duration::from_secs(10));
        assert_eq!(limits.head_timeout, Duration::from_secs(5));
        let get = env(&[
            ("APIKEYS_BODY_TIMEOUT", "30s"),
            ("APIKEYS_HEAD_TIMEOUT", "2s"),
        ]);
        let limits = Env::new(&get).request_limits().unwrap();
        assert_eq!(limits.body_timeout, Duration::from_secs(30));
        assert_eq!(limits.head_timeout, Duration::from_secs(2));
        let get = env(&[("APIKEYS_BODY_TIMEOUT", "0s")]);
        assert!(matches!(
            Env::new(&get).request_limits().unwrap_err(),
            ConfigError::Invalid {
                var: "APIKEYS_BODY_TIMEOUT",
                ..
            }
        ));
    }

    #[test]
    fn githubs_public_keys_are_read_once_from_the_named_file() {
        let get = env(&[]);
        assert!(Env::new(&get).github_public_keys().unwrap().is_none());
        assert!(Env::new(&get)
            .server()
            .unwrap()
            .github_public_keys
            .is_none());

        // The file .ci/api-check serves with, in GitHub's shape.
        let fixture = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../.ci/github-public-keys.json"
        );
        let get = env(&[("APIKEYS_GITHUB_PUBLIC_KEYS_FILE", fixture)]);
        let keys = Env::new(&get).github_public_keys().unwrap().unwrap();
        assert_eq!(keys.len(), 1);
        assert!(Env::new(&get)
            .server()
            .unwrap()
            .github_public_keys
            .is_some());

        let missing = "/nonexistent/github-public-keys.json";
        let get = env(&[("APIKEYS_GITHUB_PUBLIC_KEYS_FILE", missing)]);
        let err = Env::new(&get).github_public_keys().unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { var: "APIKEYS_GITHUB_PUBLIC_KEYS_FILE", reason } if reason.starts_with("cannot read \"/nonexistent")),
            "{err}"
        );

        // A file of another shape (this crate's manifest).
        let other = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let get = env(&[("APIKEYS_GITHUB_PUBLIC_KEYS_FILE", other)]);
        let err = Env::new(&get).github_public_keys().unwrap_err();
        assert!(
            err.to_string()
                .contains("save https://api.github.com/meta/public_keys/secret_scanning in it"),
            "{err}"
        );
    }

    #[test]
    fn log_format_accepts_json_and_text_only() {
        let get = env(&[("APIKEYS_LOG_FORMAT", "json")]);
        assert!(Env::new(&get).json_logs().unwrap());
        let get = env(&[("APIKEYS_LOG_FORMAT", "text")]);
        assert!(!Env::new(&get).json_logs().unwrap());
        let get = env(&[]);
        assert!(!Env::new(&get).json_logs().unwrap());
        let get = env(&[("APIKEYS_LOG_FORMAT", "xml")]);
        assert_eq!(
            Env::new(&get).json_logs().unwrap_err(),
            ConfigError::Invalid {
                var: "APIKEYS_LOG_FORMAT",
                reason: "expected json or text, got \"xml\"".into(),
            }
        );
    }
}
