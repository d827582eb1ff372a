//! The admin listener (loopback by default, never the public port): Prometheus metrics and
//! operator actions.
//!
//! # Security
//! Anyone who can reach the admin listener can suspend accounts: bind it to loopback or a
//! private network only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use natter_proto::UserId;
use natter_proto::close::CloseCode;
use natter_proto::codes;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::state::AppState;
use natter_core::close;
use natter_core::fanout::Outbound;
use natter_core::service_error::ServiceError;

/// The admin routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route(
            "/admin/users/{user_id}/suspension",
            put(suspend).delete(unsuspend),
        )
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, codes::NOT_FOUND, "no such endpoint")
        })
        .with_state(state)
}

/// `GET /metrics`: the Prometheus exposition, natterd's series and the process's.
async fn metrics() -> String {
    let mut text = crate::observe::handle().render();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text + &crate::process_metrics::render()
}

/// `PUT /admin/users/{user_id}/suspension`: suspends an account at once: its tokens stop
/// working and its connections are closed.
async fn suspend(
    State(state): State<AppState>,
    ApiPath(user): ApiPath<UserId>,
) -> Result<Json<Value>, ApiError> {
    if !state
        .store
        .set_suspended(user, Some(natter_core::clock::now_ms()))
        .await?
    {
        return Err(ServiceError::NotFound("no such user").into());
    }
    // Through the bus, so the account's connections close on every node.
    state.bus.publish_to_users(
        &[user],
        None,
        Outbound::Close(CloseCode::Suspended, close::SUSPENDED_REASON),
    );
    tracing::warn!(user.id = %user, "account suspended by an operator");
    Ok(Json(json!({ "user_id": user, "suspended": true })))
}

/// `DELETE /admin/users/{user_id}/suspension`: lifts a suspension.
async fn unsuspend(
    State(state): State<AppState>,
    ApiPath(user): ApiPath<UserId>,
) -> Result<Json<Value>, ApiError> {
    if !state.store.set_suspended(user, None).await? {
        return Err(ServiceError::NotFound("no such user").into());
    }
    tracing::warn!(user.id = %user, "account suspension lifted by an operator");
    Ok(Json(json!({ "user_id": user, "suspended": false })))
}
