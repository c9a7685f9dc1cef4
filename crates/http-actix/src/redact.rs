//! Keeping key strings out of what the service echoes and logs (docs/api.md, "Secrets").
//!
//! A client can put a key where it does not belong: in the path
//! (`GET /v1/api-keys/sk_live_...` instead of the key's id), as a query
//! parameter or body field name, or as its `X-Request-ID`. The request span
//! logs the path and the request id, and error bodies name the unknown
//! parameter or field; this removes anything that looks like a key from them.

use std::borrow::Cow;

/// What a key string starts with: `{pk|sk}_{live|test}_`.
const KEY_STARTS: [&str; 4] = ["sk_live_", "sk_test_", "pk_live_", "pk_test_"];

/// What replaces a key's body.
pub(crate) const REDACTED: &str = "[redacted]";

/// `text` with the body of every key-looking token (one of the four key
/// starts followed by base62 characters) replaced by [`REDACTED`]; the
/// start (`sk_live_`) stays, so a log still shows what kind of key it was.
/// Percent-encoded text (a path's `sk%5Flive%5F...`) is decoded first, so
/// that an encoded key is found too; when a key was found the result is the
/// decoded text, redacted. Text without a key is returned as it was.
pub(crate) fn redact_keys(text: &str) -> Cow<'_, str> {
    let decoded = percent_decoded(text);
    match redact_plain(&decoded) {
        Some(redacted) => Cow::Owned(redacted),
        None => Cow::Borrowed(text),
    }
}

/// [`redact_keys`] on text already decoded: `None` when no key body was
/// found.
fn redact_plain(text: &str) -> Option<String> {
    if !KEY_STARTS.iter().any(|start| text.contains(start)) {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut found = false;
    while let Some((at, start)) = KEY_STARTS
        .iter()
        .filter_map(|start| rest.find(start).map(|at| (at, *start)))
        .min_by_key(|(at, _)| *at)
    {
        let after = &rest[at + start.len()..];
        let body_len = after.bytes().take_while(u8::is_ascii_alphanumeric).count();
        out.push_str(&rest[..at + start.len()]);
        if body_len > 0 {
            out.push_str(REDACTED);
            found = true;
        }
        rest = &after[body_len..];
    }
    out.push_str(rest);
    found.then_some(out)
}

/// `text` with its `%XX` escapes decoded (invalid UTF-8 replaced), again
/// while that changes it, a few times at most (`%255F` is an encoded `%5F`).
fn percent_decoded(text: &str) -> Cow<'_, str> {
    let mut current = Cow::Borrowed(text);
    for _ in 0..3 {
        if !current.contains('%') {
            break;
        }
        let bytes = current.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let hex = |b: u8| char::from(b).to_digit(16);
            match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
                (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                    let value = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                    out.push(u8::try_from(value).unwrap_or(b'%'));
                    i += 3;
                }
                (b, _, _) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        if out == bytes {
            break;
        }
        current = Cow::Owned(String::from_utf8_lossy(&out).into_owned());
    }
    current
}

/// Whether `text` holds a key-looking token (also percent-encoded).
pub(crate) fn has_key(text: &str) -> bool {
    matches!(redact_keys(text), Cow::Owned(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bodies_are_redacted_and_other_text_is_kept() {
        assert_eq!(
            redact_keys("/v1/api-keys/key_01HABCDEF666555"),
            "/v1/api-keys/key_01HABCDEF666555"
        );
        // A real key string, made here: no key literal lives in the source.
        let key = domain::PlainKey::generate(
            domain::KeyType::Secret,
            domain::Mode::Live,
            &domain::testing::SeqSecretSource::default(),
        )
        .into_secret();
        assert_eq!(
            redact_keys(&format!("/v1/api-keys/{key}")),
            "/v1/api-keys/sk_live_[redacted]"
        );
        assert_eq!(
            redact_keys("a pk_test_abc-sk_live_xyz/sk_test_"),
            "a pk_test_[redacted]-sk_live_[redacted]/sk_test_"
        );
        assert_eq!(redact_keys("xsk_live_abc"), "xsk_live_[redacted]");
        assert!(has_key("sk_live_abc"));
        // Percent-encoded underscores (or any other character) hide nothing.
        let encoded = key.replace('_', "%5F");
        assert_eq!(
            redact_keys(&format!("/v1/api-keys/{encoded}")),
            "/v1/api-keys/sk_live_[redacted]"
        );
        let twice = key.replace('_', "%255f");
        assert_eq!(
            redact_keys(&format!("/v1/api-keys/{twice}?a=b")),
            "/v1/api-keys/sk_live_[redacted]?a=b"
        );
        assert!(has_key(&encoded));
        // Encoded text without a key is kept as it was, not decoded.
        assert_eq!(
            redact_keys("/v1/api-keys/a%20b%5F"),
            "/v1/api-keys/a%20b%5F"
        );
        assert!(!has_key("/v1/api-keys/a%20b%5F%zz%"));
        assert!(!has_key("sk_live_"));
        assert!(!has_key("req_01HABCDEF"));
    }
}
