//! The pure core of `apikeys`.
//!
//! Everything the product document and the contract decide that needs no I/O
//! lives here: identifiers, key strings and their checksum, hashing, scopes,
//! names, durations, the [`ApiKey`] entity and its status over time, and the
//! use cases on [`ApiKeys`]. Storage, time and randomness are reached through
//! the traits in [`ports`]; authentication is itself a port
//! ([`Authenticator`]) so that a cache can wrap it.
//!
//! # Rules, in brief
//! - A key string is `{pk|sk}_{live|test}_` + 32 base62 characters + a
//!   6-character CRC-32 checksum ([`PlainKey`]). Only its HMAC-SHA256 under a
//!   server [`HashKey`] is stored.
//! - Authentication order: missing key, malformed key, tenant header, unknown
//!   key, revoked, expired, other tenant ([`Credentials::parse`],
//!   [`Authenticator::authenticate`]).
//! - Managing keys needs a secret key with `*`; a test key sees only test
//!   keys; a tenant always keeps one active full-access live secret key.
//! - Rotation schedules the old key's revocation after a grace period
//!   (0 s to 7 d) and gives the successor the old key's lifetime from now.
//!
//! # Features
//! - `testing`: the `testing` module, fakes for the tests of code that uses
//!   this crate, with no other dependency: `InMemoryStore` (every repository
//!   port in memory, keeping every guarantee of the port docs), `TestClock`
//!   (a clock a test sets), `SeqSecretSource` (deterministic randomness) and
//!   the repository contract suite (`repository_contract_tests!`) that every
//!   storage adapter runs.
//! - `mocks`: the `mocks` module, [mockall](https://docs.rs/mockall) mocks of
//!   every port (`MockAuthenticator`, `MockApiKeyRepository`, ...), to test a
//!   layer in isolation.

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod api_key;
pub mod auth;
pub mod clock;
pub mod duration;
pub mod errors;
pub mod events;
pub mod hashing;
pub mod idempotency;
pub mod idempotent_use_cases;
pub mod ids;
pub mod key_kind;
pub mod key_string;
pub mod leaks;
pub mod limits;
pub mod metadata;
pub mod name;
pub mod operator;
pub mod ports;
pub mod random;
pub mod requests;
pub mod restrictions;
pub mod scope;
pub mod service;
pub mod usage;
pub mod webhook_service;
pub mod webhooks;

#[cfg(any(test, feature = "mocks"))]
#[cfg_attr(docsrs, doc(cfg(feature = "mocks")))]
pub mod mocks;
#[cfg(any(test, feature = "testing"))]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use api_key::{ApiKey, KeyStatus, KeyView, NewKey, Tenant, LAST_USED_RESOLUTION};
pub use auth::{
    check_credentials, check_key, check_use, AccessError, AuthError, Authenticator, Credentials,
    EndClient, Principal,
};
pub use clock::{Clock, SystemClock};
pub use duration::{parse_duration, DurationError, ExpiresIn, GracePeriod, RateWindow};
pub use errors::{
    CreateError, CreateTenantError, GetError, ListError, ListEventsError, RevokeError, RotateError,
    UpdateError,
};
pub use events::{
    format_duration, Actor, Change, EventData, EventPage, EventQuery, EventType, FieldChanges,
    KeyEvent, LeakSource, Origin, StoredEvent,
};
pub use hashing::{HashKey, HashKeyError, KeyHash};
pub use idempotency::{
    IdempotencyKey, IdempotencyKeyError, IdempotencyRecord, IdempotencyScope, IdempotentResponse,
    Replayable, RequestFingerprint, ResponseSealer, SealedResponse, IDEMPOTENCY_WINDOW,
};
pub use ids::{DeliveryId, EndpointId, EventId, IdError, KeyId, TenantId};
pub use key_kind::{KeyType, Mode, UnknownVariant};
pub use key_string::{contains_key_material, quoted_in_error, KeyFormatError, PlainKey};
pub use leaks::{FoundReport, FoundToken, LeakReport};
pub use limits::{
    Cost, Credits, LimitError, LimitsUpdate, RateLimit, Refill, RefillInterval, UsageLimits,
};
pub use metadata::{Metadata, MetadataError, MetadataPatch};
pub use name::{is_forbidden_in_name, KeyName, KeyNameError, MAX_NAME_CHARS};
pub use operator::{CreateKeyForError, ListKeysForError, RevokeKeyForError, RevokedKey};
pub use ports::{
    ActorRefusal, ApiKeyRepository, CreateTenantRepoError, EventRepository, IdempotencyRepository,
    InsertError, KeyChangeListener, KeyLookup, KeyPage, KeyUse, ListQuery, RecordedWriteError,
    RepositoryError, RevokeRepoError, RotateRepoError, TenantRepository, UpdateRepoError,
};
pub use ports::{CreditShare, RefillDue, UsageBudget, WindowShare};
pub use ports::{EndpointScope, InsertEndpointError, WebhookRepository};
pub use random::{OsSecretSource, SecretSource};
pub use requests::{CreateKey, ListEvents, ListKeys, PageLimit, PageLimitError, UpdateKey};
pub use restrictions::{
    origin_of_url, AllowedIps, AllowedOrigin, AllowedOrigins, KeyRestrictions, RestrictionError,
    UseRefusal,
};
pub use scope::{Scope, Scopes, ScopesError};
pub use service::{
    ApiKeys, CreatedKey, CreatedTenant, KeyViewPage, RotatedKey, DEFAULT_MAX_ACTIVE_KEYS,
};
pub use usage::{Refusal, RefusalCode, Spent, UsageMeter, UsageReport, Verdict};
pub use webhook_service::{
    gets_expiring_notice, CreateEndpoint, CreatedEndpoint, ReadyDelivery, UpdateEndpoint,
    WebhookError, Webhooks,
};
pub use webhooks::{
    forbidden_address, next_attempt_after, signature_header, AllowHosts, AttemptOutcome,
    AttemptRecord, Delivery, DeliveryPage, DeliveryStatus, DueDelivery, EndpointChanges,
    EndpointPage, EventFilter, InvalidField, NewEndpoint, SealedSecret, SecretSealer,
    WebhookEndpoint, WebhookSecret, WebhookUrl,
};
