//! GitHub secret scanning's pieces that need no server
//! (docs/secret-scanning.md): the pattern to register, read from the
//! document and held against the key generator and parser, and
//! [`GithubPublicKeys`], GitHub's `public_keys` document and the
//! signatures it checks, with a key pair made here.
//!
//! The route itself is tested end to end in
//! `crates/apikeys/tests/secret_scanning.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use base64::Engine as _;
use domain::testing::SeqSecretSource;
use domain::{KeyFormatError, KeyType, Mode, OsSecretSource, PlainKey};
use http_actix::secret_scanning::SignatureError;
use http_actix::{GithubKeysError, GithubPublicKeys};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng as _;
use rand_chacha::ChaCha20Rng;
use serde_json::json;

const DOC: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/secret-scanning.md"
));

/// The one line of the fenced block of `info` in docs/secret-scanning.md.
fn documented(info: &str) -> &'static str {
    let fence = format!("```{info}\n");
    let start = DOC
        .find(&fence)
        .unwrap_or_else(|| panic!("no ```{info} block"))
        + fence.len();
    DOC[start..].lines().next().unwrap()
}

/// The token pattern, anchored: it must match a whole string.
fn token_pattern() -> regress::Regex {
    regress::Regex::new(&format!("^(?:{})$", documented("regex"))).unwrap()
}

/// The pattern with its boundaries, to find tokens in text.
fn in_text() -> regress::Regex {
    regress::Regex::new(documented("regex-with-boundaries")).unwrap()
}

fn matches(text: &str) -> bool {
    token_pattern().find(text).is_some()
}

#[test]
fn the_pattern_matches_every_secret_key_the_generator_makes() {
    let os = OsSecretSource;
    for n in 0..2_000u64 {
        let seq = SeqSecretSource::new(n);
        for mode in [Mode::Live, Mode::Test] {
            for source in [&seq as &dyn domain::SecretSource, &os] {
                let key = PlainKey::generate(KeyType::Secret, mode, source);
                assert!(matches(key.expose_secret()), "{key:?}");
                let publishable = PlainKey::generate(KeyType::Publishable, mode, source);
                assert!(
                    !matches(publishable.expose_secret()),
                    "publishable keys are not registered: {publishable:?}"
                );
            }
        }
    }
}

#[test]
fn the_pattern_finds_keys_in_text_only_as_whole_words() {
    let key = PlainKey::generate(KeyType::Secret, Mode::Live, &OsSecretSource);
    let key = key.expose_secret();
    let found = |text: &str| {
        in_text()
            .find(text)
            .and_then(|m| m.group(1))
            .map(|range| text[range].to_owned())
    };
    for text in [
        key.to_owned(),
        format!("API_KEY={key}\n"),
        format!("const key = \"{key}\";"),
        format!("Authorization: Bearer {key}"),
        format!("https://example.com/?key={key}&x=1"),
    ] {
        assert_eq!(found(&text).as_deref(), Some(key), "{text}");
    }
    for text in [
        format!("x{key}"),
        format!("{key}0"),
        format!("_{key}"),
        format!("{key}_"),
        key[..key.len() - 1].to_owned(),
    ] {
        assert_eq!(found(&text), None, "{text}");
    }
}

/// A string shaped almost like a key: a tag, then 36 to 40 characters,
/// mostly base62, sometimes not.
fn almost_keys() -> impl Strategy<Value = String> {
    let tag = prop_oneof![
        Just("sk_live_"),
        Just("sk_test_"),
        Just("pk_live_"),
        Just("sk_prod_"),
        Just("sk-live_"),
        Just("SK_LIVE_"),
    ];
    (
        tag,
        "[0-9A-Za-z]{36,40}",
        "[0-9A-Za-z_\\-\\. é]{0,2}",
        0usize..40,
    )
        .prop_map(|(tag, body, odd, at)| {
            let mut body = body;
            let at = body
                .char_indices()
                .map(|(i, _)| i)
                .nth(at % body.len())
                .unwrap_or(0);
            body.insert_str(at, &odd);
            format!("{tag}{body}")
        })
}

proptest! {
    /// What the pattern matches, the parser accepts as a secret key or
    /// refuses only for its checksum (which no regular expression can
    /// compute); what it does not match, the parser never accepts as a
    /// secret key.
    #[test]
    fn the_pattern_matches_nothing_else_the_parser_refuses(text in almost_keys()) {
        let parsed = PlainKey::parse(&text);
        if matches(&text) {
            match parsed {
                Ok(key) => prop_assert_eq!(key.key_type(), KeyType::Secret),
                Err(e) => prop_assert_eq!(e, KeyFormatError::BadChecksum),
            }
        } else {
            prop_assert!(
                !parsed.is_ok_and(|key| key.key_type() == KeyType::Secret),
                "a secret key the pattern misses: {}", text
            );
        }
    }
}

/// GitHub's `public_keys` document for these key pairs.
fn document(keys: &[(&str, &SigningKey, bool)]) -> String {
    let entries: Vec<_> = keys
        .iter()
        .map(|(id, key, current)| {
            json!({
                "key_identifier": id,
                "key": key.verifying_key().to_public_key_pem(LineEnding::LF).unwrap(),
                "is_current": current,
            })
        })
        .collect();
    json!({ "public_keys": entries }).to_string()
}

fn key_pairs() -> (SigningKey, SigningKey) {
    let mut rng = ChaCha20Rng::seed_from_u64(17);
    (SigningKey::random(&mut rng), SigningKey::random(&mut rng))
}

fn sign(key: &SigningKey, body: &[u8]) -> String {
    let signature: Signature = key.sign(body);
    base64::engine::general_purpose::STANDARD.encode(signature.to_der().as_bytes())
}

#[test]
fn a_signature_is_checked_under_the_key_it_names() {
    let (current, old) = key_pairs();
    let keys =
        GithubPublicKeys::from_json(&document(&[("new", &current, true), ("old", &old, false)]))
            .unwrap();
    assert_eq!(keys.len(), 2);
    let body = br#"[{"token":"sk_live_x","type":"t","url":"u","source":"content"}]"#;

    assert_eq!(keys.verify("new", &sign(&current, body), body), Ok(()));
    // An older key GitHub still lists is accepted.
    assert_eq!(keys.verify("old", &sign(&old, body), body), Ok(()));
    // Under the wrong key, over another body, an unknown key.
    assert_eq!(
        keys.verify("old", &sign(&current, body), body),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        keys.verify("new", &sign(&current, body), b"[]"),
        Err(SignatureError::Mismatch)
    );
    assert_eq!(
        keys.verify("other", &sign(&current, body), body),
        Err(SignatureError::UnknownKey)
    );
    // Not base64, not DER.
    assert_eq!(
        keys.verify("new", "%%%", body),
        Err(SignatureError::Malformed)
    );
    let raw = base64::engine::general_purpose::STANDARD.encode([7u8; 64]);
    assert_eq!(
        keys.verify("new", &raw, body),
        Err(SignatureError::Malformed)
    );
}

#[test]
fn a_public_keys_document_is_refused_unless_of_githubs_shape() {
    let (current, _) = key_pairs();
    let good = document(&[("a", &current, true)]);
    assert!(GithubPublicKeys::from_json(&good).is_ok());
    assert!(matches!(
        GithubPublicKeys::from_json("[]"),
        Err(GithubKeysError::Shape(_))
    ));
    assert_eq!(
        GithubPublicKeys::from_json(r#"{"public_keys": []}"#).unwrap_err(),
        GithubKeysError::Empty
    );
    assert_eq!(
        GithubPublicKeys::from_json(&document(&[("a", &current, true), ("a", &current, false)]))
            .unwrap_err(),
        GithubKeysError::Duplicate("a".to_owned())
    );
    let not_a_key = json!({"public_keys": [{"key_identifier": "b", "key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "is_current": true}]});
    assert_eq!(
        GithubPublicKeys::from_json(&not_a_key.to_string()).unwrap_err(),
        GithubKeysError::Key("b".to_owned())
    );
    // Its `Debug` names the identifiers only.
    let keys = GithubPublicKeys::from_json(&good).unwrap();
    assert_eq!(
        format!("{keys:?}"),
        r#"GithubPublicKeys { identifiers: ["a"] }"#
    );
}
