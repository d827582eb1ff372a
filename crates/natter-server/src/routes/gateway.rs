//! The host assigner.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::HOST;
use axum::http::uri::Authority;
use natter_proto::gateway::GatewayResponse;
use natter_proto::problem::Problem;

use crate::error::ApiError;
use crate::state::AppState;

/// The WebSocket URL of a lightly loaded live node (the less loaded of two drawn at random, by
/// open connections and recent traffic), so clients land where there is room even in a
/// reconnect storm, and every live node's URL to fall back on; clients ask on every connect
/// and reconnect. A single node listening on every interface without `--public-url` names
/// itself by the request's `Host` header.
#[utoipa::path(get, path = "/v1/gateway", tag = "gateway", responses(
    (status = 200, description = "where to connect", body = GatewayResponse),
    (status = 400, description = "no usable `Host` header to name this node by", body = Problem)))]
pub async fn gateway(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<GatewayResponse>, ApiError> {
    if state.ws_url_from_host {
        let url = format!("ws://{}/v1/ws", host(&headers)?);
        return Ok(Json(GatewayResponse {
            url: url.clone(),
            nodes: vec![url],
        }));
    }
    let nodes = state.assigner.ranked();
    Ok(Json(GatewayResponse {
        url: state.assigner.pick(),
        nodes,
    }))
}

/// The request's `Host` header, if it is a host and port (no user info).
fn host(headers: &HeaderMap) -> Result<Authority, ApiError> {
    headers
        .get(HOST)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<Authority>().ok())
        .filter(|authority| !authority.as_str().contains('@') && !authority.host().is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "the Host header must name this server (host or host:port); or the operator sets --public-url",
            )
        })
}
