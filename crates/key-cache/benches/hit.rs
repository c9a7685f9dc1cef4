//! A cache hit: parse the presented key (shape and checksum), HMAC it, look
//! it up and judge it at the clock's time, all on the calling thread.
//!
//! `cargo bench -p key-cache -- --warm-up-time 1 --measurement-time 3`

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
use domain::{ApiKeys, Authenticator, Credentials, HashKey, Origin, SystemClock};
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

criterion_group!(benches, hit);
criterion_main!(benches);
