//! The request id: `X-Request-ID`, as taken from a request or made, and
//! the id of the request being served, which error bodies repeat
//! (docs/api.md, "Conventions").

use actix_web::http::header::HeaderName;
use actix_web::HttpMessage;
use domain::{OsSecretSource, SecretSource};

/// The `X-Request-ID` header.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id echoed back.
pub const MAX_REQUEST_ID_LEN: usize = 128;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The id of the current request, in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// The incoming id if it is 1 to 128 characters of `[A-Za-z0-9._-]` and
    /// holds no key material: neither a key-looking string nor a
    /// well-formed key's part after its prefix
    /// ([`domain::contains_key_material`]). It is echoed, logged and
    /// stored with the events the request writes (docs/api.md,
    /// "Conventions").
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = (1..=MAX_REQUEST_ID_LEN).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && !crate::redact::has_key(raw)
            && !domain::contains_key_material(raw);
        ok.then(|| RequestId(raw.to_owned()))
    }

    /// A fresh id: `req_` and 26 Crockford base32 characters from this
    /// thread's generator, seeded once from the OS.
    pub fn generate() -> Self {
        let mut id = String::with_capacity(30);
        id.push_str("req_");
        let (mut bits, mut left) = (0u64, 0u32);
        for _ in 0..26 {
            if left < 5 {
                bits = next_random();
                left = 64;
            }
            id.push(char::from(CROCKFORD[(bits & 31) as usize]));
            bits >>= 5;
            left -= 5;
        }
        RequestId(id)
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The next 64 bits of this thread's SplitMix64 generator, seeded once from
/// the OS's random source. A request id needs to be unique, not secret: a
/// `getrandom` system call on every request was work that can be done once
/// per thread (docs/performance.md, "Load").
fn next_random() -> u64 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new({
            let mut seed = [0u8; 8];
            OsSecretSource.fill(&mut seed);
            u64::from_le_bytes(seed)
        });
    }
    STATE.with(|state| {
        let next = state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(next);
        let mut z = next;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    })
}

tokio::task_local! {
    /// The id [`request_context`](crate::request_context) gave the request being served: a task-local,
    /// because an [`ApiError`](crate::ApiError) renders its body through
    /// `ResponseError::error_response`, which is not given the request.
    pub(crate) static CURRENT: RequestId;
}

/// The id of the request being served on this task: the one
/// [`request_context`](crate::request_context) gave it, else a fresh one (the middleware is not
/// installed), so an error body never carries an empty id.
pub(crate) fn current_or_new() -> RequestId {
    CURRENT
        .try_with(RequestId::clone)
        .unwrap_or_else(|_| RequestId::generate())
}

/// The request id [`request_context`](crate::request_context) gave `req`, to record with the changes
/// the request makes; `None` when the middleware is not installed.
pub fn request_id_of(req: &actix_web::HttpRequest) -> Option<String> {
    req.extensions()
        .get::<RequestId>()
        .map(|id| id.as_str().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_of_1_to_128_safe_characters_are_accepted() {
        assert!(RequestId::parse("a").is_some());
        assert!(RequestId::parse("A-z_0.9").is_some());
        assert!(RequestId::parse(&"x".repeat(128)).is_some());
        assert!(RequestId::parse("").is_none());
        assert!(RequestId::parse(&"x".repeat(129)).is_none());
        assert!(RequestId::parse("a b").is_none());
        assert!(RequestId::parse("a/b").is_none());
        assert!(RequestId::parse("é").is_none());
        let key = domain::PlainKey::generate(
            domain::KeyType::Secret,
            domain::Mode::Live,
            &domain::testing::SeqSecretSource::default(),
        )
        .into_secret();
        assert!(RequestId::parse(&key).is_none());
        // The key without its prefix (random part and checksum), alone or
        // inside an id.
        let tail = &key["sk_live_".len()..];
        assert!(RequestId::parse(tail).is_none());
        assert!(RequestId::parse(&format!("trace-{tail}.1")).is_none());
        // The random part alone (no checksum) is not a key.
        assert!(RequestId::parse(&tail[..tail.len() - 1]).is_some());
    }

    #[test]
    fn generated_request_ids_are_well_formed_and_distinct() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a, b);
        let many: std::collections::HashSet<RequestId> =
            (0..10_000).map(|_| RequestId::generate()).collect();
        assert_eq!(many.len(), 10_000);
        let other_thread = std::thread::spawn(RequestId::generate)
            .join()
            .expect("thread");
        assert!(!many.contains(&other_thread));
        assert!(a.as_str().starts_with("req_"));
        assert_eq!(a.as_str().len(), 30);
        assert!(RequestId::parse(a.as_str()).is_some());
    }
}
