//! Last use: a hit buffers a use when the key's last use is a minute old
//! ([`UseBuffer`]), and the buffer is written in one `record_uses` call, kept
//! on failure, every interval and once more on stop ([`UseFlusher`]).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, Harness, T0};
use domain::mocks::MockKeyLookup;
use domain::testing::SeqSecretSource;
use domain::{ApiKeyRepository, Authenticator, KeyId, KeyUse, RepositoryError, TenantId};
use key_cache::{UseBuffer, UseFlusher, UseStats};
use time::OffsetDateTime;

const PATIENCE: Duration = Duration::from_secs(10);

/// A use of a made-up key at `at`.
fn use_at(key_id: KeyId, tenant_id: TenantId, at: OffsetDateTime) -> KeyUse {
    KeyUse {
        tenant_id,
        key_id,
        at,
        due_before: at - time::Duration::minutes(1),
    }
}

fn ids() -> (KeyId, TenantId) {
    let secrets = SeqSecretSource::new(5);
    (
        KeyId::generate(T0, &secrets),
        TenantId::generate(T0, &secrets),
    )
}

#[test]
fn a_hit_of_a_never_used_key_buffers_one_use() {
    let h = Harness::new();
    let t = h.tenant();
    assert_eq!(t.live.key.last_used_at, None);

    h.auth(&t.live).expect("valid");
    assert_eq!(h.uses.len(), 1);
    assert_eq!(h.uses.flush(h.repo.as_ref()).expect("flush"), 1);
    assert_eq!(h.repo.batches(), vec![vec![KeyUse::of(&t.live.key, T0)]]);
    assert_eq!(h.stored(&t.live.key).last_used_at, Some(T0));
}

#[test]
fn hits_within_a_minute_buffer_nothing_more_and_the_next_minute_one_more() {
    let h = Harness::new();
    let t = h.tenant();
    h.auth(&t.live).expect("valid");
    h.uses.flush(h.repo.as_ref()).expect("flush");

    for second in 1..60 {
        h.clock.set(T0 + time::Duration::seconds(second));
        assert!(matches!(h.cached(&t.live), Some(Ok(_))));
    }
    assert!(h.uses.is_empty(), "no use was due within the minute");
    assert_eq!(h.uses.flush(h.repo.as_ref()).expect("flush"), 0);
    assert_eq!(h.repo.batches().len(), 1, "an empty buffer writes nothing");

    let later = T0 + time::Duration::minutes(1);
    h.clock.set(later);
    assert!(matches!(h.cached(&t.live), Some(Ok(_))));
    h.clock.set(later + time::Duration::seconds(30));
    assert!(matches!(h.cached(&t.live), Some(Ok(_))));
    assert_eq!(h.uses.len(), 1);
    assert_eq!(h.uses.flush(h.repo.as_ref()).expect("flush"), 1);
    assert_eq!(h.repo.batches()[1], vec![KeyUse::of(&t.live.key, later)]);
    assert_eq!(h.stored(&t.live.key).last_used_at, Some(later));
}

#[test]
fn a_use_recorded_in_storage_within_the_minute_is_not_buffered_again() {
    let h = Harness::new();
    let t = h.tenant();
    let used = T0 - time::Duration::seconds(30);
    h.store
        .record_uses(&[KeyUse::of(&t.live.key, used)])
        .expect("record");

    h.auth(&t.live).expect("valid");
    assert!(h.uses.is_empty(), "used 30 s ago, by another node");

    h.clock.set(used + time::Duration::minutes(1));
    assert!(matches!(h.cached(&t.live), Some(Ok(_))));
    assert_eq!(h.uses.len(), 1);
}

#[test]
fn a_flush_writes_every_buffered_use_in_one_call() {
    let h = Harness::new();
    let t = h.tenant();
    h.auth(&t.live).expect("valid");
    h.auth(&t.test).expect("valid");
    assert_eq!(h.uses.len(), 2);

    assert_eq!(h.uses.flush(h.repo.as_ref()).expect("flush"), 2);
    let batches = h.repo.batches();
    assert_eq!(batches.len(), 1);
    let mut batch = batches[0].clone();
    batch.sort_by_key(|u| u.key_id);
    let mut expected = vec![KeyUse::of(&t.live.key, T0), KeyUse::of(&t.test.key, T0)];
    expected.sort_by_key(|u| u.key_id);
    assert_eq!(batch, expected);
    assert_eq!(h.stored(&t.live.key).last_used_at, Some(T0));
    assert_eq!(h.stored(&t.test.key).last_used_at, Some(T0));
    assert!(h.uses.is_empty());
}

#[test]
fn a_failed_flush_keeps_the_uses_for_the_next() {
    let h = Harness::new();
    let t = h.tenant();
    h.auth(&t.live).expect("valid");
    h.auth(&t.test).expect("valid");

    h.store.set_unavailable(true);
    let failed = h.uses.flush(h.repo.as_ref()).expect_err("store down");
    assert!(failed.is_unavailable());
    assert_eq!(h.uses.len(), 2, "kept");

    h.store.set_unavailable(false);
    assert_eq!(last_used(&h, &t), (None, None));
    assert_eq!(h.uses.flush(h.repo.as_ref()).expect("flush"), 2);
    assert_eq!(h.repo.batches().len(), 2);
    assert_eq!(last_used(&h, &t), (Some(T0), Some(T0)));
}

#[test]
fn stats_count_written_batches_and_rows_not_failed_or_empty_flushes() {
    let h = Harness::new();
    let t = h.tenant();
    h.auth(&t.live).expect("valid");
    h.auth(&t.test).expect("valid");

    h.store.set_unavailable(true);
    h.uses.flush(h.repo.as_ref()).expect_err("store down");
    assert_eq!(
        h.uses.stats(),
        UseStats::default(),
        "a failed flush wrote nothing"
    );

    h.store.set_unavailable(false);
    assert_eq!(h.uses.flush(h.repo.as_ref()).expect("flush"), 2);
    assert_eq!(h.uses.flush(h.repo.as_ref()).expect("empty"), 0);
    assert_eq!(
        h.uses.stats(),
        UseStats {
            batches: 1,
            rows: 2
        }
    );
}

#[test]
fn a_use_that_arrives_during_a_failed_flush_wins_over_the_one_put_back() {
    let (key, tenant) = ids();
    let buffer = Arc::new(UseBuffer::new());
    let older = use_at(key, tenant, T0);
    let newer = use_at(key, tenant, T0 + time::Duration::minutes(2));
    buffer.push(older);

    let mut failing = MockKeyLookup::new();
    {
        let buffer = buffer.clone();
        failing
            .expect_record_uses()
            .times(1)
            .withf(move |uses| uses == [older])
            .returning(move |_| {
                buffer.push(newer);
                Err(RepositoryError::unavailable("test", "down"))
            });
    }
    assert!(buffer.flush(&failing).is_err());
    assert_eq!(buffer.len(), 1);

    let mut working = MockKeyLookup::new();
    working
        .expect_record_uses()
        .times(1)
        .withf(move |uses| uses == [newer])
        .returning(|uses| Ok(uses.len()));
    assert_eq!(buffer.flush(&working).expect("flush"), 1);
    assert!(buffer.is_empty());
}

#[test]
fn a_later_use_replaces_an_earlier_one_and_not_the_reverse() {
    let (key, tenant) = ids();
    let buffer = UseBuffer::new();
    let first = use_at(key, tenant, T0);
    let second = use_at(key, tenant, T0 + time::Duration::minutes(1));
    buffer.push(first);
    buffer.push(second);
    buffer.push(first);
    assert_eq!(buffer.len(), 1);

    let mut repo = MockKeyLookup::new();
    repo.expect_record_uses()
        .times(1)
        .withf(move |uses| uses == [second])
        .returning(|uses| Ok(uses.len()));
    assert_eq!(buffer.flush(&repo).expect("flush"), 1);
}

#[test]
fn an_empty_buffer_does_not_call_the_repository() {
    let mut repo = MockKeyLookup::new();
    repo.expect_record_uses().never();
    assert_eq!(UseBuffer::new().flush(&repo).expect("flush"), 0);
}

#[test]
fn the_flusher_writes_buffered_uses_every_interval() {
    let h = Harness::new();
    let t = h.tenant();
    let mut flusher = UseFlusher::spawn(h.uses.clone(), h.repo.clone(), Duration::from_millis(10))
        .expect("spawn");
    assert!(flusher.is_running());

    h.auth(&t.live).expect("valid");
    assert!(eventually(PATIENCE, || h.stored(&t.live.key).last_used_at == Some(T0)));
    assert!(flusher.is_running(), "it keeps going");

    flusher.stop();
    assert!(!flusher.is_running());
}

#[test]
fn the_flusher_retries_after_a_failed_write() {
    let h = Harness::new();
    let t = h.tenant();
    h.auth(&t.live).expect("valid");
    h.store.set_unavailable(true);
    let mut flusher = UseFlusher::spawn(h.uses.clone(), h.repo.clone(), Duration::from_millis(10))
        .expect("spawn");

    assert!(eventually(PATIENCE, || h.repo.batches().len() >= 2));
    h.store.set_unavailable(false);
    assert!(eventually(PATIENCE, || h.stored(&t.live.key).last_used_at == Some(T0)));
    flusher.stop();
}

#[test]
fn stopping_the_flusher_flushes_what_is_pending() {
    let h = Harness::new();
    let t = h.tenant();
    let mut flusher =
        UseFlusher::spawn(h.uses.clone(), h.repo.clone(), common::LONG).expect("spawn");
    h.auth(&t.live).expect("valid");
    h.auth(&t.test).expect("valid");
    assert_eq!(h.uses.len(), 2, "nothing written before the first interval");

    flusher.stop();
    assert!(!flusher.is_running());
    assert!(h.uses.is_empty());
    assert_eq!(h.repo.batches().len(), 1, "one write, at the stop");
    assert_eq!(last_used(&h, &t), (Some(T0), Some(T0)));
}

#[test]
fn dropping_the_flusher_flushes_what_is_pending() {
    let h = Harness::new();
    let t = h.tenant();
    let flusher = UseFlusher::spawn(h.uses.clone(), h.repo.clone(), common::LONG).expect("spawn");
    h.auth(&t.live).expect("valid");

    drop(flusher);
    assert!(h.uses.is_empty());
    assert_eq!(h.stored(&t.live.key).last_used_at, Some(T0));
}

/// `last_used_at` of the tenant's live and test keys, as stored.
fn last_used(h: &Harness, t: &common::Tenant) -> (Option<OffsetDateTime>, Option<OffsetDateTime>) {
    (
        h.stored(&t.live.key).last_used_at,
        h.stored(&t.test.key).last_used_at,
    )
}

#[test]
fn a_hit_refused_for_where_the_key_is_used_from_buffers_no_use() {
    let h = Harness::new();
    let t = h.tenant();
    let pinned = h
        .node
        .create(
            &t.admin,
            None,
            domain::CreateKey {
                name: domain::KeyName::parse("Pinned").expect("name"),
                key_type: domain::KeyType::Secret,
                mode: None,
                scopes: domain::Scopes::full(),
                expires_in: None,
                limits: Default::default(),
                restrictions: domain::KeyRestrictions {
                    allowed_ips: Some(domain::AllowedIps::parse(["203.0.113.0/24"]).expect("ips")),
                    allowed_origins: None,
                },
                metadata: Default::default(),
            },
        )
        .expect("a pinned key");
    let from = |ip: &str| {
        common::credentials(&pinned).from_client(domain::EndClient {
            ip: Some(ip.parse().expect("address")),
            origin: None,
        })
    };

    // Loaded, then hit, from outside the block: refused, no use buffered.
    assert!(matches!(
        h.cache.authenticate(&from("198.51.100.7")),
        Err(domain::AuthError::IpNotAllowed)
    ));
    assert!(matches!(
        h.cache.authenticate_cached(&from("198.51.100.7")),
        Some(Err(domain::AuthError::IpNotAllowed))
    ));
    assert!(h.uses.is_empty());
    // From inside: the hit is a use.
    assert!(matches!(
        h.cache.authenticate_cached(&from("203.0.113.7")),
        Some(Ok(_))
    ));
    assert_eq!(h.uses.len(), 1);
}
