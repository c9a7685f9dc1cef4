//! The per-request cost of checking a presented key before the database:
//! parse (shape + CRC-32 checksum) and HMAC-SHA256 under the hash key.

#![allow(missing_docs, reason = "criterion_group! generates undocumented items")]
#![expect(
    clippy::expect_used,
    reason = "a benchmark set-up that fails should stop"
)]
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use domain::{HashKey, KeyType, Mode, OsSecretSource, PlainKey};

fn key_check(c: &mut Criterion) {
    let hash_key = HashKey::from_bytes(&[0x5a; 32]).expect("hash key");
    let key = PlainKey::generate(KeyType::Secret, Mode::Live, &OsSecretSource).into_secret();

    c.bench_function("parse", |b| {
        b.iter(|| PlainKey::parse(black_box(&key)).expect("valid key"))
    });
    c.bench_function("parse_checksum_hmac", |b| {
        b.iter(|| {
            let parsed = PlainKey::parse(black_box(&key)).expect("valid key");
            hash_key.hash(&parsed)
        })
    });
    let mut broken = key.clone().into_bytes();
    broken[20] = if broken[20] == b'a' { b'b' } else { b'a' };
    let broken = String::from_utf8(broken).expect("ascii");
    c.bench_function("reject_bad_checksum", |b| {
        b.iter(|| PlainKey::parse(black_box(&broken)).is_err())
    });
}

criterion_group!(benches, key_check);
criterion_main!(benches);
