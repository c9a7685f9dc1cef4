//! Shared fixture: a real service over the in-memory store, a test clock and
//! a deterministic secret source, with one tenant made through the domain.

#![allow(dead_code, reason = "each test file uses a different part")]

use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, StatusCode};
use actix_web::test::{self, TestRequest};
use domain::testing::{InMemoryStore, SeqSecretSource, TestClock};
use domain::{
    ApiKeys, Authenticator, CreateKey, ExpiresIn, HashKey, KeyName, KeyType, Mode, Origin,
    Principal, RepositoryError, Scopes, TenantRepository,
};
use http_actix::{AppState, Readiness};
use serde_json::Value;

/// `/readyz` over the in-memory store.
pub struct StoreReadiness(pub InMemoryStore);

impl Readiness for StoreReadiness {
    fn check(&self) -> Result<(), RepositoryError> {
        self.0.find_tenant_by_name("readiness probe").map(|_| ())
    }
}

/// A tenant and its two first keys.
pub struct TenantKeys {
    pub tenant: String,
    pub live: String,
    pub live_id: String,
    pub test: String,
    pub test_id: String,
}

pub struct Fx {
    pub store: InMemoryStore,
    pub clock: TestClock,
    pub service: Arc<ApiKeys>,
    pub acme: TenantKeys,
}

pub fn service_over(store: &InMemoryStore, clock: &TestClock, max_keys: u32) -> Arc<ApiKeys> {
    let hash_key = HashKey::from_bytes(&[7u8; 32]).unwrap();
    Arc::new(
        ApiKeys::new(
            store.clone(),
            store.clone(),
            store.clone(),
            store.clone(),
            clock.clone(),
            SeqSecretSource::new(42),
            hash_key,
        )
        .with_max_active_keys(max_keys),
    )
}

impl Fx {
    pub fn new() -> Self {
        Self::with_max_keys(domain::DEFAULT_MAX_ACTIVE_KEYS)
    }

    pub fn with_max_keys(max: u32) -> Self {
        let store = InMemoryStore::new();
        let clock = TestClock::default();
        let service = service_over(&store, &clock, max);
        let acme = Self::tenant_of(&service, "Acme");
        Fx {
            store,
            clock,
            service,
            acme,
        }
    }

    pub fn tenant_of(service: &ApiKeys, name: &str) -> TenantKeys {
        let created = service.create_tenant(&Origin::cli(), name).unwrap();
        TenantKeys {
            tenant: created.tenant.id.to_string(),
            live_id: created.live.key.id.to_string(),
            live: created.live.secret.into_secret(),
            test_id: created.test.key.id.to_string(),
            test: created.test.secret.into_secret(),
        }
    }

    pub fn state(&self) -> AppState {
        let authenticator: Arc<dyn Authenticator> = self.service.clone();
        AppState::new(
            self.service.clone(),
            authenticator,
            Arc::new(StoreReadiness(self.store.clone())),
        )
    }

    /// [`Fx::state`] with another authenticator (a mock) in front of the
    /// same service.
    pub fn state_with(&self, authenticator: impl Authenticator + 'static) -> AppState {
        let authenticator: Arc<dyn Authenticator> = Arc::new(authenticator);
        AppState::new(
            self.service.clone(),
            authenticator,
            Arc::new(StoreReadiness(self.store.clone())),
        )
    }

    /// The principal of Acme's live full-access key, to make keys directly.
    pub fn live_principal(&self) -> Principal {
        Principal {
            tenant_id: self.acme.tenant.parse().unwrap(),
            key_id: self.acme.live_id.parse().unwrap(),
            key_type: KeyType::Secret,
            mode: Mode::Live,
            scopes: Scopes::full(),
        }
    }

    /// Makes a key in Acme through the domain; returns (id, value).
    pub fn make_key(
        &self,
        key_type: KeyType,
        mode: Mode,
        scopes: &[&str],
        expires_in: Option<&str>,
    ) -> (String, String) {
        self.make_restricted_key(CreateKey {
            name: KeyName::parse("Made in a test").unwrap(),
            key_type,
            mode: Some(mode),
            scopes: Scopes::parse(scopes.iter().copied()).unwrap(),
            expires_in: expires_in.map(|e| ExpiresIn::parse(e).unwrap()),
            limits: Default::default(),
            restrictions: domain::KeyRestrictions::default(),
            metadata: domain::Metadata::default(),
        })
    }

    /// Makes the key `request` asks for (restrictions and metadata
    /// included) in Acme; returns (id, value).
    pub fn make_restricted_key(&self, request: CreateKey) -> (String, String) {
        let created = self
            .service
            .create(&self.live_principal(), None, request)
            .unwrap();
        (created.key.id.to_string(), created.secret.into_secret())
    }

    /// A request with Acme's tenant header and `key` as bearer.
    pub fn req(&self, method: Method, uri: &str, key: &str) -> TestRequest {
        authed(method, uri, key, &self.acme.tenant)
    }

    /// [`Fx::req`] with a JSON body.
    pub fn req_json(&self, method: Method, uri: &str, key: &str, body: &Value) -> TestRequest {
        with_json(self.req(method, uri, key), body)
    }
}

pub fn authed(method: Method, uri: &str, key: &str, tenant: &str) -> TestRequest {
    TestRequest::default()
        .method(method)
        .uri(uri)
        .insert_header(("Authorization", format!("Bearer {key}")))
        .insert_header(("X-Tenant-ID", tenant.to_owned()))
}

/// A JSON body request.
pub fn with_json(req: TestRequest, body: &Value) -> TestRequest {
    req.insert_header(("Content-Type", "application/json"))
        .set_payload(body.to_string())
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The field names, in the order sent, of the object at `path` (object
    /// fields by name, array items by index).
    pub fn keys_at(&self, path: &[&str]) -> Vec<String> {
        let root: Ordered = serde_json::from_slice(&self.body).unwrap();
        let mut node = &root;
        for step in path {
            node = match node {
                Ordered::Object(fields) => &fields.iter().find(|(k, _)| k == step).unwrap().1,
                Ordered::Array(items) => &items[step.parse::<usize>().unwrap()],
                Ordered::Scalar => panic!("no {step} in a scalar"),
            };
        }
        match node {
            Ordered::Object(fields) => fields.iter().map(|(k, _)| k.clone()).collect(),
            _ => panic!("not an object at {path:?}"),
        }
    }

    /// Asserts a JSON error: status, code, param, request id, and the
    /// headers that go with the status.
    pub fn assert_error(&self, status: StatusCode, code: &str, param: Option<&str>) {
        let body = self.json();
        assert_eq!(self.status, status, "status; body: {body}");
        let error = &body["error"];
        assert_eq!(error["code"], code, "code; body: {body}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(
            error.get("param").and_then(Value::as_str),
            param,
            "param; body: {body}"
        );
        let request_id = self.header("x-request-id").unwrap();
        assert!(!request_id.is_empty(), "an empty request id");
        assert_eq!(error["request_id"], request_id);
        let fields = self.keys_at(&["error"]);
        let expected: Vec<&str> = if param.is_some() {
            vec!["code", "message", "param", "request_id"]
        } else {
            vec!["code", "message", "request_id"]
        };
        assert_eq!(fields, expected);
        assert_eq!(self.keys_at(&[]), ["error"]);
        assert!(self
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(self.header("www-authenticate"), Some("Bearer"));
        } else {
            assert_eq!(self.header("www-authenticate"), None);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(self.header("retry-after"), Some("1"));
        }
    }
}

pub async fn send<S, R, B>(app: &S, req: R) -> Reply
where
    S: Service<R, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let resp = test::call_service(app, req).await;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = test::read_body(resp).await.to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// A JSON value that keeps the order of object fields (serde_json's `Value`
/// sorts them).
pub enum Ordered {
    Object(Vec<(String, Ordered)>),
    Array(Vec<Ordered>),
    Scalar,
}

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Ordered, E> {
                Ok(Ordered::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Ordered, E> {
                Ok(Ordered::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Ordered, E> {
                Ok(Ordered::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered::Scalar)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Ordered, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Ordered::Array(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Ordered, A::Error> {
                let mut fields = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Ordered>()? {
                    fields.push((k, v));
                }
                Ok(Ordered::Object(fields))
            }
        }
        d.deserialize_any(V)
    }
}
