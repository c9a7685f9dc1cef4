//! A cache hit: parse the presented key (shape and checksum), HMAC it, look
//! it up and judge it at the clock's time, all on the calling thread.
//!
//! `cargo bench -p key-cache -- --warm-up-time 1 --measurement-time 3`
//!
//! `limits/*` compares, in one run, a hit of an unlimited key with a hit of
//! a key limited to 1,000,000 uses per second whose use is then spent in
//! memory (docs/limits.md; the ratio is in docs/performance.md).
//!
//! `restrictions/*` compares, in one run, what verify does with a cached
//! key and the client's address: a key without restrictions, and a key
//! whose `allowed_ips` holds 100 blocks (docs/performance.md).

#![expect(clippy::expect_used, reason = "a benchmark that cannot set up fails")]
#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use domain::testing::{InMemoryStore, SeqSecretSource, TestClock};
use domain::{
    AllowedIps, ApiKey, ApiKeys, Authenticator, Cost, CreateKey, Credentials, EndClient, HashKey,
    KeyName, KeyRestrictions, KeyType, Metadata, Origin, Principal, RateLimit, Scopes, SystemClock,
    UsageLimits, UsageMeter,
};
use key_cache::{CacheConfig, Freshness, KeyCache, UseBuffer};

/// One tenant on an in-memory store, and a cache over it.
struct Setup {
    store: InMemoryStore,
    hash_key: HashKey,
    service: ApiKeys,
    tenant: String,
    /// The tenant's live full-access key and its principal.
    live_key: String,
    caller: Principal,
}

impl Setup {
    fn new() -> Setup {
        let store = InMemoryStore::new();
        let hash_key = HashKey::from_bytes(&[7u8; 32]).expect("hash key");
        let service = ApiKeys::new(
            store.clone(),
            store.clone(),
            store.clone(),
            store.clone(),
            TestClock::default(),
            SeqSecretSource::new(1),
            hash_key.clone(),
        );
        let created = service
            .create_tenant(&Origin::cli(), "Bench")
            .expect("tenant");
        Setup {
            tenant: created.tenant.id.to_string(),
            caller: Principal::of(&created.live.key),
            live_key: created.live.secret.into_secret(),
            store,
            hash_key,
            service,
        }
    }

    /// A live full-access secret key named `name` with `limits` and
    /// `restrictions`.
    fn create(&self, name: &str, limits: UsageLimits, restrictions: KeyRestrictions) -> String {
        self.service
            .create(
                &self.caller,
                None,
                CreateKey {
                    name: KeyName::parse(name).expect("name"),
                    key_type: KeyType::Secret,
                    mode: None,
                    scopes: Scopes::full(),
                    expires_in: None,
                    limits,
                    restrictions,
                    metadata: Metadata::default(),
                },
            )
            .expect("create")
            .secret
            .into_secret()
    }

    /// A cache whose freshness is confirmed for an hour (the benchmarks
    /// measure the hit, not the feed) and that holds each of `keys`, loaded
    /// by a request from `client`.
    fn cache_holding(&self, keys: &[&str], client: &EndClient) -> KeyCache {
        let freshness = Arc::new(Freshness::new(Duration::from_secs(3600)));
        freshness.confirm(Instant::now());
        let cache = KeyCache::new(
            Arc::new(self.store.clone()),
            Arc::new(SystemClock),
            self.hash_key.clone(),
            freshness,
            Arc::new(UseBuffer::new()),
            CacheConfig::default(),
        );
        for key in keys {
            let credentials = Credentials::parse(Some(key), Some(&self.tenant))
                .expect("credentials")
                .from_client(client.clone());
            cache.authenticate(&credentials).expect("first load");
        }
        cache
    }

    /// A hit of `key` in `cache`: parse, HMAC, look up, judge.
    fn hit(&self, cache: &KeyCache, key: &str) -> Arc<ApiKey> {
        let credentials = Credentials::parse(Some(black_box(key)), Some(black_box(&self.tenant)))
            .expect("credentials");
        cache
            .authenticate_cached(&credentials)
            .expect("hit")
            .expect("valid")
    }
}

fn hit(c: &mut Criterion) {
    let setup = Setup::new();
    let cache = setup.cache_holding(&[&setup.live_key], &EndClient::default());
    c.bench_function("cache_hit", |b| {
        b.iter(|| setup.hit(&cache, &setup.live_key))
    });
}

fn limited(c: &mut Criterion) {
    let setup = Setup::new();
    let unlimited = setup.create(
        "Unlimited",
        UsageLimits::default(),
        KeyRestrictions::default(),
    );
    let limited = setup.create(
        "Limited",
        UsageLimits {
            rate_limit: Some(RateLimit::parse(1_000_000, "1s").expect("rate")),
            ..UsageLimits::default()
        },
        KeyRestrictions::default(),
    );
    let cache = setup.cache_holding(&[&unlimited, &limited], &EndClient::default());
    let meter = UsageMeter::new(Arc::new(setup.store.clone()), Arc::new(SystemClock));
    // What a route does with a hit: authenticate, then spend the use (from
    // memory; a share from the store when this one is spent).
    let use_key = |key: &str| {
        let found = setup.hit(&cache, key);
        let verdict = match meter.spend_cached(&found.id, &found.limits, Cost::ONE) {
            Some(verdict) => verdict,
            None => meter
                .spend(&found.id, &found.limits, Cost::ONE)
                .expect("share")
                .map(|s| s.verdict),
        };
        // In process, uses come faster than 1,000,000 a second: the rest
        // of each second's uses are refused, from memory as well.
        black_box(verdict);
        found
    };
    let mut group = c.benchmark_group("limits");
    group.bench_function("unlimited", |b| b.iter(|| use_key(&unlimited)));
    group.bench_function("limited_1m_per_s", |b| b.iter(|| use_key(&limited)));
    group.finish();
}

/// 100 disjoint IPv4 blocks that cannot be merged (`10.0.0.0/16`,
/// `10.2.0.0/16`, ..., `10.198.0.0/16`), and an address in the last.
fn hundred_blocks() -> (AllowedIps, IpAddr) {
    let blocks: Vec<String> = (0..100).map(|i| format!("10.{}.0.0/16", 2 * i)).collect();
    let ips = AllowedIps::parse(blocks.iter().map(String::as_str)).expect("blocks");
    assert_eq!(ips.blocks().len(), 100);
    (ips, IpAddr::from([10, 198, 3, 4]))
}

fn restricted(c: &mut Criterion) {
    let setup = Setup::new();
    let (allowed_ips, client) = hundred_blocks();
    let open = setup.create("Open", UsageLimits::default(), KeyRestrictions::default());
    let pinned = setup.create(
        "Pinned",
        UsageLimits::default(),
        KeyRestrictions {
            allowed_ips: Some(allowed_ips),
            allowed_origins: None,
        },
    );
    let seen = EndClient {
        ip: Some(client),
        origin: None,
    };
    let cache = setup.cache_holding(&[&open, &pinned], &seen);
    let client = client.to_string();
    // What verify does with a hit and the body's `ip`: parse the address,
    // then authenticate, which judges where the key is used from
    // (docs/api.md, "Restricting a key").
    let verify = |key: &str| {
        let ip: IpAddr = black_box(client.as_str()).parse().expect("address");
        let credentials = Credentials::parse(Some(black_box(key)), Some(black_box(&setup.tenant)))
            .expect("credentials")
            .from_client(EndClient {
                ip: Some(ip),
                origin: None,
            });
        cache
            .authenticate_cached(&credentials)
            .expect("hit")
            .expect("allowed")
    };
    let mut group = c.benchmark_group("restrictions");
    group.bench_function("unrestricted", |b| b.iter(|| verify(&open)));
    group.bench_function("allowed_ips_100_blocks", |b| b.iter(|| verify(&pinned)));
    group.finish();
}

criterion_group!(benches, hit, limited, restricted);
criterion_main!(benches);
