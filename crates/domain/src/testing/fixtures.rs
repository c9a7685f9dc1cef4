//! Keys for tests of code that authenticates (docs/embedding.md, section 6):
//! a real key string, which passes the checksum that a made-up token fails
//! before any authenticator is asked, and the `ApiKey` an authenticator
//! answers for it.

use time::OffsetDateTime;

use crate::api_key::ApiKey;
use crate::ids::{KeyId, TenantId};
use crate::key_kind::{KeyType, Mode};
use crate::key_string::PlainKey;
use crate::name::KeyName;
use crate::scope::Scopes;
use crate::testing::contract::T0;
use crate::testing::SeqSecretSource;

/// A real, well-formed key of `key_type` and `mode` (valid checksum), the
/// same for the same `seed`. A made-up token such as `sk_live_abc` is
/// refused as `invalid_api_key` by the key-string check, before an
/// authenticator (or a mock) is called.
pub fn well_formed_key(key_type: KeyType, mode: Mode, seed: u64) -> PlainKey {
    PlainKey::generate(key_type, mode, &SeqSecretSource::new(seed))
}

/// Builds the [`ApiKey`] of a key string, as an authenticator returns it:
/// by default active, full access (`*`), never expiring, named `Test key`,
/// created at 2024-01-10T09:00:00Z.
///
/// ```
/// use domain::testing::{well_formed_key, ApiKeyBuilder};
/// use domain::{KeyType, Mode, Scopes, TenantId};
///
/// let tenant = TenantId::parse("tnt_01HQ2ZJ8N00000000000000000").unwrap();
/// let key = well_formed_key(KeyType::Secret, Mode::Live, 1);
/// let api_key = ApiKeyBuilder::new(&key, tenant)
///     .scopes(Scopes::parse(["users:read"]).unwrap())
///     .build();
/// assert_eq!(api_key.prefix, key.prefix());
/// ```
#[derive(Debug, Clone)]
pub struct ApiKeyBuilder {
    key: ApiKey,
}

impl ApiKeyBuilder {
    /// The key object of `key`, owned by `tenant`.
    pub fn new(key: &PlainKey, tenant: TenantId) -> Self {
        ApiKeyBuilder {
            key: ApiKey {
                id: KeyId::generate(T0, &SeqSecretSource::new(0)),
                tenant_id: tenant,
                #[expect(clippy::expect_used, reason = "a constant valid name")]
                name: KeyName::parse("Test key").expect("a valid name"),
                key_type: key.key_type(),
                mode: key.mode(),
                prefix: key.prefix().to_owned(),
                last_four: key.last_four().to_owned(),
                scopes: Scopes::full(),
                created_at: T0,
                last_used_at: None,
                expires_at: None,
                revokes_at: None,
                replaced_by: None,
                limits: Default::default(),
                restrictions: Default::default(),
                metadata: Default::default(),
            },
        }
    }

    /// Its id.
    pub fn id(mut self, id: KeyId) -> Self {
        self.key.id = id;
        self
    }

    /// Its name.
    pub fn name(mut self, name: KeyName) -> Self {
        self.key.name = name;
        self
    }

    /// Its scopes.
    pub fn scopes(mut self, scopes: Scopes) -> Self {
        self.key.scopes = scopes;
        self
    }

    /// When it expires.
    pub fn expires_at(mut self, at: OffsetDateTime) -> Self {
        self.key.expires_at = Some(at);
        self
    }

    /// When it is (or was) revoked.
    pub fn revokes_at(mut self, at: OffsetDateTime) -> Self {
        self.key.revokes_at = Some(at);
        self
    }

    /// Where it may be used from (docs/api.md, "Restricting a key").
    pub fn restrictions(mut self, restrictions: crate::KeyRestrictions) -> Self {
        self.key.restrictions = restrictions;
        self
    }

    /// The key object.
    pub fn build(self) -> ApiKey {
        self.key
    }
}
