//! The stable, machine-readable error codes: a problem document's `code` (REST) and an
//! `error` frame's `code` (WebSocket). Clients branch on these; their wording for people is
//! the `detail` or `message` next to them. A code, once sent, keeps its meaning.

/// The request is malformed or breaks a rule (400).
pub const INVALID_REQUEST: &str = "invalid_request";
/// No token, or the token is not valid (any more) (401; on the WebSocket, before closing).
pub const UNAUTHORIZED: &str = "unauthorized";
/// The caller may not do this (403).
pub const FORBIDDEN: &str = "forbidden";
/// The account is suspended by an operator (403).
pub const SUSPENDED: &str = "suspended";
/// Too many requests, or the server is busy: retry after the time given (429).
pub const RATE_LIMITED: &str = "rate_limited";
/// The request or one of its parts is larger than allowed (413; a WebSocket frame too).
pub const TOO_LARGE: &str = "too_large";
/// No such thing, or the caller may not know it exists (404).
pub const NOT_FOUND: &str = "not_found";
/// It clashes with what is stored, such as a taken username (409).
pub const CONFLICT: &str = "conflict";
/// A key or signature in the request does not check (422).
pub const BAD_SIGNATURE: &str = "bad_signature";
/// `If-Match` named an older version of a connection (409, with `current_version`).
pub const VERSION_MISMATCH: &str = "version_mismatch";
/// Accept or reject without a pending request from that user (409).
pub const NO_PENDING_REQUEST: &str = "no_pending_request";
/// Request or remove while the caller blocks the user (409).
pub const BLOCKED_BY_YOU: &str = "blocked_by_you";
/// The server cannot reach its database; retry shortly (503).
pub const STORE_UNAVAILABLE: &str = "store_unavailable";
/// The server failed (500).
pub const INTERNAL: &str = "internal";

/// The sender is not a member of the conversation (403).
pub const NOT_MEMBER: &str = "not_member";
/// The two users are not connected (403).
pub const NOT_CONNECTED: &str = "not_connected";
/// The room already has the most members it can (403).
pub const ROOM_FULL: &str = "room_full";
/// Only the room's owner may do this (403).
pub const NOT_OWNER: &str = "not_owner";
/// The device's to-device inbox is full (403).
pub const INBOX_FULL: &str = "inbox_full";
/// The user has no cross-signing identity yet (403).
pub const NO_IDENTITY: &str = "no_identity";
/// The device is not approved by its user's identity (403).
pub const NOT_APPROVED: &str = "not_approved";
/// The password given to confirm an action is wrong (403).
pub const WRONG_PASSWORD: &str = "wrong_password";

/// A WebSocket frame that is not a client frame.
pub const INVALID_FRAME: &str = "invalid_frame";
/// The WebSocket connection sent nothing for the idle timeout (just before closing it).
pub const IDLE_TIMEOUT: &str = "idle_timeout";

/// The endpoint does not take the request's method (405).
pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
/// The request body is over the size the REST API accepts (413).
pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
