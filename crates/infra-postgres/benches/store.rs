//! `find_by_hash` and the writes (`insert`, `update`, `revoke`, `rotate`,
//! each with its event) against the local PostgreSQL, with a plain
//! `SELECT 1` through the same pool as the floor: a query cannot cost less
//! than one round trip. Each write's set-up (a fresh key to revoke or
//! rotate) is outside the measured time.
//!
//! `cargo bench -p infra-postgres -- --warm-up-time 1 --measurement-time 3`

#![expect(clippy::expect_used, reason = "a benchmark that cannot set up fails")]
#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use domain::testing::contract::{rename, Fixture, T0};
use domain::{ApiKeyRepository, DEFAULT_MAX_ACTIVE_KEYS};
use infra_postgres::testing::TestDatabase;

/// Keys per tenant in the insert benchmark before a fresh tenant is used, so
/// that the limit check counts a realistic number of active keys.
const KEYS_PER_TENANT: u64 = 1_000;

fn store(c: &mut Criterion) {
    let db = TestDatabase::new();
    let store = db.store();
    let f = Fixture::new();

    // A tenant with 1,000 keys; the looked-up key is one of them.
    let tenant = f.stored_tenant(&store, "Bench");
    let keys: Vec<_> = (0..1_000).map(|_| f.key(&tenant)).collect();
    for key in &keys {
        f.insert(&store, key);
    }
    let hash = keys[500].hash;

    let mut group = c.benchmark_group("postgres");
    group.bench_function("select_1", |b| b.iter(|| store.ping().expect("ping")));
    group.bench_function("find_by_hash", |b| {
        b.iter(|| store.find_by_hash(&hash).expect("find").expect("found"));
    });
    let mut inserted = 0u64;
    let mut tenant = f.stored_tenant(&store, "Inserts");
    group.bench_function("insert", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                if inserted.is_multiple_of(KEYS_PER_TENANT) && inserted > 0 {
                    tenant = f.stored_tenant(&store, "Inserts");
                }
                inserted += 1;
                let key = f.key(&tenant);
                let event = f.created_event(&key.key, T0);
                let started = Instant::now();
                store
                    .insert(&key, DEFAULT_MAX_ACTIVE_KEYS, &event)
                    .expect("insert");
                total += started.elapsed();
            }
            total
        });
    });
    let tenant = f.stored_tenant(&store, "Writes");
    let mut key = f.key(&tenant);
    f.insert(&store, &key);
    let mut flip = false;
    group.bench_function("update", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                flip = !flip;
                let changes = rename(&key.key, if flip { "Renamed" } else { "Original" });
                let started = Instant::now();
                key.key = f.update(&store, &key.key, &changes, T0).expect("update");
                total += started.elapsed();
            }
            total
        });
    });
    group.bench_function("revoke", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let key = f.key(&tenant);
                f.insert(&store, &key);
                let started = Instant::now();
                f.revoke(&store, &key.key, T0).expect("revoke");
                total += started.elapsed();
            }
            total
        });
    });
    group.bench_function("rotate", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let (old, successor) = (f.key(&tenant), f.key(&tenant));
                f.insert(&store, &old);
                let started = Instant::now();
                f.rotate(&store, &old.key, &successor, time::Duration::hours(1), T0)
                    .expect("rotate");
                total += started.elapsed();
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, store);
criterion_main!(benches);
