//! Accounts, sessions and profiles.
//!
//! The handlers call natter-core's account service (`state.accounts`), which hashes passwords,
//! issues tokens and decides who may see whose profile and presence; the rows are natter-store's.
//! Registration and login pass the client's address for the per-address rate limits.

use axum::Json;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use natter_proto::UserId;
use natter_proto::accounts::{
    CreateAccountRequest, CreateAccountResponse, CreateSessionRequest, MeResponse, Presence,
    Profile, SessionResponse, UpdateProfileRequest, UserLookup,
};
use natter_proto::problem::Problem;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use natter_core::credentials::Auth;
use natter_core::service_error::ServiceError;

/// Registers a user.
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", request_body = CreateAccountRequest,
    responses((status = 201, body = CreateAccountResponse), (status = 400, body = Problem),
              (status = 409, description = "username taken", body = Problem),
              (status = 429, description = "too many registrations from this address", body = Problem)))]
pub async fn create_account(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(request): ApiJson<CreateAccountRequest>,
) -> Result<(StatusCode, Json<CreateAccountResponse>), ApiError> {
    let user_id = state.accounts.register(peer.ip(), request).await?;
    Ok((StatusCode::CREATED, Json(CreateAccountResponse { user_id })))
}

/// Logs in, creating a device with its own bearer token.
#[utoipa::path(post, path = "/v1/sessions", tag = "accounts", request_body = CreateSessionRequest,
    responses((status = 201, body = SessionResponse), (status = 400, body = Problem),
              (status = 401, description = "wrong username or password", body = Problem),
              (status = 403, description = "suspended", body = Problem),
              (status = 429, description = "too many attempts for this account or from this address", body = Problem)))]
pub async fn create_session(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(request): ApiJson<CreateSessionRequest>,
) -> Result<(StatusCode, Json<SessionResponse>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.accounts.login(peer.ip(), request).await?),
    ))
}

/// Logs this device out: its token stops working, its keys are removed and its connections
/// closed.
#[utoipa::path(delete, path = "/v1/sessions/current", tag = "accounts", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = Problem)))]
pub async fn delete_session(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<StatusCode, ApiError> {
    state
        .accounts
        .remove_device(auth.user_id, auth.device_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's profile and device.
#[utoipa::path(get, path = "/v1/me", tag = "accounts", security(("bearer" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = Problem)))]
pub async fn me(State(state): State<AppState>, auth: Auth) -> Result<Json<MeResponse>, ApiError> {
    let profile = state
        .accounts
        .profile_for(auth.user_id, auth.user_id)
        .await?;
    Ok(Json(MeResponse {
        profile,
        device_id: auth.device_id,
    }))
}

/// Changes the caller's display name and/or avatar URL.
#[utoipa::path(patch, path = "/v1/me/profile", tag = "accounts", security(("bearer" = [])),
    request_body = UpdateProfileRequest,
    responses((status = 200, body = Profile), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn update_profile(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(request): ApiJson<UpdateProfileRequest>,
) -> Result<Json<Profile>, ApiError> {
    Ok(Json(
        state.accounts.update_profile(auth.user_id, request).await?,
    ))
}

/// A user's profile: the caller's own, or a connected user's.
#[utoipa::path(get, path = "/v1/users/{user_id}/profile", tag = "accounts", security(("bearer" = [])),
    params(("user_id" = UserId, Path)),
    responses((status = 200, body = Profile), (status = 401, body = Problem),
              (status = 404, description = "no such user, or not connected", body = Problem)))]
pub async fn profile(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(user_id): ApiPath<UserId>,
) -> Result<Json<Profile>, ApiError> {
    Ok(Json(
        state.accounts.profile_for(auth.user_id, user_id).await?,
    ))
}

/// Whether a user is online (a device connected to any node): the caller's own, a connected
/// user's, or a fellow member's.
#[utoipa::path(get, path = "/v1/users/{user_id}/presence", tag = "accounts", security(("bearer" = [])),
    params(("user_id" = UserId, Path)),
    responses((status = 200, body = Presence), (status = 401, body = Problem),
              (status = 404, description = "no such user, or not connected", body = Problem)))]
pub async fn presence(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(user_id): ApiPath<UserId>,
) -> Result<Json<Presence>, ApiError> {
    Ok(Json(
        state.accounts.presence_for(auth.user_id, user_id).await?,
    ))
}

/// Finds a user's id by username (any case), to send them a connection request.
#[utoipa::path(get, path = "/v1/users/by-username/{username}", tag = "accounts", security(("bearer" = [])),
    params(("username" = String, Path)),
    responses((status = 200, body = UserLookup), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn lookup(
    State(state): State<AppState>,
    _auth: Auth,
    ApiPath(username): ApiPath<String>,
) -> Result<Json<UserLookup>, ApiError> {
    let found = match natter_proto::limits::is_valid_username(&username) {
        true => {
            state
                .store
                .user_by_username(&username.to_lowercase())
                .await?
        }
        false => None,
    };
    let (user, _) = found.ok_or(ServiceError::NotFound("no user has this username"))?;
    Ok(Json(UserLookup {
        user_id: user.id,
        username: user.username,
    }))
}
