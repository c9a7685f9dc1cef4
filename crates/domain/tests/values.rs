//! Accepted and rejected inputs of the value types: key types, modes, scopes,
//! names, identifiers, hash keys and page limits, and the redacted `Debug` of
//! everything secret.

use domain::testing::SeqSecretSource;
use domain::{
    contains_key_material, Credentials, HashKey, HashKeyError, IdError, IdempotencyKey,
    IdempotencyKeyError, KeyId, KeyName, KeyNameError, KeyType, Mode, PageLimit, PageLimitError,
    PlainKey, Scope, Scopes, ScopesError, TenantId, UnknownVariant,
};
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = time::macros::datetime!(2024-01-10 09:00:00 UTC);
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

// ---- key type and mode ----

#[test]
fn key_type_parses_its_exact_wire_names_only() {
    assert_eq!(KeyType::parse("publishable"), Ok(KeyType::Publishable));
    assert_eq!(KeyType::parse("secret"), Ok(KeyType::Secret));
    for bad in [
        "Secret", "SECRET", "sk", "pk", "", " secret", "secret ", "public",
    ] {
        assert_eq!(
            KeyType::parse(bad),
            Err(UnknownVariant {
                expected: "publishable, secret"
            }),
            "{bad:?}"
        );
    }
}

#[test]
fn key_type_names_and_tags_round_trip() {
    for key_type in [KeyType::Publishable, KeyType::Secret] {
        assert_eq!(KeyType::parse(key_type.as_str()), Ok(key_type));
        assert_eq!(key_type.to_string(), key_type.as_str());
    }
    assert_eq!(KeyType::Publishable.tag(), "pk");
    assert_eq!(KeyType::Secret.tag(), "sk");
}

#[test]
fn mode_parses_live_and_test_only() {
    assert_eq!(Mode::parse("live"), Ok(Mode::Live));
    assert_eq!(Mode::parse("test"), Ok(Mode::Test));
    assert_eq!(Mode::Live.to_string(), "live");
    assert_eq!(Mode::Test.to_string(), "test");
    for bad in ["Live", "TEST", "prod", "", "live "] {
        assert_eq!(
            Mode::parse(bad),
            Err(UnknownVariant {
                expected: "live, test"
            }),
            "{bad:?}"
        );
    }
}

// ---- scopes ----

#[test]
fn every_documented_scope_round_trips_through_its_wire_name() {
    let names: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "*",
            "users:read",
            "users:write",
            "sessions:read",
            "sessions:write",
            "organizations:read",
            "organizations:write",
            "webhooks:read",
            "webhooks:write",
            "audit-logs:read",
        ]
    );
    for scope in Scope::ALL {
        assert_eq!(Scope::parse(scope.as_str()), Ok(scope));
        assert_eq!(scope.to_string(), scope.as_str());
    }
}

#[test]
fn scope_names_must_match_exactly() {
    for bad in [
        "Users:Read",
        "users:READ",
        "users",
        "users:delete",
        "audit_logs:read",
        " users:read",
        "",
        "**",
    ] {
        assert_eq!(Scope::parse(bad), Err(ScopesError::Unknown), "{bad:?}");
    }
}

#[test]
fn scopes_come_out_in_document_order_without_duplicates() {
    let scopes = Scopes::parse([
        "audit-logs:read",
        "users:write",
        "users:read",
        "audit-logs:read",
        "sessions:read",
        "users:write",
    ])
    .expect("valid scopes");

    assert_eq!(
        scopes.names().collect::<Vec<_>>(),
        [
            "users:read",
            "users:write",
            "sessions:read",
            "audit-logs:read"
        ]
    );
    assert_eq!(
        scopes.iter().collect::<Vec<_>>(),
        [
            Scope::UsersRead,
            Scope::UsersWrite,
            Scope::SessionsRead,
            Scope::AuditLogsRead
        ]
    );
    assert_eq!(
        Scopes::parse(["users:read", "users:write"]),
        Scopes::parse(["users:write", "users:read"])
    );
}

#[test]
fn scopes_are_a_set_in_the_document_order_whatever_the_input_order() {
    // Every scope but `*`, in the document's order, then reversed and
    // interleaved with duplicates.
    let table: Vec<Scope> = Scope::ALL[1..].to_vec();
    let reversed: Vec<Scope> = table.iter().rev().copied().collect();
    let shuffled: Vec<Scope> = [5, 0, 8, 3, 3, 1, 7, 2, 6, 4, 0]
        .into_iter()
        .map(|i| table[i])
        .collect();

    let sets =
        [table.clone(), reversed, shuffled].map(|scopes| Scopes::new(scopes).expect("scopes"));

    for set in sets {
        assert_eq!(set, sets[0]);
        assert_eq!(set.iter().collect::<Vec<_>>(), table);
        assert_eq!(
            set.names().collect::<Vec<_>>(),
            [
                "users:read",
                "users:write",
                "sessions:read",
                "sessions:write",
                "organizations:read",
                "organizations:write",
                "webhooks:read",
                "webhooks:write",
                "audit-logs:read",
            ]
        );
        assert!(!set.is_full_access());
        assert!(!set.allows(Scope::All));
    }
    // Sets that differ by one scope differ.
    assert_ne!(
        Scopes::new([Scope::UsersRead]).expect("scopes"),
        Scopes::new([Scope::UsersRead, Scope::UsersWrite]).expect("scopes")
    );
}

#[test]
fn each_scope_alone_is_a_set_of_itself() {
    for scope in Scope::ALL {
        let one = Scopes::new([scope]).expect("scopes");
        assert_eq!(one.iter().collect::<Vec<_>>(), [scope]);
        assert_eq!(one.names().collect::<Vec<_>>(), [scope.as_str()]);
        assert_eq!(Scopes::parse([scope.as_str()]), Ok(one));
        for other in Scope::ALL {
            assert_eq!(
                one.allows(other),
                scope == Scope::All || other == scope,
                "{scope} allows {other}"
            );
        }
    }
}

#[test]
fn wildcard_alone_is_the_full_set() {
    let full = Scopes::full();
    assert_eq!(Scopes::new([Scope::All]), Ok(full));
    assert_eq!(Scopes::new([Scope::All, Scope::All]), Ok(full));
    assert_eq!(full.iter().collect::<Vec<_>>(), [Scope::All]);
    assert_eq!(full.names().collect::<Vec<_>>(), ["*"]);
    assert!(full.is_full_access());
    // `*` with every other scope is still refused, whatever the order.
    let mut everything = Scope::ALL.to_vec();
    assert_eq!(
        Scopes::new(everything.clone()),
        Err(ScopesError::WildcardNotAlone)
    );
    everything.reverse();
    assert_eq!(Scopes::new(everything), Err(ScopesError::WildcardNotAlone));
    // Naming every scope but `*` is not full access.
    assert_ne!(Scopes::new(Scope::ALL[1..].iter().copied()), Ok(full));
}

#[test]
fn scopes_are_copied_and_debug_as_the_list_of_their_scopes() {
    let scopes = Scopes::parse(["webhooks:read", "users:read", "users:write"]).expect("scopes");
    let copy = scopes;
    assert_eq!(copy, scopes);
    assert_eq!(
        format!("{scopes:?}"),
        "Scopes([UsersRead, UsersWrite, WebhooksRead])"
    );
    assert_eq!(format!("{:?}", Scopes::full()), "Scopes([All])");
    assert_eq!(
        format!("{:?}", Scopes::new([Scope::AuditLogsRead]).expect("scopes")),
        "Scopes([AuditLogsRead])"
    );
}

#[test]
fn wildcard_scope_must_stand_alone() {
    assert_eq!(
        Scopes::parse(["*", "users:read"]),
        Err(ScopesError::WildcardNotAlone)
    );
    assert_eq!(
        Scopes::parse(["webhooks:write", "*"]),
        Err(ScopesError::WildcardNotAlone)
    );
    // A repeated `*` is still `*` alone once duplicates are removed.
    assert_eq!(Scopes::parse(["*", "*"]), Ok(Scopes::full()));
    assert_eq!(Scopes::parse(["*"]), Ok(Scopes::full()));
    assert!(Scopes::full().is_full_access());
}

#[test]
fn empty_scopes_are_rejected() {
    assert_eq!(Scopes::parse([]), Err(ScopesError::Empty));
    assert_eq!(Scopes::new([]), Err(ScopesError::Empty));
}

#[test]
fn an_unknown_scope_rejects_the_whole_list() {
    assert_eq!(
        Scopes::parse(["users:read", "users:admin"]),
        Err(ScopesError::Unknown)
    );
    assert_eq!(Scopes::parse(["*", "nope"]), Err(ScopesError::Unknown));
}

#[test]
fn wildcard_allows_every_scope_and_a_narrow_set_only_its_own() {
    let full = Scopes::full();
    let narrow = Scopes::new([Scope::UsersRead, Scope::SessionsRead]).expect("scopes");

    for scope in Scope::ALL {
        assert!(full.allows(scope), "{scope}");
    }
    assert!(narrow.allows(Scope::UsersRead));
    assert!(narrow.allows(Scope::SessionsRead));
    assert!(!narrow.allows(Scope::UsersWrite));
    assert!(!narrow.allows(Scope::All));
    assert!(!narrow.is_full_access());
}

// ---- key names ----

#[test]
fn key_name_is_trimmed() {
    let name = KeyName::parse("  Production Backend \t").expect("name");
    assert_eq!(name.as_str(), "Production Backend");
    assert_eq!(name.to_string(), "Production Backend");
}

#[test]
fn key_name_allows_100_characters_and_refuses_101() {
    let hundred = "a".repeat(100);
    assert_eq!(KeyName::parse(&hundred).map(|n| n.as_str().len()), Ok(100));
    assert_eq!(KeyName::parse(&"a".repeat(101)), Err(KeyNameError::TooLong));
    // The limit applies after trimming.
    let padded = format!("   {hundred}   ");
    assert_eq!(
        KeyName::parse(&padded).map(|n| n.as_str().to_owned()),
        Ok(hundred)
    );
}

#[test]
fn key_name_length_counts_characters_not_bytes() {
    let accents = "é".repeat(100);
    let emoji = "🔑".repeat(100);
    assert_eq!(accents.len(), 200);
    assert_eq!(emoji.len(), 400);

    assert_eq!(
        KeyName::parse(&accents).map(|n| n.as_str().to_owned()),
        Ok(accents)
    );
    assert_eq!(
        KeyName::parse(&emoji).map(|n| n.as_str().to_owned()),
        Ok(emoji)
    );
    assert_eq!(KeyName::parse(&"é".repeat(101)), Err(KeyNameError::TooLong));
}

#[test]
fn key_name_must_not_be_empty_or_blank() {
    for blank in ["", " ", "   ", "\t\n ", "\u{3000}"] {
        assert_eq!(KeyName::parse(blank), Err(KeyNameError::Empty), "{blank:?}");
    }
}

#[test]
fn key_name_must_not_contain_control_characters() {
    for bad in [
        "a\nb",
        "a\tb",
        "a\rb",
        "nul\0",
        "del\u{7f}x",
        "esc\u{1b}[31m",
        "c1\u{85}x",
    ] {
        assert_eq!(
            KeyName::parse(bad),
            Err(KeyNameError::ControlCharacter),
            "{bad:?}"
        );
    }
}

#[test]
fn key_name_that_only_looks_empty_is_empty() {
    for blank in [
        "\u{200B}",
        "\u{200D}\u{200D}",
        "\u{FEFF}",
        "\u{AD}",
        "\u{3164}",
        "\u{115F}",
        " \u{200B} \u{3164} ",
        "\u{E000}",
    ] {
        assert_eq!(KeyName::parse(blank), Err(KeyNameError::Empty), "{blank:?}");
    }
}

#[test]
fn key_name_must_not_contain_invisible_or_deceptive_characters() {
    for bad in [
        "admin\u{202E}txt.exe",
        "a\u{2066}b\u{2069}",
        "a\u{2028}b",
        "a\u{2029}b",
        "a\u{E0041}b",
        "zero\u{200B}width",
        "private\u{E000}use",
        "unassigned\u{0378}",
        "filler\u{3164}x",
        "filler\u{115F}x",
        "soft\u{AD}hyphen",
    ] {
        assert_eq!(
            KeyName::parse(bad),
            Err(KeyNameError::ControlCharacter),
            "{bad:?}"
        );
    }
    // Letters, marks, symbols and spaces of every script stay allowed.
    for good in ["Über-Dienst", "서비스 키", "e\u{301}", "ключ №1", "🔑 prod"] {
        assert_eq!(
            KeyName::parse(good).map(|n| n.as_str().to_owned()),
            Ok(good.to_owned()),
            "{good:?}"
        );
    }
}

#[test]
fn key_name_must_not_be_or_contain_a_key() {
    let key =
        PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::default()).into_secret();
    for bad in [key.clone(), format!("prod {key}"), format!("{key}!")] {
        assert_eq!(
            KeyName::parse(&bad),
            Err(KeyNameError::ContainsKey),
            "{bad:?}"
        );
    }
    assert_eq!(
        KeyNameError::ContainsKey.to_string(),
        "name must not contain an API key: names are stored and shown in clear"
    );
    // A key with a wrong checksum is no key: it stays a name.
    let mut mistyped = key.clone();
    let last = mistyped
        .pop()
        .map_or('0', |c| if c == 'a' { 'b' } else { 'a' });
    mistyped.push(last);
    assert!(KeyName::parse(&mistyped).is_ok());
}

#[test]
fn key_name_must_not_hold_a_key_without_its_tag() {
    for (key_type, mode) in [
        (KeyType::Secret, Mode::Live),
        (KeyType::Secret, Mode::Test),
        (KeyType::Publishable, Mode::Live),
        (KeyType::Publishable, Mode::Test),
    ] {
        let key = PlainKey::generate(key_type, mode, &SeqSecretSource::default()).into_secret();
        let tail = &key[8..];
        for bad in [
            tail.to_owned(),
            format!("copy of {tail}"),
            format!("{tail}-old"),
        ] {
            assert_eq!(
                KeyName::parse(&bad),
                Err(KeyNameError::ContainsKey),
                "{bad:?}"
            );
            assert!(contains_key_material(&bad), "{bad:?}");
        }
        // Inside a longer alphanumeric run it is still found.
        assert!(contains_key_material(&format!("xx{tail}yy")));
        // One character changed: the checksum no longer matches.
        let mut changed = tail.to_owned().into_bytes();
        changed[0] = if changed[0] == b'A' { b'B' } else { b'A' };
        let changed = String::from_utf8(changed).unwrap();
        assert!(!contains_key_material(&changed), "{changed:?}");
        assert!(KeyName::parse(&changed).is_ok());
        // Shorter than a key's tail: no key material.
        assert!(!contains_key_material(&tail[1..]));
    }
    assert!(!contains_key_material(""));
    assert!(!contains_key_material("Analytics Service (EU) 2026"));
}

#[test]
fn an_idempotency_key_must_not_hold_key_material() {
    let key =
        PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::default()).into_secret();
    for bad in [
        key.clone(),
        key[8..].to_owned(),
        format!("retry-{}", &key[8..]),
    ] {
        assert_eq!(
            IdempotencyKey::parse(&bad),
            Err(IdempotencyKeyError::ContainsKey),
            "{bad:?}"
        );
    }
    assert_eq!(
        IdempotencyKeyError::ContainsKey.to_string(),
        "`Idempotency-Key` must not contain an API key: it is stored in clear"
    );
    assert!(IdempotencyKey::parse("8e0f3c1e-5b7a-4d59-9d0c-2f1b6f7f3a11").is_ok());
}

#[test]
fn key_name_from_storage_keeps_what_an_older_rule_allowed() {
    let stored = KeyName::from_stored("old\u{200B}name".to_owned());
    assert_eq!(stored.as_str(), "old\u{200B}name");
}

// ---- identifiers ----

fn crockford(mut value: u128, len: usize) -> String {
    let mut out = vec![b'0'; len];
    for slot in out.iter_mut().rev() {
        *slot = CROCKFORD[(value & 0x1f) as usize];
        value >>= 5;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

#[test]
fn generated_ids_round_trip_and_carry_their_creation_time() {
    let secrets = SeqSecretSource::new(3);
    let tenant = TenantId::generate(T0, &secrets);
    let key = KeyId::generate(T0, &secrets);
    let tenant_text = tenant.to_string();
    let key_text = key.to_string();

    assert!(tenant_text.starts_with("tnt_"), "{tenant_text}");
    assert!(key_text.starts_with("key_"), "{key_text}");
    assert_eq!(tenant_text.len(), 4 + 26);
    assert_eq!(key_text.len(), 4 + 26);
    assert_eq!(TenantId::parse(&tenant_text), Ok(tenant));
    assert_eq!(key_text.parse::<KeyId>(), Ok(key));
    assert_eq!(format!("{key:?}"), key_text);
    // The first 10 ULID characters are the milliseconds since the epoch.
    let millis = (T0.unix_timestamp_nanos() / 1_000_000) as u128;
    assert_eq!(&key_text[4..14], crockford(millis, 10));
}

#[test]
fn ids_parse_only_the_prefix_and_an_upper_case_ulid() {
    let good = "01HABCDEF6665550000000000A";
    assert_eq!(good.len(), 26);
    assert!(KeyId::parse(&format!("key_{good}")).is_ok());
    assert!(TenantId::parse(&format!("tnt_{good}")).is_ok());
    // The largest ULID starts with 7.
    assert!(KeyId::parse("key_7ZZZZZZZZZZZZZZZZZZZZZZZZZ").is_ok());

    let key_err = Err(IdError::Malformed { prefix: "key_" });
    let tenant_err = Err(IdError::Malformed { prefix: "tnt_" });
    for bad in [
        format!("key_{}", good.to_lowercase()),
        format!("tnt_{good}"),
        format!("KEY_{good}"),
        format!("key{good}"),
        format!("key_{good}0"),
        format!("key_{}", &good[..25]),
        "key_8ZZZZZZZZZZZZZZZZZZZZZZZZZ".to_owned(),
        format!("key_{}I", &good[..25]),
        format!("key_{}L", &good[..25]),
        format!("key_{}O", &good[..25]),
        format!("key_{}U", &good[..25]),
        format!(" key_{good}"),
        "key_".to_owned(),
        String::new(),
    ] {
        assert_eq!(KeyId::parse(&bad), key_err, "{bad:?}");
    }
    assert_eq!(TenantId::parse(&format!("key_{good}")), tenant_err);
    assert_eq!(TenantId::parse("tnt_01HABCDEF654321"), tenant_err);
}

#[test]
fn ids_generated_later_sort_after_earlier_ones() {
    let secrets = SeqSecretSource::new(11);
    let ids: Vec<KeyId> = (0..200)
        .map(|ms| KeyId::generate(T0 + Duration::milliseconds(ms), &secrets))
        .collect();

    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids);
    let texts: Vec<String> = ids.iter().map(ToString::to_string).collect();
    let mut sorted_texts = texts.clone();
    sorted_texts.sort();
    assert_eq!(sorted_texts, texts);
}

#[test]
fn ids_generated_in_the_same_millisecond_differ() {
    let secrets = SeqSecretSource::new(5);
    let a = KeyId::generate(T0, &secrets);
    let b = KeyId::generate(T0, &secrets);
    assert_ne!(a, b);
    assert_eq!(a.to_string()[..14], b.to_string()[..14]);
}

// ---- hash keys ----

fn sample_key() -> PlainKey {
    PlainKey::generate(KeyType::Secret, Mode::Live, &SeqSecretSource::new(9))
}

#[test]
fn hash_key_from_hex_accepts_32_bytes_or_more_in_either_case() {
    let lower = "ab".repeat(32);
    let upper = lower.to_uppercase();
    let key = sample_key();
    let from_bytes = HashKey::from_bytes(&[0xab; 32]).expect("bytes");

    let from_lower = HashKey::from_hex(&lower).expect("lower-case hex");
    let from_upper = HashKey::from_hex(&upper).expect("upper-case hex");
    assert_eq!(from_lower.hash(&key), from_bytes.hash(&key));
    assert_eq!(from_upper.hash(&key), from_bytes.hash(&key));
    assert!(HashKey::from_hex(&"0f".repeat(64)).is_ok());
}

#[test]
fn hash_key_from_hex_refuses_short_odd_and_non_hex_input() {
    assert_eq!(
        HashKey::from_hex(&"ab".repeat(31)).err(),
        Some(HashKeyError::TooShort)
    );
    assert_eq!(HashKey::from_hex("").err(), Some(HashKeyError::TooShort));
    assert_eq!(
        HashKey::from_hex(&format!("{}a", "ab".repeat(32))).err(),
        Some(HashKeyError::NotHex)
    );
    for bad in [
        format!("zz{}", "ab".repeat(31)),
        format!("{}0x", "ab".repeat(32)),
        format!("+a{}", "ab".repeat(31)),
        format!("-a{}", "ab".repeat(31)),
        format!("ab {}", "ab".repeat(31)),
        format!("éé{}", "ab".repeat(31)),
    ] {
        assert_eq!(
            HashKey::from_hex(&bad).err(),
            Some(HashKeyError::NotHex),
            "{bad:?}"
        );
    }
    assert_eq!(
        HashKey::from_bytes(&[1; 31]).err(),
        Some(HashKeyError::TooShort)
    );
}

#[test]
fn hashes_depend_on_the_hash_key_and_the_full_key() {
    let a = HashKey::from_bytes(&[1; 32]).expect("hash key");
    let b = HashKey::from_bytes(&[2; 32]).expect("hash key");
    let secrets = SeqSecretSource::new(4);
    let one = PlainKey::generate(KeyType::Secret, Mode::Live, &secrets);
    let two = PlainKey::generate(KeyType::Secret, Mode::Live, &secrets);

    assert_eq!(a.hash(&one), a.hash(&one.clone()));
    assert_ne!(a.hash(&one), b.hash(&one));
    assert_ne!(a.hash(&one), a.hash(&two));
}

// ---- Debug never shows a secret ----

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn debug_of_plain_key_shows_only_its_prefix() {
    let key = sample_key();
    let secret = key.expose_secret().to_owned();
    let debug = format!("{key:?}");
    let pretty = format!("{key:#?}");

    for text in [&debug, &pretty] {
        assert!(!text.contains(&secret), "{text}");
        assert!(!text.contains(&secret[12..]), "{text}");
        assert!(!text.contains(key.last_four()), "{text}");
    }
    assert_eq!(debug, format!("PlainKey({}…[redacted])", key.prefix()));

    let credentials = Credentials::new(
        key.clone(),
        TenantId::generate(T0, &SeqSecretSource::new(1)),
    );
    assert!(!format!("{credentials:?}").contains(&secret[12..]));
}

#[test]
fn debug_of_hash_key_and_key_hash_is_redacted() {
    let raw = [0x5c; 32];
    let hash_key = HashKey::from_bytes(&raw).expect("hash key");
    let hash = hash_key.hash(&sample_key());

    assert_eq!(format!("{hash_key:?}"), "HashKey([redacted])");
    assert_eq!(format!("{hash:?}"), "KeyHash([redacted])");
    assert!(!format!("{hash_key:#?}").contains(&hex(&raw)));
    assert!(!format!("{hash:#?}").contains(&hex(hash.as_bytes())));
}

// ---- page limits ----

#[test]
fn page_limit_is_between_1_and_100_defaulting_to_100() {
    assert_eq!(PageLimit::new(0), Err(PageLimitError));
    assert_eq!(PageLimit::new(1).map(PageLimit::get), Ok(1));
    assert_eq!(PageLimit::new(100).map(PageLimit::get), Ok(100));
    assert_eq!(PageLimit::new(101), Err(PageLimitError));
    assert_eq!(PageLimit::new(u32::MAX), Err(PageLimitError));
    assert_eq!(PageLimit::default().get(), 100);
}
