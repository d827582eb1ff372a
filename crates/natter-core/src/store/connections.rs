//! [`ConnectionStore`]: both sides of the relationship between two users, changed together.

use async_trait::async_trait;
use natter_proto::UserId;
use natter_proto::connections::ConnectionState;

use super::StoreError;
use super::accounts::UserRecord;

/// One side of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Side {
    /// The state.
    pub state: ConnectionState,
    /// Bumped on every change; 0 for a side that was never written.
    pub version: i64,
    /// Last change, ms (0 if never).
    pub updated_at: i64,
}

/// Both sides of a connection, from one user's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sides {
    /// The acting user's side.
    pub mine: Side,
    /// The peer's side.
    pub theirs: Side,
}

/// A stored side with the peer it is about.
#[derive(Clone, Debug)]
pub struct ConnectionRecord {
    /// The peer.
    pub peer: UserRecord,
    /// This user's side.
    pub side: Side,
}

/// Why a connection change was refused: what a [`Transition`] returns, and the store hands
/// back unchanged (the rules themselves are in [`crate::connections`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `If-Match` named an older version of the side.
    #[error("this connection changed since version {expected}; it is now at version {current}")]
    VersionMismatch {
        /// The version the caller expected.
        expected: i64,
        /// The side's current version.
        current: i64,
    },
    /// Accept or reject without a pending request from that user.
    #[error("there is no pending connection request from this user")]
    NoPendingRequest,
    /// Request or remove while the caller blocks the user.
    #[error("you have blocked this user; unblock them first")]
    Blocked,
}

/// A connection change: given both sides as stored (locked), the new states or a refusal.
pub type Transition<'a> =
    &'a (dyn Fn(Sides) -> Result<(ConnectionState, ConnectionState), Refusal> + Send + Sync);

/// Persistence of connections between users.
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    /// Both sides of the connection between `user` and `peer`.
    async fn connection(&self, user: UserId, peer: UserId) -> Result<Sides, StoreError>;
    /// Those of `candidates` that `user` has an accepted connection with.
    async fn accepted_among(
        &self,
        user: UserId,
        candidates: &[UserId],
    ) -> Result<std::collections::HashSet<UserId>, StoreError>;
    /// Every side of `user` that is not `none`, with the peer's record.
    async fn connections_of(&self, user: UserId) -> Result<Vec<ConnectionRecord>, StoreError>;
    /// Applies `transition` to both sides atomically (both locked), bumping the version of each
    /// side whose state changes. Returns the sides after the change, or the transition's refusal.
    async fn change_connection(
        &self,
        user: UserId,
        peer: UserId,
        now: i64,
        transition: Transition<'_>,
    ) -> Result<Result<Sides, Refusal>, StoreError>;
}
