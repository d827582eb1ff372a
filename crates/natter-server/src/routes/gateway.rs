//! The host assigner.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use crate::state::AppState;

/// Where to connect.
#[derive(Serialize, utoipa::ToSchema)]
pub struct GatewayResponse {
    /// The WebSocket URL of the least-loaded live node.
    pub url: String,
}

/// The WebSocket URL of the least-loaded live node (by open connections), so clients land
/// where there is room; clients ask on every connect and reconnect.
#[utoipa::path(get, path = "/v1/gateway", tag = "gateway", responses((status = 200, body = GatewayResponse)))]
pub async fn gateway(State(state): State<AppState>) -> Json<GatewayResponse> {
    Json(GatewayResponse {
        url: state.assigner.pick(),
    })
}
