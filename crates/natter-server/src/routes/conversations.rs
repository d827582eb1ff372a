//! Conversations, members, history and receipts.
//!
//! The rules (who may open, join, read and page what) are natter-core's `conversations`, over
//! its store traits. Messages are sent over the WebSocket, not here; these routes read history
//! and receipts and manage membership.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use natter_proto::conversations::{
    AddMembersRequest, ConversationDetails, ConversationsResponse, CreateDirectRequest,
    CreateRoomRequest, MessageReceipts, MessagesResponse, UndeliveredResponse,
};
use natter_proto::problem::Problem;
use natter_proto::{ConversationId, UserId};
use serde::Deserialize;

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use natter_core::conversations;
use natter_core::credentials::Auth;

/// Paging of history.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Messages after this seq (oldest first from there).
    after: Option<i64>,
    /// Messages before this seq (the newest ones before it); the default is the newest.
    before: Option<i64>,
    /// At most this many (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// Opens the direct conversation with a connection (the same one every time).
#[utoipa::path(post, path = "/v1/conversations/direct", tag = "conversations", security(("bearer" = [])),
    request_body = CreateDirectRequest,
    responses((status = 200, body = ConversationDetails), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, description = "not_connected", body = Problem)))]
pub async fn open_direct(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(request): ApiJson<CreateDirectRequest>,
) -> Result<Json<ConversationDetails>, ApiError> {
    Ok(Json(
        conversations::open_direct(
            state.store.as_ref(),
            auth,
            request.user_id,
            natter_core::clock::now_ms(),
        )
        .await?,
    ))
}

/// Creates a room owned by the caller, with some of the caller's connections.
#[utoipa::path(post, path = "/v1/conversations/rooms", tag = "conversations", security(("bearer" = [])),
    request_body = CreateRoomRequest,
    responses((status = 201, body = ConversationDetails), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, description = "not_connected or room_full", body = Problem)))]
pub async fn create_room(
    State(state): State<AppState>,
    auth: Auth,
    ApiJson(request): ApiJson<CreateRoomRequest>,
) -> Result<(StatusCode, Json<ConversationDetails>), ApiError> {
    let room = conversations::create_room(
        state.store.as_ref(),
        auth,
        &request.name,
        &request.members,
        natter_core::clock::now_ms(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(room)))
}

/// The caller's conversations with unread counts, most recently active first.
#[utoipa::path(get, path = "/v1/conversations", tag = "conversations", operation_id = "list_conversations", security(("bearer" = [])),
    responses((status = 200, body = ConversationsResponse), (status = 401, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<ConversationsResponse>, ApiError> {
    Ok(Json(ConversationsResponse {
        conversations: state.store.conversations_of(auth.user_id).await?,
    }))
}

/// A conversation and its members.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "conversations", operation_id = "get_conversation", security(("bearer" = [])),
    params(("id" = ConversationId, Path)),
    responses((status = 200, body = ConversationDetails), (status = 401, body = Problem),
              (status = 404, description = "no such conversation, or not a member", body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<ConversationId>,
) -> Result<Json<ConversationDetails>, ApiError> {
    Ok(Json(
        conversations::details(state.store.as_ref(), auth.user_id, id).await?,
    ))
}

/// Adds members to a room (owner only; each must be the owner's connection).
#[utoipa::path(post, path = "/v1/conversations/{id}/members", tag = "conversations", security(("bearer" = [])),
    params(("id" = ConversationId, Path)), request_body = AddMembersRequest,
    responses((status = 200, body = ConversationDetails), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, description = "not_owner, not_connected or room_full", body = Problem),
              (status = 404, body = Problem)))]
pub async fn add_members(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<ConversationId>,
    ApiJson(request): ApiJson<AddMembersRequest>,
) -> Result<Json<ConversationDetails>, ApiError> {
    Ok(Json(
        conversations::add_members(
            state.store.as_ref(),
            auth,
            id,
            &request.user_ids,
            natter_core::clock::now_ms(),
        )
        .await?,
    ))
}

/// Removes a member (owner only), or leaves when `user_id` is the caller.
#[utoipa::path(delete, path = "/v1/conversations/{id}/members/{user_id}", tag = "conversations",
    security(("bearer" = [])), params(("id" = ConversationId, Path), ("user_id" = UserId, Path)),
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 403, description = "not_owner", body = Problem), (status = 404, body = Problem)))]
pub async fn remove_member(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((id, user)): ApiPath<(ConversationId, UserId)>,
) -> Result<StatusCode, ApiError> {
    conversations::remove_member(state.store.as_ref(), auth, id, user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A page of the conversation's messages, oldest first (members; past members up to when
/// they left).
#[utoipa::path(get, path = "/v1/conversations/{id}/messages", tag = "conversations", security(("bearer" = [])),
    params(("id" = ConversationId, Path), Page),
    responses((status = 200, body = MessagesResponse), (status = 400, body = Problem), (status = 401, body = Problem),
              (status = 404, body = Problem)))]
pub async fn history(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath(id): ApiPath<ConversationId>,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<MessagesResponse>, ApiError> {
    let messages = conversations::history(
        state.store.as_ref(),
        auth.user_id,
        id,
        page.after,
        page.before,
        page.limit,
    )
    .await?;
    Ok(Json(MessagesResponse { messages }))
}

/// How far a message got: sent, delivered to which devices and users, read by whom.
#[utoipa::path(get, path = "/v1/conversations/{id}/messages/{seq}/receipts", tag = "conversations",
    security(("bearer" = [])), params(("id" = ConversationId, Path), ("seq" = i64, Path)),
    responses((status = 200, body = MessageReceipts), (status = 401, body = Problem), (status = 404, body = Problem)))]
pub async fn receipts(
    State(state): State<AppState>,
    auth: Auth,
    ApiPath((id, seq)): ApiPath<(ConversationId, i64)>,
) -> Result<Json<MessageReceipts>, ApiError> {
    Ok(Json(
        conversations::receipts(state.store.as_ref(), auth.user_id, id, seq).await?,
    ))
}

/// Paging of the sent list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SentPage {
    /// Messages stored before this server time (ms); the default is now.
    before_ts: Option<i64>,
    /// At most this many (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// What the caller sent, from any device, newest first.
#[utoipa::path(get, path = "/v1/messages/sent", tag = "conversations", security(("bearer" = [])),
    params(SentPage),
    responses((status = 200, body = MessagesResponse), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn sent(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(page): ApiQuery<SentPage>,
) -> Result<Json<MessagesResponse>, ApiError> {
    let limit = conversations::page_limit(page.limit)?;
    let messages = state
        .store
        .sent_by(auth.user_id, page.before_ts.unwrap_or(i64::MAX), limit)
        .await?;
    Ok(Json(MessagesResponse { messages }))
}

/// Paging of the undelivered list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UndeliveredPage {
    /// The `next` of the previous page (opaque: `<conversation id>.<seq>`); the default is
    /// the start.
    #[param(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\.[0-9]{1,18}$"
    )]
    after: Option<String>,
    /// At most this many (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<usize>,
}

/// What a sync would send this device: messages past its delivered cursors in every
/// conversation, not those it sent itself, a page at a time (follow `next`).
#[utoipa::path(get, path = "/v1/messages/undelivered", tag = "conversations", security(("bearer" = [])),
    params(UndeliveredPage),
    responses((status = 200, body = UndeliveredResponse), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn undelivered(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(page): ApiQuery<UndeliveredPage>,
) -> Result<Json<UndeliveredResponse>, ApiError> {
    let after = page
        .after
        .as_deref()
        .map(str::parse::<conversations::UndeliveredCursor>)
        .transpose()?;
    let (messages, next) =
        conversations::undelivered(state.store.as_ref(), auth, after, page.limit).await?;
    Ok(Json(UndeliveredResponse {
        messages,
        next: next.map(|cursor| cursor.to_string()),
    }))
}
