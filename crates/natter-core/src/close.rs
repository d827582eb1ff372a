//! Why natterd closes WebSocket connections: the reasons it gives with the close codes of
//! [`natter_proto::close::CloseCode`], and the two that cross nodes of a cluster.

/// Why a removed device's connections are closed (it logged out, or another of the user's
/// devices removed it), with [`CloseCode::Policy`](natter_proto::close::CloseCode::Policy).
pub const SIGNED_OUT: &str = "this device was logged out; log in again";

/// The close reason a suspended account's connections get, with
/// [`CloseCode::Suspended`](natter_proto::close::CloseCode::Suspended).
pub const SUSPENDED_REASON: &str = "account suspended";
