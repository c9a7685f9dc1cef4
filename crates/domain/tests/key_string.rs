//! The key string (docs/api.md, "Key strings"): generation, parsing, the CRC-32 checksum,
//! prefix and last four, and the uniformity of the base62 body.

use std::sync::atomic::{AtomicU32, Ordering};

use domain::key_string::{BASE62, BODY_LEN, CHECKSUM_LEN, KEY_LEN};
use domain::testing::SeqSecretSource;
use domain::{KeyFormatError, KeyType, Mode, OsSecretSource, PlainKey, SecretSource};

const KINDS: [(KeyType, Mode, &str); 4] = [
    (KeyType::Secret, Mode::Live, "sk_live_"),
    (KeyType::Secret, Mode::Test, "sk_test_"),
    (KeyType::Publishable, Mode::Live, "pk_live_"),
    (KeyType::Publishable, Mode::Test, "pk_test_"),
];

/// CRC-32 (IEEE, reflected 0xEDB88320), written out independently of the crate.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn base62_6(mut value: u32) -> String {
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(value % 62) as usize];
        value /= 62;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

fn with_checksum(payload: &str) -> String {
    format!("{payload}{}", base62_6(crc32(payload.as_bytes())))
}

#[test]
fn independent_crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

#[test]
fn generated_keys_have_the_documented_shape_and_parse() {
    for (key_type, mode, tag) in KINDS {
        for _ in 0..50 {
            let key = PlainKey::generate(key_type, mode, &OsSecretSource);
            let text = key.expose_secret().to_owned();

            assert_eq!(text.len(), KEY_LEN);
            assert_eq!(KEY_LEN, 8 + 32 + 6);
            assert!(text.starts_with(tag), "{tag}");
            assert!(text[8..].bytes().all(|b| BASE62.contains(&b)));
            assert_eq!(text, with_checksum(&text[..8 + BODY_LEN]));

            let parsed = PlainKey::parse(&text).expect("a generated key parses");
            assert_eq!(parsed, key);
            assert_eq!(parsed.key_type(), key_type);
            assert_eq!(parsed.mode(), mode);
        }
    }
}

#[test]
fn a_key_with_an_independently_computed_checksum_parses() {
    let text = with_checksum(&format!("pk_test_{}", "Zz09".repeat(8)));
    let key = PlainKey::parse(&text).expect("valid key");
    assert_eq!(key.key_type(), KeyType::Publishable);
    assert_eq!(key.mode(), Mode::Test);
    assert_eq!(key.into_secret(), text);
}

#[test]
fn prefix_is_the_first_12_characters_and_last_four_the_last_4() {
    let text = with_checksum(&format!("sk_live_abc1{}", "x".repeat(28)));
    let key = PlainKey::parse(&text).expect("valid key");

    assert_eq!(key.prefix(), "sk_live_abc1");
    assert_eq!(key.last_four(), &text[KEY_LEN - 4..]);
    assert_eq!(key.last_four().len(), 4);
    // The last four are checksum characters: they reveal nothing of the body.
    assert_eq!(
        key.last_four(),
        &base62_6(crc32(&text.as_bytes()[..40]))[2..]
    );
}

#[test]
fn every_single_character_change_is_caught() {
    let mut replacements: Vec<u8> = BASE62.to_vec();
    replacements.extend_from_slice(b"_-+/= .\0~");
    for seed in 1..=5 {
        let secrets = SeqSecretSource::new(seed);
        for (key_type, mode, _) in KINDS {
            let key = PlainKey::generate(key_type, mode, &secrets).into_secret();
            for position in 0..KEY_LEN {
                for &replacement in &replacements {
                    let mut bytes = key.clone().into_bytes();
                    if bytes[position] == replacement {
                        continue;
                    }
                    bytes[position] = replacement;
                    let changed = String::from_utf8(bytes).expect("ascii");
                    let outcome = PlainKey::parse(&changed).map(|_| ());

                    if position >= 8 && replacement.is_ascii_alphanumeric() {
                        // Well formed, so only the checksum can catch it.
                        assert_eq!(
                            outcome,
                            Err(KeyFormatError::BadChecksum),
                            "position {position}"
                        );
                    } else {
                        assert!(outcome.is_err(), "position {position}");
                    }
                }
            }
        }
    }
}

#[test]
fn changing_the_type_tag_alone_breaks_the_checksum() {
    let key =
        PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::new(8)).into_secret();
    let as_publishable = format!("p{}", &key[1..]);
    assert_eq!(
        PlainKey::parse(&as_publishable),
        Err(KeyFormatError::BadChecksum)
    );
    let as_test = format!("sk_test_{}", &key[8..]);
    assert_eq!(PlainKey::parse(&as_test), Err(KeyFormatError::BadChecksum));
}

#[test]
fn swapping_two_adjacent_characters_is_caught() {
    let key =
        PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::new(21)).into_secret();
    for position in 8..KEY_LEN - 1 {
        let mut bytes = key.clone().into_bytes();
        if bytes[position] == bytes[position + 1] {
            continue;
        }
        bytes.swap(position, position + 1);
        let swapped = String::from_utf8(bytes).expect("ascii");
        assert_eq!(
            PlainKey::parse(&swapped),
            Err(KeyFormatError::BadChecksum),
            "position {position}"
        );
    }
}

#[test]
fn strings_of_the_wrong_shape_are_malformed() {
    let valid = with_checksum(&format!("sk_live_{}", "a".repeat(32)));
    assert!(PlainKey::parse(&valid).is_ok());
    let body = &valid[8..];

    for bad in [
        String::new(),
        "sk_live_abc123".to_owned(),
        valid[..KEY_LEN - 1].to_owned(),
        format!("{valid}0"),
        format!(" {}", &valid[1..]),
        format!("{valid} "),
        format!("Bearer {valid}"),
        format!("ak_live_{body}"),
        format!("SK_LIVE_{body}"),
        format!("sk-live-{body}"),
        format!("sk_prod_{body}"),
        format!("sk_Live_{body}"),
        format!("sk_live_{}_{}", &body[..10], &body[11..]),
        // Same byte length, but not ASCII.
        format!("sk_live_é{}", &body[2..]),
    ] {
        assert_eq!(
            PlainKey::parse(&bad),
            Err(KeyFormatError::Malformed),
            "{bad:?}"
        );
    }
}

#[test]
fn into_secret_hands_over_the_full_key() {
    let key = PlainKey::generate(KeyType::Secret, Mode::Test, &SeqSecretSource::new(2));
    let exposed = key.expose_secret().to_owned();
    assert_eq!(key.into_secret(), exposed);
}

/// One byte value per `fill` call, cycling through 0..=255.
struct CyclingSource(AtomicU32);

impl SecretSource for CyclingSource {
    fn fill(&self, buf: &mut [u8]) {
        let value = (self.0.fetch_add(1, Ordering::Relaxed) % 256) as u8;
        buf.fill(value);
    }
}

#[test]
fn every_byte_value_below_248_maps_to_each_character_equally_often() {
    // Given a source that yields each byte value in turn, once per draw,
    let source = CyclingSource(AtomicU32::new(0));
    let mut counts = [0u32; 62];
    // when a full cycle of keys is generated (values 248..=255 must be redrawn),
    for _ in 0..248 {
        let key = PlainKey::generate(KeyType::Secret, Mode::Live, &source).into_secret();
        for b in key[8..8 + BODY_LEN].bytes() {
            let index = BASE62.iter().position(|&c| c == b).expect("base62");
            counts[index] += 1;
        }
    }
    // then every character appears exactly 4 * 32 times: no modulo bias.
    assert_eq!(counts, [4 * 32; 62]);
}

#[test]
fn rejected_byte_values_are_drawn_again_not_mapped() {
    // A source whose first draw is all 255 and second all 0.
    let source = CyclingSource(AtomicU32::new(255));
    let key = PlainKey::generate(KeyType::Secret, Mode::Live, &source).into_secret();
    assert_eq!(&key[8..8 + BODY_LEN], "0".repeat(BODY_LEN));
    assert_eq!(key.len(), 8 + BODY_LEN + CHECKSUM_LEN);
}

#[test]
fn base62_body_is_uniform_over_many_draws() {
    // Given 10,000 keys from the operating system's generator (320,000 characters),
    const KEYS: usize = 10_000;
    let mut counts = [0u64; 62];
    for _ in 0..KEYS {
        let key = PlainKey::generate(KeyType::Secret, Mode::Live, &OsSecretSource).into_secret();
        for b in key[8..8 + BODY_LEN].bytes() {
            counts[BASE62.iter().position(|&c| c == b).expect("base62")] += 1;
        }
    }
    // then Pearson's chi-square over the 62 characters (61 degrees of freedom)
    // stays below 150, which a uniform source exceeds with probability about
    // 1e-8. Plain `byte % 62` (no redraw) gives about 2,100 here.
    let total = (KEYS * BODY_LEN) as f64;
    let expected = total / 62.0;
    let chi_square: f64 = counts
        .iter()
        .map(|&c| {
            let d = c as f64 - expected;
            d * d / expected
        })
        .sum();
    assert!(
        chi_square < 150.0,
        "chi-square {chi_square:.1}, counts {counts:?}"
    );
    // and no single character strays more than 5% from its share.
    for (i, &c) in counts.iter().enumerate() {
        let ratio = c as f64 / expected;
        assert!(
            (0.95..1.05).contains(&ratio),
            "{} appeared {c} times",
            char::from(BASE62[i])
        );
    }
}
