//! The seed's connection service, at its exact paths. `{userId}` must be the caller.
//!
//! The relationship's state machine and its versions are natter-core's (`connections`); the
//! store keeps each side. These handlers check the caller, the `If-Match` version and the
//! request rate, and answer the caller's side with its version as the `ETag`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use natter_proto::UserId;
use natter_proto::connections::{ConnectionStatus, ConnectionsResponse};
use natter_proto::problem::Problem;

use crate::error::ApiError;
use crate::extract::{ApiPath, IfMatch};
use crate::state::AppState;
use natter_core::connections::{self, Action};
use natter_core::credentials::Auth;
use natter_core::ratelimit::Kind;
use natter_core::service_error::ServiceError;

/// Refuses with 403 `forbidden` unless the path's `{userId}` is the caller: a user reads and
/// changes only their own side of a connection.
fn ensure_self(auth: Auth, user_id: UserId) -> Result<(), ApiError> {
    if auth.user_id == user_id {
        Ok(())
    } else {
        Err(ServiceError::Forbidden("you can only read or change your own connections").into())
    }
}

/// Applies `action` by the caller on their relationship with `recipient` and answers the
/// caller's new side with its `ETag`. Errors: 403 when `{userId}` is not the caller, and
/// whatever natter-core refuses (the recipient is the caller or unknown, `version_mismatch`,
/// `no_pending_request`, `blocked_by_you`, store failures).
async fn apply(
    state: &AppState,
    auth: Auth,
    (user_id, recipient): (UserId, UserId),
    action: Action,
    IfMatch(if_match): IfMatch,
) -> Result<Response, ApiError> {
    ensure_self(auth, user_id)?;
    let status = connections::change(
        state.store.as_ref(),
        user_id,
        recipient,
        action,
        if_match,
        natter_core::clock::now_ms(),
    )
    .await?;
    Ok(with_etag(status))
}

/// The status as JSON, with its version as the `ETag`.
fn with_etag(status: ConnectionStatus) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", status.version))
        .expect("a number is a valid header");
    ([(header::ETAG, etag)], Json(status)).into_response()
}

/// The caller's connections (with profiles, devices and public keys), pending requests in and
/// out, and blocked users.
#[utoipa::path(get, path = "/connection/user/{userId}", tag = "connections", operation_id = "list_connections", security(("bearer" = [])),
    params(("userId" = UserId, Path)),
    responses((status = 200, body = ConnectionsResponse), (status = 401, body = Problem),
              (status = 403, description = "userId is not you", body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(user_id): ApiPath<UserId>,
) -> Result<Json<ConnectionsResponse>, ApiError> {
    ensure_self(auth, user_id)?;
    Ok(Json(
        connections::list(state.store.as_ref(), user_id).await?,
    ))
}

/// My side of the connection with `recipientId`, with its version for `If-Match` (also when
/// there is no relationship, whose side is listed nowhere else).
#[utoipa::path(get, path = "/connection/user/{userId}/recipient/{recipientId}", tag = "connections", operation_id = "get_connection",
    security(("bearer" = [])), params(("userId" = UserId, Path), ("recipientId" = UserId, Path)),
    responses((status = 200, body = ConnectionStatus), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((user_id, recipient)): ApiPath<(UserId, UserId)>,
) -> Result<Response, ApiError> {
    ensure_self(auth, user_id)?;
    let sides = state.store.connection(user_id, recipient).await?;
    Ok(with_etag(connections::status(recipient, sides.mine)))
}

/// Asks `recipientId` to connect (or accepts, if they asked first).
#[utoipa::path(post, path = "/connection/user/{userId}/recipient/{recipientId}", tag = "connections",
    security(("bearer" = [])),
    params(("userId" = UserId, Path), ("recipientId" = UserId, Path),
           ("If-Match" = Option<String>, Header, description = "the version of your side you last saw: `3`, `\"3\"` or `W/\"3\"`", nullable = false, pattern = r#"^\s*(W/)?"?[0-9]{1,18}"?\s*$"#)),
    responses((status = 200, body = ConnectionStatus), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, description = "blocked_by_you or version_mismatch", body = Problem),
              (status = 429, description = "too many connection requests", body = Problem)))]
pub async fn request(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(ids): ApiPath<(UserId, UserId)>,
    if_match: IfMatch,
) -> Result<Response, ApiError> {
    // Another user's side is refused before it can spend the caller's allowance.
    ensure_self(auth, ids.0)?;
    state
        .limits
        .check(Kind::ConnectionRequests, &auth.user_id.to_string(), 1.0)
        .await?;
    apply(&state, auth, ids, Action::Request, if_match).await
}

/// Accepts (`true`) or rejects (`false`) the pending request from `recipientId`.
#[utoipa::path(put, path = "/connection/user/{userId}/recipient/{recipientId}/request/{accept}",
    tag = "connections", security(("bearer" = [])),
    params(("userId" = UserId, Path), ("recipientId" = UserId, Path), ("accept" = bool, Path),
           ("If-Match" = Option<String>, Header, description = "the version of your side you last saw: `3`, `\"3\"` or `W/\"3\"`", nullable = false, pattern = r#"^\s*(W/)?"?[0-9]{1,18}"?\s*$"#)),
    responses((status = 200, body = ConnectionStatus), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, description = "no_pending_request or version_mismatch", body = Problem)))]
pub async fn respond(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((user_id, recipient, accept)): ApiPath<(UserId, UserId, bool)>,
    if_match: IfMatch,
) -> Result<Response, ApiError> {
    apply(
        &state,
        auth,
        (user_id, recipient),
        Action::Respond { accept },
        if_match,
    )
    .await
}

/// Blocks (`true`) or unblocks (`false`) `recipientId`, at once.
#[utoipa::path(put, path = "/connection/user/{userId}/recipient/{recipientId}/block/{block}",
    tag = "connections", security(("bearer" = [])),
    params(("userId" = UserId, Path), ("recipientId" = UserId, Path), ("block" = bool, Path),
           ("If-Match" = Option<String>, Header, description = "the version of your side you last saw: `3`, `\"3\"` or `W/\"3\"`", nullable = false, pattern = r#"^\s*(W/)?"?[0-9]{1,18}"?\s*$"#)),
    responses((status = 200, body = ConnectionStatus), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, description = "version_mismatch", body = Problem)))]
pub async fn block(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((user_id, recipient, block)): ApiPath<(UserId, UserId, bool)>,
    if_match: IfMatch,
) -> Result<Response, ApiError> {
    apply(
        &state,
        auth,
        (user_id, recipient),
        Action::Block(block),
        if_match,
    )
    .await
}

/// Removes the connection (or withdraws or declines a request).
#[utoipa::path(delete, path = "/connection/user/{userId}/recipient/{recipientId}", tag = "connections",
    security(("bearer" = [])),
    params(("userId" = UserId, Path), ("recipientId" = UserId, Path),
           ("If-Match" = Option<String>, Header, description = "the version of your side you last saw: `3`, `\"3\"` or `W/\"3\"`", nullable = false, pattern = r#"^\s*(W/)?"?[0-9]{1,18}"?\s*$"#)),
    responses((status = 200, body = ConnectionStatus), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, body = Problem), (status = 404, body = Problem),
              (status = 409, description = "blocked_by_you or version_mismatch", body = Problem)))]
pub async fn remove(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(ids): ApiPath<(UserId, UserId)>,
    if_match: IfMatch,
) -> Result<Response, ApiError> {
    apply(&state, auth, ids, Action::Remove, if_match).await
}
