//! Devices and their keys.
//!
//! Key upload, claims and device queries are natter-core's `keys`, over its store traits.
//! An upload with identity keys is announced with `device_list_changed` to those who see them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use natter_proto::keys::{
    ClaimedKey, DevicesQuery, DevicesQueryResponse, DevicesResponse, KeyCountResponse,
    UploadKeysRequest,
};
use natter_proto::problem::Problem;
use natter_proto::{DeviceId, UserId};

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath};
use crate::state::AppState;
use natter_core::credentials::Auth;
use natter_core::ratelimit::Kind;
use natter_core::service_error::ServiceError;
use natter_core::store::KeyCounts;
use natter_core::{device_lists, keys};

/// The store's count of a device's unclaimed keys, as the API answers it.
fn key_count(counts: KeyCounts) -> Json<KeyCountResponse> {
    Json(KeyCountResponse {
        one_time_key_count: counts.one_time_keys,
        has_fallback_key: counts.has_fallback,
    })
}

/// Publishes this device's identity keys, one-time keys and fallback key.
#[utoipa::path(post, path = "/v1/devices/current/keys", tag = "keys", security(("bearer" = [])),
    request_body = UploadKeysRequest,
    responses((status = 200, body = KeyCountResponse), (status = 400, body = Problem),
              (status = 401, body = Problem), (status = 409, body = Problem)))]
pub async fn upload(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(request): ApiJson<UploadKeysRequest>,
) -> Result<Json<KeyCountResponse>, ApiError> {
    let store = state.store.as_ref();
    let counts = keys::upload(
        store,
        auth.device_id,
        &request,
        natter_core::clock::now_ms(),
    )
    .await?;
    if request.identity_keys.is_some() {
        device_lists::announce(store, state.bus.as_ref(), auth.user_id).await;
    }
    Ok(key_count(counts))
}

/// How many unclaimed one-time keys this device has, so it knows when to upload more.
#[utoipa::path(get, path = "/v1/devices/current/keys", tag = "keys", security(("bearer" = [])),
    responses((status = 200, body = KeyCountResponse), (status = 401, body = Problem)))]
pub async fn counts(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<KeyCountResponse>, ApiError> {
    Ok(key_count(state.store.key_counts(auth.device_id).await?))
}

/// Removes one of the caller's devices (say, a lost phone): its token and keys stop working
/// and its open connections are closed.
#[utoipa::path(delete, path = "/v1/devices/{device_id}", tag = "keys", security(("bearer" = [])),
    params(("device_id" = DeviceId, Path)),
    responses((status = 204), (status = 401, body = Problem),
              (status = 404, description = "not one of your devices", body = Problem)))]
pub async fn delete_device(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(device_id): ApiPath<DeviceId>,
) -> Result<StatusCode, ApiError> {
    if !state
        .accounts
        .remove_device(auth.user_id, device_id)
        .await?
    {
        return Err(ServiceError::NotFound("you have no such device").into());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A user's devices with their identity keys and the user's cross-signing identity: the
/// caller's own, or a connected user's or fellow member's.
#[utoipa::path(get, path = "/v1/users/{user_id}/devices", tag = "keys", security(("bearer" = [])),
    params(("user_id" = UserId, Path)),
    responses((status = 200, body = DevicesResponse), (status = 401, body = Problem),
              (status = 404, description = "no such user, or not connected", body = Problem)))]
pub async fn devices(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(user_id): ApiPath<UserId>,
) -> Result<Json<DevicesResponse>, ApiError> {
    Ok(Json(
        keys::devices_of(state.store.as_ref(), auth.user_id, user_id).await?,
    ))
}

/// The device lists of several users at once (a room's members, before sending to it): those
/// the caller may see; the others are left out.
#[utoipa::path(post, path = "/v1/devices/query", tag = "keys", security(("bearer" = [])),
    request_body = DevicesQuery,
    responses((status = 200, body = DevicesQueryResponse),
              (status = 400, description = "no users, or more than 1,000", body = Problem),
              (status = 401, body = Problem)))]
pub async fn query_devices(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(query): ApiJson<DevicesQuery>,
) -> Result<Json<DevicesQueryResponse>, ApiError> {
    let users = keys::devices_of_many(state.store.as_ref(), auth.user_id, &query.user_ids).await?;
    Ok(Json(DevicesQueryResponse { users }))
}

/// Claims one of the device's one-time keys (each is handed out once), or its fallback key
/// when they have run out, to open an Olm session with it.
#[utoipa::path(post, path = "/v1/users/{user_id}/devices/{device_id}/claim", tag = "keys",
    security(("bearer" = [])), params(("user_id" = UserId, Path), ("device_id" = DeviceId, Path)),
    responses((status = 200, body = ClaimedKey), (status = 401, body = Problem),
              (status = 404, description = "not connected, no such device, or no keys left", body = Problem),
              (status = 429, description = "too many claims of this device's keys by the caller's devices", body = Problem)))]
pub async fn claim(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((user_id, device_id)): ApiPath<(UserId, DeviceId)>,
) -> Result<Json<ClaimedKey>, ApiError> {
    // Per (claiming user, claimed device): each of a user's devices needs one key for its
    // session, and a peer gains nothing by logging in more devices to drain them.
    state
        .limits
        .check(
            Kind::KeyClaims,
            &format!("{}:{device_id}", auth.user_id),
            1.0,
        )
        .await?;
    Ok(Json(
        keys::claim(state.store.as_ref(), auth.user_id, user_id, device_id).await?,
    ))
}
