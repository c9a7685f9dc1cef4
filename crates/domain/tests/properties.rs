//! Property tests of the parsers at the edge of the domain: key strings,
//! durations, identifiers, names and scopes. Inputs are generated from each
//! grammar and then mutated, and also drawn at random, so both the near
//! misses and the garbage are covered.
//!
//! `cargo test` runs proptest's default number of cases (256 a property);
//! `just fuzz` runs each with `PROPTEST_CASES` set high (docs/performance.md,
//! "Fuzzing").

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use domain::{
    contains_key_material, is_forbidden_in_name, parse_duration, DurationError, ExpiresIn,
    GracePeriod, KeyFormatError, KeyId, KeyName, KeyType, Mode, PlainKey, Scope, Scopes,
    SecretSource, TenantId, MAX_NAME_CHARS,
};
use proptest::prelude::*;

/// Random bytes from the test case, cycled: the key generator draws as many
/// as it needs.
struct Bytes(Vec<u8>);

impl SecretSource for Bytes {
    fn fill(&self, buf: &mut [u8]) {
        for (slot, byte) in buf.iter_mut().zip(self.0.iter().cycle()) {
            *slot = *byte;
        }
    }
}

fn key_type() -> impl Strategy<Value = KeyType> {
    prop_oneof![Just(KeyType::Secret), Just(KeyType::Publishable)]
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Live), Just(Mode::Test)]
}

/// A key made by the generator from arbitrary random bytes; the bytes hold
/// at least one value below 248, so the generator can always draw.
fn key() -> impl Strategy<Value = PlainKey> {
    (
        key_type(),
        mode(),
        prop::collection::vec(any::<u8>(), 1..64),
        0u8..248,
    )
        .prop_map(|(key_type, mode, mut bytes, usable)| {
            bytes.push(usable);
            PlainKey::generate(key_type, mode, &Bytes(bytes))
        })
}

proptest! {
    // Cases from `PROPTEST_CASES` (default 256); failures are reported, not
    // written into the source tree.
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_generated_key_parses_back_to_itself(key in key()) {
        let text = key.expose_secret().to_owned();
        let parsed = PlainKey::parse(&text).unwrap();
        prop_assert_eq!(parsed.key_type(), key.key_type());
        prop_assert_eq!(parsed.mode(), key.mode());
        prop_assert_eq!(parsed.expose_secret(), text.as_str());
        prop_assert_eq!(parsed.prefix(), &text[..12]);
        prop_assert_eq!(parsed.last_four(), &text[text.len() - 4..]);
        prop_assert!(text.bytes().skip(8).all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn every_single_character_change_of_a_key_is_caught(
        key in key(),
        at in 0usize..46,
        replacement in any::<char>(),
    ) {
        let text = key.expose_secret();
        let original = text[at..].chars().next().unwrap();
        // Never the same character (no rejected cases: `just fuzz` runs
        // hundreds of thousands).
        let replacement = if replacement == original {
            if original == '0' { '1' } else { '0' }
        } else {
            replacement
        };
        let mut changed = String::with_capacity(text.len() + 4);
        changed.push_str(&text[..at]);
        changed.push(replacement);
        changed.push_str(&text[at + 1..]);
        // Another tag is another key's shape (sk→pk); CRC-32 over the tag
        // catches that too.
        prop_assert!(PlainKey::parse(&changed).is_err(), "{} accepted", at);
    }

    #[test]
    fn a_dropped_or_added_character_is_caught(key in key(), at in 0usize..46, extra in any::<char>()) {
        let text = key.expose_secret();
        let mut shorter = text.to_owned();
        shorter.remove(at);
        prop_assert_eq!(PlainKey::parse(&shorter).unwrap_err(), KeyFormatError::Malformed);
        let mut longer = text.to_owned();
        longer.insert(at, extra);
        prop_assert_eq!(PlainKey::parse(&longer).unwrap_err(), KeyFormatError::Malformed);
    }

    #[test]
    fn a_key_or_its_tail_is_found_in_any_text_around_it(
        key in key(),
        before in "[ -~]{0,40}",
        after in "[ -~]{0,40}",
        tagged in any::<bool>(),
    ) {
        let text = key.expose_secret();
        let material = if tagged { text } else { &text[8..] };
        let found = contains_key_material(&format!("{before}{material}{after}"));
        prop_assert!(found);
    }

    #[test]
    fn random_alphanumerics_of_a_keys_length_are_no_key_material(s in "[0-9A-Za-z]{38,60}") {
        // A false alarm needs a CRC-32 match: about 7 in 10^11 per window.
        prop_assert!(!contains_key_material(&s));
        prop_assert!(KeyName::parse(&s).is_ok());
    }

    #[test]
    fn the_key_parser_never_panics(s in any::<String>(), near in "[sp]k_(live|test)_[0-9A-Za-z\u{80}-\u{10FFFF}]{36,40}") {
        let _ = PlainKey::parse(&s);
        let _ = PlainKey::parse(&near);
    }

    #[test]
    fn durations_of_the_grammar_parse_to_their_seconds(n in 0i64..10_000_000, unit in 0usize..6) {
        let (suffix, seconds) = [("s", 1), ("m", 60), ("h", 3600), ("d", 86_400), ("w", 604_800), ("y", 31_536_000)][unit];
        let parsed = parse_duration(&format!("{n}{suffix}")).unwrap();
        prop_assert_eq!(parsed.whole_seconds(), n * seconds);
        let in_bounds = |d: time::Duration, min: i64, max: i64| (min..=max).contains(&d.whole_seconds());
        prop_assert_eq!(
            ExpiresIn::parse(&format!("{n}{suffix}")).is_ok(),
            in_bounds(parsed, 60, 10 * 31_536_000)
        );
        prop_assert_eq!(
            GracePeriod::parse(&format!("{n}{suffix}")).is_ok(),
            in_bounds(parsed, 0, 604_800)
        );
    }

    #[test]
    fn anything_off_the_duration_grammar_is_malformed(s in any::<String>()) {
        let on_grammar = s.split_at_checked(s.len().saturating_sub(1)).is_some_and(|(digits, unit)| {
            !digits.is_empty()
                && digits.bytes().all(|b| b.is_ascii_digit())
                && (digits == "0" || !digits.starts_with('0'))
                && matches!(unit, "s" | "m" | "h" | "d" | "w" | "y")
        });
        if !on_grammar {
            prop_assert_eq!(parse_duration(&s), Err(DurationError::Malformed));
        }
    }

    #[test]
    fn generated_ids_parse_back_and_nothing_else_panics(
        millis in 0i64..253_402_300_799_000,
        bytes in prop::collection::vec(any::<u8>(), 1..32),
        s in any::<String>(),
        near in "(key|tnt)_[0-9A-Za-z\u{80}-\u{10FFFF}]{24,28}",
    ) {
        let now = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).unwrap();
        let key = KeyId::generate(now, &Bytes(bytes.clone()));
        prop_assert_eq!(KeyId::parse(&key.to_string()), Ok(key));
        let tenant = TenantId::generate(now, &Bytes(bytes));
        prop_assert_eq!(TenantId::parse(&tenant.to_string()), Ok(tenant));
        prop_assert!(KeyId::parse(&tenant.to_string()).is_err());
        for input in [&s, &near] {
            if let Ok(id) = KeyId::parse(input) {
                prop_assert_eq!(&id.to_string(), input);
            }
            if let Ok(id) = TenantId::parse(input) {
                prop_assert_eq!(&id.to_string(), input);
            }
        }
    }

    #[test]
    fn an_accepted_name_shows_what_it_is(
        s in any::<String>(),
        mixed in "[ a-zA-Z\u{AD}\u{200B}-\u{200F}\u{202A}-\u{202E}\u{2066}-\u{2069}\u{3164}\u{115F}\u{E000}\u{FEFF}\u{0378}\u{2028}é🔑]{0,120}",
    ) {
        for input in [&s, &mixed] {
            if let Ok(name) = KeyName::parse(input) {
                let text = name.as_str();
                prop_assert_eq!(text, text.trim());
                prop_assert!(!text.is_empty());
                prop_assert!(text.chars().count() <= MAX_NAME_CHARS);
                prop_assert!(!text.chars().any(is_forbidden_in_name));
                prop_assert!(text.chars().any(|c| !c.is_whitespace()));
                prop_assert_eq!(KeyName::parse(text), Ok(name.clone()));
            }
        }
    }

    #[test]
    fn a_name_holding_a_key_is_refused_wherever_the_key_is(
        key in key(),
        before in "[a-z ]{0,20}",
        after in "[a-z ]{0,20}",
    ) {
        let name = format!("{before}{}{after}", key.expose_secret());
        prop_assert!(KeyName::parse(&name).is_err());
    }

    #[test]
    fn scopes_parse_to_a_canonical_set_or_refuse(
        picks in prop::collection::vec(0usize..12, 0..8),
        junk in prop::collection::vec(any::<String>(), 0..3),
    ) {
        let names: Vec<&str> = picks
            .iter()
            .map(|&i| Scope::ALL.get(i).map_or("users:nope", |s| s.as_str()))
            .collect();
        let outcome = Scopes::parse(names.iter().copied());
        let known = picks.iter().all(|&i| i < Scope::ALL.len());
        if let Ok(scopes) = &outcome {
            prop_assert!(known);
            // Canonical: parsing its own names again gives the same set.
            let again = Scopes::parse(scopes.names()).unwrap();
            prop_assert_eq!(&again, scopes);
            for &i in &picks {
                prop_assert!(scopes.allows(Scope::ALL[i]));
            }
        } else {
            prop_assert!(!known || names.is_empty() || (names.len() > 1 && names.contains(&"*")));
        }
        let _ = Scopes::parse(junk.iter().map(String::as_str));
    }
}
