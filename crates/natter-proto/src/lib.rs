//! Natter's wire types: the REST request and response bodies, id newtypes, limits and the
//! RFC 9457 problem document, shared by `natterd` and its clients.
//!
//! This crate does no I/O. With the `openapi` feature its types also describe themselves
//! for the server's generated OpenAPI document.
//!
//! Layout:
//! - [`ids`]: UUIDv7 newtypes for users and devices.
//! - [`limits`]: sizes the server enforces, so clients can check before sending.
//! - [`accounts`], [`keys`], [`connections`]: request and response bodies by service.
//! - [`conversations`]: conversations, members and history over REST.
//! - [`ws`]: the WebSocket frames.
//! - [`gateway`]: the host assigner's answer.
//! - [`problem`]: the error body every non-2xx response carries; [`codes`]: the stable error
//!   codes in it and in WebSocket `error` frames.
//! - [`close`]: the WebSocket close codes.

pub mod accounts;
pub mod close;
pub mod codes;
pub mod connections;
pub mod conversations;
pub mod gateway;
pub mod ids;
pub mod keys;
pub mod limits;
pub mod problem;
pub mod ws;

pub use ids::{ConversationId, DeviceId, UserId};
