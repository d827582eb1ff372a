//! Cross-signing identities, device signatures and the key backup.
//!
//! The checks (signatures, approval of the calling device, backup names) are natter-core's
//! `identity`; the server never sees private keys or the backup's plaintext. A change to a
//! user's identity or signatures is announced with `device_list_changed` to those who see it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use natter_proto::DeviceId;
use natter_proto::keys::{
    BackupItem, BackupItemsResponse, CrossSigningKeys, DeviceSignatureRequest,
    PutBackupItemRequest, ResetIdentityRequest,
};
use natter_proto::limits::PAGE_MAX;
use natter_proto::problem::Problem;
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use natter_core::credentials::Auth;
use natter_core::service_error::ServiceError;
use natter_core::{device_lists, identity};

/// Publishes the caller's cross-signing identity (public keys only), or a new self-signing key
/// certified by the same master key (after removing an approved device); device signatures the
/// new self-signing key did not make are dropped.
#[utoipa::path(put, path = "/v1/me/identity", tag = "keys", security(("bearer" = [])),
    request_body = CrossSigningKeys,
    responses((status = 204, description = "stored"),
              (status = 400, description = "a malformed key", body = Problem),
              (status = 401, description = "no valid token", body = Problem),
              (status = 409, description = "another master key: that is a reset", body = Problem),
              (status = 422, description = "a key that is no Ed25519 key, or a signature that does not check (`bad_signature`)", body = Problem)))]
pub async fn publish_identity(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(keys): ApiJson<CrossSigningKeys>,
) -> Result<StatusCode, ApiError> {
    let store = state.store.as_ref();
    identity::publish_identity(store, auth.user_id, &keys).await?;
    device_lists::announce(store, state.bus.as_ref(), auth.user_id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces the caller's identity with a new master key, asking for the password again. Every
/// device signature and the key backup go with the old identity; every contact's client warns
/// that the safety number changed.
#[utoipa::path(post, path = "/v1/me/identity/reset", tag = "keys", security(("bearer" = [])),
    request_body = ResetIdentityRequest,
    responses((status = 204, description = "replaced"),
              (status = 400, description = "a malformed key", body = Problem),
              (status = 401, description = "no valid token", body = Problem),
              (status = 403, description = "a wrong password (`wrong_password`)", body = Problem),
              (status = 422, description = "a key that is no Ed25519 key, or a signature that does not check (`bad_signature`)", body = Problem),
              (status = 429, description = "too many password checks", body = Problem)))]
pub async fn reset_identity(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(request): ApiJson<ResetIdentityRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .accounts
        .check_password(auth.user_id, &request.password)
        .await?;
    let store = state.store.as_ref();
    identity::reset_identity(store, auth.user_id, &request.identity).await?;
    device_lists::announce(store, state.bus.as_ref(), auth.user_id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Stores the signature of one of the caller's devices by the caller's self-signing key.
#[utoipa::path(put, path = "/v1/devices/{device_id}/signature", tag = "keys", security(("bearer" = [])),
    params(("device_id" = DeviceId, Path)),
    request_body = DeviceSignatureRequest,
    responses((status = 204, description = "stored"),
              (status = 400, description = "a malformed device id or signature", body = Problem),
              (status = 401, description = "no valid token", body = Problem),
              (status = 403, description = "no identity published yet", body = Problem),
              (status = 404, description = "not one of your devices", body = Problem),
              (status = 422, description = "not the self-signing key's signature over this device (`bad_signature`)", body = Problem)))]
pub async fn sign_device(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(device_id): ApiPath<DeviceId>,
    ApiJson(request): ApiJson<DeviceSignatureRequest>,
) -> Result<StatusCode, ApiError> {
    let store = state.store.as_ref();
    identity::sign_device(store, auth.user_id, device_id, &request.signature).await?;
    device_lists::announce(store, state.bus.as_ref(), auth.user_id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Stores (or replaces) one item of the caller's key backup: data the client sealed. Only a
/// device the caller's identity signed may.
#[utoipa::path(put, path = "/v1/me/backup/{name}", tag = "keys", security(("bearer" = [])),
    params(("name" = String, Path, description = "1 to 128 printable ASCII characters",
            pattern = r"^[!-~]{1,128}$")),
    request_body = PutBackupItemRequest,
    responses((status = 204, description = "stored"),
              (status = 400, description = "a bad name, or data over 16 KiB or not printable ASCII", body = Problem),
              (status = 401, description = "no valid token", body = Problem),
              (status = 403, description = "this device is not approved", body = Problem),
              (status = 409, description = "the backup holds the most items already", body = Problem)))]
pub async fn put_backup_item(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<PutBackupItemRequest>,
) -> Result<StatusCode, ApiError> {
    let item = BackupItem {
        name,
        data: request.data,
    };
    let store = state.store.as_ref();
    identity::require_approved(store, auth.user_id, auth.device_id).await?;
    identity::put_backup_item(store, auth.user_id, &item).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Paging of the backup.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BackupPage {
    /// Items whose name sorts after this one, a name (default: from the first).
    #[param(pattern = r"^[!-~]{0,128}$")]
    after: Option<String>,
    /// At most this many (1 to 500, default 500).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// A page of the caller's key backup, in name order.
#[utoipa::path(get, path = "/v1/me/backup", tag = "keys", security(("bearer" = [])),
    params(BackupPage),
    responses((status = 200, description = "the items after `after`", body = BackupItemsResponse),
              (status = 400, description = "a limit out of range, or after not a name", body = Problem),
              (status = 401, description = "no valid token", body = Problem)))]
pub async fn backup_items(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(page): ApiQuery<BackupPage>,
) -> Result<Json<BackupItemsResponse>, ApiError> {
    let max = u32::try_from(PAGE_MAX).unwrap_or(u32::MAX);
    let limit = page.limit.unwrap_or(max);
    if !(1..=max).contains(&limit) {
        return Err(ServiceError::Invalid(format!("limit must be 1 to {PAGE_MAX}")).into());
    }
    let after = page.after.unwrap_or_default();
    if !after.is_empty() {
        identity::check_backup_name("after", &after)?;
    }
    let items = state
        .store
        .backup_items(auth.user_id, &after, limit)
        .await?;
    Ok(Json(BackupItemsResponse { items }))
}

/// Removes the caller's whole key backup. Only a device the caller's identity signed may.
#[utoipa::path(delete, path = "/v1/me/backup", tag = "keys", security(("bearer" = [])),
    responses((status = 204, description = "removed"),
              (status = 401, description = "no valid token", body = Problem),
              (status = 403, description = "this device is not approved", body = Problem)))]
pub async fn delete_backup(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<StatusCode, ApiError> {
    let store = state.store.as_ref();
    identity::require_approved(store, auth.user_id, auth.device_id).await?;
    store.delete_backup(auth.user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
