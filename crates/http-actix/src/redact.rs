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
pub(crate) fn redact_keys(text: &str) -> Cow<'_, str> {
    if !KEY_STARTS.iter().any(|start| text.contains(start)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
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
        }
        rest = &after[body_len..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Whether `text` holds a key-looking token.
pub(crate) fn has_key(text: &str) -> bool {
    matches!(redact_keys(text), Cow::Owned(ref s) if s != text)
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
        assert!(!has_key("sk_live_"));
        assert!(!has_key("req_01HABCDEF"));
    }
}
