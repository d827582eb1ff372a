//! The connection service: who may see whose profile and keys, and (later) message them.

use serde::{Deserialize, Serialize};

use crate::UserId;
use crate::accounts::Profile;
use crate::keys::DeviceInfo;

/// The state of one side of a connection, as that side sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    /// No relationship.
    None,
    /// I asked them; they have not answered.
    Requested,
    /// They asked me; I have not answered.
    Incoming,
    /// We are connected.
    Accepted,
    /// I asked them and they said no. I may ask again.
    Rejected,
    /// I blocked them.
    Blocked,
}

/// My side of a connection with one user, after a change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionStatus {
    /// The other user.
    pub user_id: UserId,
    /// My side's state.
    pub state: ConnectionState,
    /// My side's version; send it back in `If-Match` to change it only if nobody else did.
    pub version: i64,
    /// When my side last changed (ms since the Unix epoch).
    pub updated_at: i64,
}

/// One entry of `GET /connection/user/{userId}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionEntry {
    /// My side of the connection.
    #[serde(flatten)]
    pub status: ConnectionStatus,
    /// The other user's profile. Connections and incoming requests show it whole; for requests
    /// I sent, rejected ones and blocked users it shows only the username (as display name too).
    pub profile: Profile,
    /// The other user's devices and their public keys; only for accepted connections.
    pub devices: Vec<DeviceInfo>,
}

/// `GET /connection/user/{userId}`: everything about my connections.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionsResponse {
    /// Accepted connections, with profiles and device keys.
    pub connections: Vec<ConnectionEntry>,
    /// Requests others sent me.
    pub incoming: Vec<ConnectionEntry>,
    /// Requests I sent that are still open or were rejected.
    pub outgoing: Vec<ConnectionEntry>,
    /// Users I blocked.
    pub blocked: Vec<ConnectionEntry>,
}
