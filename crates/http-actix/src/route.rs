//! A route, declared once (docs/api.md, "Routes"): its path template, its
//! methods and their handlers, written in one [`routes!`] row beside the
//! handlers. From that row come the actix resource and its handlers (`HEAD`
//! wherever `GET` is), the `Allow` header of its 405, its metrics label (the
//! template) and its OpenAPI operations (the handlers' `#[utoipa::path]`
//! attributes, whose `path` is the row's). `crate::route_table` lists the
//! rows in registration order.

/// One route: a path template and the methods it answers.
pub(crate) struct Route {
    /// The template: actix's pattern, the metrics label and the document's
    /// path (`/v1/api-keys/{id}`).
    pub(crate) path: &'static str,
    /// The methods answered, as a 405's `Allow` lists them.
    pub(crate) allow: &'static str,
    /// Adds the method handlers (and the route's own middleware) to the
    /// resource made for [`Route::path`], and registers it.
    pub(crate) register: fn(actix_web::Resource, &mut actix_web::web::ServiceConfig),
    /// The handlers' OpenAPI operations, each as a document of one
    /// operation.
    #[cfg(feature = "openapi")]
    pub(crate) operations: fn() -> Vec<utoipa::openapi::OpenApi>,
}

/// Declares a module's routes, in registration order:
///
/// ```text
/// routes! {
///     /// Doc of the constant.
///     KEYS = "/v1/api-keys" { GET list_keys, POST create_key },
///     VERIFY = "/v1/api-keys/verify" wrap(no_store()) { POST verify_key },
///     FORWARD_AUTH = "/v1/forward-auth" wrap(no_store()) { ANY forward_auth },
/// }
/// ```
///
/// Each row becomes a [`Route`] constant of that name, and the module's
/// `ROUTES` lists them. A handler's `#[utoipa::path]` names its row's
/// constant as its `path` (`path = KEYS.path`), so the template is written
/// once; `wrap(...)` wraps the whole resource, its 405 included. `ANY`
/// answers every method (its handler's `#[utoipa::path]` lists the
/// documented ones, [`ANY_METHODS`]).
macro_rules! routes {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident = $path:literal $(wrap($wrap:expr))? { $($method:ident $handler:ident),+ $(,)? }
    ),+ $(,)?) => {
        $(
            $(#[doc = $doc])*
            pub(crate) const $name: $crate::route::Route = $crate::route::Route {
                path: $path,
                allow: $crate::route::allow_list!($($method),+),
                register: |resource, cfg| {
                    $(let resource = $crate::route::method!(resource, $method, $handler);)+
                    cfg.service(resource$(.wrap($wrap))?);
                },
                #[cfg(feature = "openapi")]
                operations: || vec![$({
                    // The derive names the handler's `#[utoipa::path]` item.
                    #[derive(utoipa::OpenApi)]
                    #[openapi(paths($handler))]
                    struct Operation;
                    <Operation as utoipa::OpenApi>::openapi()
                }),+],
            };
        )+
        /// This module's routes, in registration order.
        pub(crate) const ROUTES: &[$crate::route::Route] = &[$($name),+];
    };
}

/// The `Allow` value of a list of methods: `HEAD` right after `GET`.
macro_rules! allow_list {
    ($first:ident $(, $rest:ident)*) => {
        concat!($crate::route::allow_list!(@ $first) $(, ", ", $crate::route::allow_list!(@ $rest))*)
    };
    (@ GET) => { "GET, HEAD" };
    (@ POST) => { "POST" };
    (@ PUT) => { "PUT" };
    (@ PATCH) => { "PATCH" };
    (@ DELETE) => { "DELETE" };
    (@ ANY) => { "GET, HEAD, POST, PUT, PATCH, DELETE" };
}

/// What a route that answers any method (`ANY`) lists as its methods: the
/// usual ones, each documented (`HEAD` with `GET`; not `OPTIONS`, which
/// generated clients cannot send). It never answers 405.
#[cfg(feature = "openapi")]
pub(crate) const ANY_METHODS: &str = allow_list!(@ ANY);

/// `resource` with `handler` answering `method` (and `HEAD` for `GET`: the
/// same answer without a body).
macro_rules! method {
    ($resource:expr, GET, $handler:ident) => {
        $resource
            .route(actix_web::web::get().to($handler))
            .route(actix_web::web::head().to($handler))
    };
    ($resource:expr, POST, $handler:ident) => {
        $resource.route(actix_web::web::post().to($handler))
    };
    ($resource:expr, PUT, $handler:ident) => {
        $resource.route(actix_web::web::put().to($handler))
    };
    ($resource:expr, PATCH, $handler:ident) => {
        $resource.route(actix_web::web::patch().to($handler))
    };
    ($resource:expr, DELETE, $handler:ident) => {
        $resource.route(actix_web::web::delete().to($handler))
    };
    ($resource:expr, ANY, $handler:ident) => {
        $resource.route(actix_web::web::route().to($handler))
    };
}

pub(crate) use {allow_list, method, routes};
