//! The route table: every endpoint and every layer, in one place.
//!
//! Each submodule holds the HTTP handlers of one part of the API; they parse the request,
//! call natter-core's services (which hold the rules and reach the store through its traits)
//! and map the outcome to JSON or problem+json. The WebSocket session is in `crate::gateway`.

mod accounts;
mod connections;
mod conversations;
mod document;
mod gateway;
mod health;
mod identity;
mod keys;
mod web;

use natter_proto::codes;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::HeaderName;
use axum::{Json, Router, middleware};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, OpenApi, OpenApiBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, problem_for_bare_errors};
use crate::state::AppState;

/// The header that carries a request's id: taken from the client if sent, else a new UUID,
/// and echoed on the response.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The REST API's routes and their OpenAPI description, generated from the handlers.
fn api() -> (Router<AppState>, OpenApi) {
    let (router, mut document) = OpenApiRouter::with_openapi(base_document())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(gateway::gateway))
        .routes(routes!(accounts::create_account))
        .routes(routes!(accounts::create_session))
        .routes(routes!(accounts::delete_session))
        .routes(routes!(accounts::me))
        .routes(routes!(accounts::update_profile))
        .routes(routes!(accounts::profile))
        .routes(routes!(accounts::presence))
        .routes(routes!(accounts::lookup))
        .routes(routes!(keys::upload, keys::counts))
        .routes(routes!(keys::delete_device))
        .routes(routes!(keys::devices))
        .routes(routes!(keys::query_devices))
        .routes(routes!(keys::claim))
        .routes(routes!(identity::publish_identity))
        .routes(routes!(identity::reset_identity))
        .routes(routes!(identity::sign_device))
        .routes(routes!(identity::put_backup_item))
        .routes(routes!(identity::backup_items, identity::delete_backup))
        .routes(routes!(connections::list))
        .routes(routes!(
            connections::get,
            connections::request,
            connections::remove
        ))
        .routes(routes!(connections::respond))
        .routes(routes!(connections::block))
        .routes(routes!(conversations::open_direct))
        .routes(routes!(conversations::create_room))
        .routes(routes!(conversations::list))
        .routes(routes!(conversations::get))
        .routes(routes!(conversations::add_members))
        .routes(routes!(conversations::remove_member))
        .routes(routes!(conversations::history))
        .routes(routes!(conversations::receipts))
        .routes(routes!(conversations::sent))
        .routes(routes!(conversations::undelivered))
        .split_for_parts();
    document::finish(&mut document);
    (router, document)
}

/// The OpenAPI document before the routes are added: title, version, the API's description,
/// and the `bearer` security scheme the handlers name.
fn base_document() -> OpenApi {
    OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("Natter")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "End-to-end encrypted messaging. Errors are RFC 9457 problem+json.",
                ))
                .build(),
        )
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme(
                    "bearer",
                    SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
                )
                .build(),
        ))
        .build()
}

/// The OpenAPI document for the REST API, as `GET /v1/openapi.json` serves it (there with its
/// paths sorted).
pub fn openapi() -> OpenApi {
    api().1
}

/// Counts requests by route template and status class, and times them
/// (`natter_http_requests_total`, `natter_http_request_seconds`). A request that matched no
/// route counts under `unmatched`, so the label stays low-cardinality.
async fn record_request(request: Request, next: middleware::Next) -> axum::response::Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = crate::observe::status_class(response.status().as_u16());
    metrics::counter!("natter_http_requests_total", "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("natter_http_request_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The whole HTTP application: the REST API, the web client, the WebSocket upgrade at
/// `/v1/ws` and the OpenAPI document, with a problem+json 404 for any other path. Registers
/// the request counters of every route at zero before serving.
pub fn app(state: AppState) -> Router {
    let (router, mut document) = api();
    document.paths.paths.sort_keys();
    crate::observe::register_routes(document.paths.paths.keys().map(String::as_str).chain([
        "/v1/ws",
        "/v1/openapi.json",
        "unmatched",
    ]));
    let document = Arc::new(document);
    router
        .merge(web::routes())
        // The WebSocket protocol is described in docs/protocol.md, not in OpenAPI.
        .route("/v1/ws", axum::routing::get(crate::gateway::upgrade))
        .route("/v1/openapi.json", axum::routing::get(move || async move { Json(document.as_ref().clone()) }))
        .fallback(|| async { ApiError::new(axum::http::StatusCode::NOT_FOUND, codes::NOT_FOUND, "no such endpoint") })
        // Each layer wraps the ones above it, so a request meets them bottom to top:
        // 1. a request id (kept if the client sent one) that every log line of the request carries;
        // 2. a span per request, named by route template, never by the raw path with its ids;
        // 3. the id echoed on the response;
        // 4. request counts and latency by route template (after 5, so they see the final status);
        // 5. any bare error (axum's 405, ...) rewritten as problem+json;
        // 6. the body size limit, checked before a handler reads a byte.
        .layer(DefaultBodyLimit::max(natter_proto::limits::REQUEST_BODY_MAX))
        .layer(middleware::map_response(problem_for_bare_errors))
        .layer(middleware::from_fn(record_request))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
            let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            tracing::info_span!("http", method = %request.method(), http.route = route, request.id = id)
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .with_state(state)
}
