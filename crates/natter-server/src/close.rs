//! How and why natterd closes WebSocket connections: the close codes it sends
//! (docs/protocol.md, "Close codes") and the reasons that cross nodes of a cluster.

/// Authentication failed, or no longer holds (the device was logged out or removed).
pub const POLICY: u16 = 1008;
/// The account was suspended by an operator.
pub const SUSPENDED: u16 = 4003;
/// The node is shutting down.
pub const RESTART: u16 = 1012;
/// A frame over the hard size limit.
pub const TOO_BIG: u16 = 1009;
/// A text frame that is not valid UTF-8 (RFC 6455, 8.1).
pub const INVALID_DATA: u16 = 1007;
/// Nothing received for the idle timeout.
pub const IDLE: u16 = 4001;
/// The connection's queue filled.
pub const TOO_SLOW: u16 = 4008;

/// Why a removed device's connections are closed (it logged out, or another of the user's
/// devices removed it), with [`POLICY`].
pub const SIGNED_OUT: &str = "this device was logged out; log in again";

/// The close reason a suspended account's connections get, with [`SUSPENDED`].
pub const SUSPENDED_REASON: &str = "account suspended";
