//! The host assigner.

use axum::Json;
use axum::extract::State;
use natter_proto::gateway::GatewayResponse;

use crate::state::AppState;

/// The WebSocket URL of a lightly loaded live node (the less loaded of two drawn at random, by
/// open connections and recent traffic), so clients land where there is room even in a
/// reconnect storm, and every live node's URL to fall back on; clients ask on every connect
/// and reconnect.
#[utoipa::path(get, path = "/v1/gateway", tag = "gateway", responses((status = 200, body = GatewayResponse)))]
pub async fn gateway(State(state): State<AppState>) -> Json<GatewayResponse> {
    let nodes = state.assigner.ranked();
    Json(GatewayResponse {
        url: state.assigner.pick(),
        nodes,
    })
}
