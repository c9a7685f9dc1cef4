//! A cache hit: parse the presented key (shape and checksum), HMAC it, look
//! it up and judge it at the clock's time, all on the calling thread.
//!
//! `cargo bench -p key-cache -- --warm-up-time 1 --measurement-time 3`
//!
//! `limits/*` compares, in one run, a hit of an unlimited key with a hit of
//! a key limited to 1,000,000 uses per second whose use is then spent in
//! memory (docs/limits.md; the ratio is in docs/performance.md).

#![expect(clippy::expect_used, reason = "a benchmark that cannot set up fails")]
#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use domain::testing::{InMemoryStore, SeqSecretSource, TestClock};
use domain::{
    ApiKeys, Authenticator, Cost, CreateKey, Credentials, HashKey, KeyName, KeyType, Origin,
    Principal, RateLimit, Scopes, SystemClock, UsageLimits, UsageMeter,
};
use key_cache::{CacheConfig, Freshness, KeyCache, UseBuffer};

fn hit(c: &mut Criterion) {
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
    let tenant = created.tenant.id.to_string();
    let key = created.live.secret.into_secret();
    // A long window: the benchmark measures the hit, not the feed.
    let freshness = Arc::new(Freshness::new(Duration::from_secs(3600)));
    freshness.confirm(Instant::now());
    let cache = KeyCache::new(
        Arc::new(store),
        Arc::new(SystemClock),
        hash_key,
        freshness,
        Arc::new(UseBuffer::new()),
        CacheConfig::default(),
    );
    let credentials = Credentials::parse(Some(&key), Some(&tenant)).expect("credentials");
    cache.authenticate(&credentials).expect("first load");

    c.bench_function("cache_hit", |b| {
        b.iter(|| {
            let credentials = Credentials::parse(Some(black_box(&key)), Some(black_box(&tenant)))
                .expect("credentials");
            cache
                .authenticate_cached(&credentials)
                .expect("hit")
                .expect("valid")
        });
    });
}

fn limited(c: &mut Criterion) {
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
    let tenant = created.tenant.id.to_string();
    let caller = Principal::of(&created.live.key);
    let create = |name: &str, limits: UsageLimits| {
        service
            .create(
                &caller,
                None,
                CreateKey {
                    name: KeyName::parse(name).expect("name"),
                    key_type: KeyType::Secret,
                    mode: None,
                    scopes: Scopes::full(),
                    expires_in: None,
                    limits,
                    restrictions: Default::default(),
                    metadata: Default::default(),
                },
            )
            .expect("create")
            .secret
            .into_secret()
    };
    let unlimited = create("Unlimited", UsageLimits::default());
    let limited = create(
        "Limited",
        UsageLimits {
            rate_limit: Some(RateLimit::parse(1_000_000, "1s").expect("rate")),
            ..UsageLimits::default()
        },
    );
    let freshness = Arc::new(Freshness::new(Duration::from_secs(3600)));
    freshness.confirm(Instant::now());
    let cache = KeyCache::new(
        Arc::new(store.clone()),
        Arc::new(SystemClock),
        hash_key,
        freshness,
        Arc::new(UseBuffer::new()),
        CacheConfig::default(),
    );
    let meter = UsageMeter::new(Arc::new(store), Arc::new(SystemClock));
    // What a route does with a hit: authenticate, then spend the use (from
    // memory; a share from the store when this one is spent).
    let use_key = |key: &str| {
        let credentials = Credentials::parse(Some(black_box(key)), Some(black_box(&tenant)))
            .expect("credentials");
        let found = cache
            .authenticate_cached(&credentials)
            .expect("hit")
            .expect("valid");
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
    for key in [&unlimited, &limited] {
        let credentials = Credentials::parse(Some(key), Some(&tenant)).expect("credentials");
        cache.authenticate(&credentials).expect("first load");
    }
    let mut group = c.benchmark_group("limits");
    group.bench_function("unlimited", |b| b.iter(|| use_key(&unlimited)));
    group.bench_function("limited_1m_per_s", |b| b.iter(|| use_key(&limited)));
    group.finish();
}

criterion_group!(benches, hit, limited);
criterion_main!(benches);
