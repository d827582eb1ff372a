//! Liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use natter_proto::problem::Problem;
use serde_json::{Value, json};

use crate::state::AppState;

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "the process is up")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The server can take traffic: its store answers and takes writes (`store` is `ok`,
/// `unreachable` or `read_only`). In a cluster it also reports Redis, which does not make it
/// unready: without Redis it still accepts and delivers locally. Unready, the answer is a 503
/// problem (`code` `not_ready`) that carries the same `store` and `redis` members.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "ready"),
    (status = 503, description = "the store cannot be reached or cannot write", body = Problem)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let redis = state.assigner.redis_status();
    let store = match state.store.ping().await {
        Err(error) => {
            tracing::warn!(error = %error, "readiness check: store unreachable");
            "unreachable"
        }
        Ok(()) => match state.store.write_probe().await {
            Err(error) => {
                tracing::warn!(error = %error, "readiness check: store cannot write");
                "read_only"
            }
            Ok(()) => "ok",
        },
    };
    if store == "ok" {
        return Json(json!({ "status": "ready", "store": store, "redis": redis })).into_response();
    }
    let status = StatusCode::SERVICE_UNAVAILABLE;
    let problem = json!({
        "type": "about:blank",
        "title": status.canonical_reason(),
        "status": status.as_u16(),
        "code": "not_ready",
        "detail": format!("the store is {}", store.replace('_', "-")),
        "store": store,
        "redis": redis,
    });
    (
        status,
        [(header::CONTENT_TYPE, natter_proto::problem::CONTENT_TYPE)],
        problem.to_string(),
    )
        .into_response()
}
