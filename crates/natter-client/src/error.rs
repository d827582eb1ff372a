//! Client errors.

use natter_proto::close::CloseCode;
use natter_proto::codes;
use natter_proto::problem::Problem;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused the request; the problem says why (`code` is stable).
    #[error("{} ({}): {}", .0.title, .0.code, .0.detail.as_deref().unwrap_or(""))]
    Api(Box<Problem>),
    /// The server answered with an error status but no problem document.
    #[error("the server answered HTTP {0} without an explanation")]
    UnexpectedStatus(u16),
    /// The server could not be reached, or its answer could not be read.
    #[error("cannot talk to the server: {0}")]
    Http(#[source] reqwest::Error),
    /// The WebSocket failed.
    #[error("WebSocket error: {0}")]
    WebSocket(#[source] crate::ws::SocketError),
    /// The browser's storage (IndexedDB) could not be opened.
    #[error("the browser's storage cannot be opened: {0}")]
    BrowserStorage(String),
    /// The WebSocket connection ended.
    #[error("the connection closed (code {:?}): {}", .0.code, .0.reason)]
    Closed(crate::ws::Closed),
    /// The server sent something this client does not understand.
    #[error("unexpected frame from the server: {0}")]
    Protocol(String),
    /// The server URL is not an http(s) URL.
    #[error("not an http:// or https:// URL: {0}")]
    InvalidUrl(String),
    /// Encryption failed, or input was refused before encryption (such as a text too long).
    #[error(transparent)]
    Crypto(#[from] natter_crypto::CryptoError),
    /// The local store failed.
    #[error("local store error: {0}")]
    Store(#[source] rusqlite::Error),
    /// A local file could not be read or written.
    #[error("local file error: {0}")]
    Io(#[source] std::io::Error),
    /// The local store already holds a login.
    #[error("{} already holds a login; log out first", .0.display())]
    StoreInUse(std::path::PathBuf),
    /// The passphrase does not unlock the local store (or the store is damaged).
    #[error("cannot unlock the local store: wrong passphrase (or a damaged store)")]
    WrongPassphrase,
    /// The local store was made by another version of the client.
    #[error("the local store has an unknown format ({0}); log in again with a new data directory")]
    UnknownStoreFormat(String),
    /// The local store has no login in it.
    #[error("this device is not logged in (no session in the local store)")]
    NotLoggedIn,
    /// This device logged out while the request waited; nothing was sent.
    #[error("this device logged out")]
    LoggedOut,
    /// The operation needs the conversation's members, but this user is not one.
    #[error("not a member of conversation {0}")]
    NotMember(natter_proto::ConversationId),
    /// A sync, or opening a connection, did not finish in time.
    #[error("timed out waiting for the server")]
    Timeout,
    /// A user verified earlier has a new identity (their safety number changed): nothing is
    /// sent to them until they are verified again. For this user's own identity: the server
    /// shows another identity than the one this device holds.
    #[error("the safety number of {0} changed since it was verified; verify again to send")]
    IdentityChanged(natter_proto::UserId),
    /// The server lists members a direct conversation cannot have: nothing is sent.
    #[error("conversation {0} lists other members than the two people of a direct conversation")]
    MembersChanged(natter_proto::ConversationId),
    /// The user's safety number changed since it was shown: nothing was confirmed.
    #[error(
        "the safety number of {0} changed since it was shown; compare the new one before confirming"
    )]
    NumberChanged(natter_proto::UserId),
    /// This device is not approved yet: it holds no identity to sign with, so it may not send.
    #[error("this device is not approved yet: approve it with the recovery key (natter recover)")]
    NotApproved,
    /// The user has no cross-signing identity yet.
    #[error("user {0} has no identity yet")]
    NoIdentity(natter_proto::UserId),
    /// The account has no backed-up identity to recover.
    #[error("this account has no key backup to recover from")]
    NoBackup,
    /// This user has no such device with valid keys.
    #[error("you have no device {0} with valid keys")]
    NoSuchDevice(natter_proto::DeviceId),
    /// No approval with this id is in progress.
    #[error("no approval {0} is in progress")]
    NoSuchApproval(String),
    /// The step needs a live connection ([`crate::Device::run`]).
    #[error("this device is not connected: it must be running live")]
    NotLive,
    /// The identity in the backup is not the one the server shows for this account.
    #[error("the server shows another identity than the one in your key backup")]
    IdentityMismatch,
    /// Removing an approved device rotates the keys it held, which needs the recovery key.
    #[error(
        "this device is approved and holds your identity's keys: removing it needs your recovery key, which replaces them"
    )]
    RecoveryKeyNeeded,
}

impl ClientError {
    /// The problem the server sent, if it sent one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Api(problem) => Some(problem),
            _ => None,
        }
    }

    /// The HTTP status of the server's refusal, if it refused.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api(problem) => Some(problem.status),
            Self::UnexpectedStatus(status) => Some(*status),
            _ => None,
        }
    }

    /// Whether the server could not be reached at all (refused, or no answer in time to
    /// connect), so that trying another node is safe.
    pub(crate) fn is_unreachable(&self) -> bool {
        match self {
            Self::Http(error) => crate::http_unreachable(error),
            Self::WebSocket(error) => crate::ws::is_unreachable(error),
            Self::Timeout => true,
            _ => false,
        }
    }

    /// The stable problem code (such as `version_mismatch`), if the server refused.
    pub fn code(&self) -> Option<&str> {
        self.problem().map(|p| p.code.as_str())
    }

    /// Whether the server no longer accepts this device: its login was revoked or expired, or
    /// its account suspended. Connecting again cannot help.
    pub fn is_device_refused(&self) -> bool {
        let suspended = matches!(self, Self::Closed(closed)
            if closed.code.and_then(CloseCode::from_code) == Some(CloseCode::Suspended));
        suspended
            || self.status() == Some(401)
            || matches!(self.code(), Some(codes::UNAUTHORIZED | codes::SUSPENDED))
    }

    /// The stable code of this error: the server's problem code, or this client's own for what
    /// it found itself (`identity_changed`, `not_approved`, `not_member`, `invalid_message`,
    /// `wrong_passphrase`, `unreachable`...), `client_error` for the rest. A queued message
    /// dropped for an error is reported with this code.
    pub fn code_or_local(&self) -> &str {
        match self {
            Self::Api(problem) => &problem.code,
            Self::UnexpectedStatus(_) => "server_error",
            Self::IdentityChanged(_) => "identity_changed",
            Self::NotApproved => codes::NOT_APPROVED,
            Self::MembersChanged(_) => "members_changed",
            Self::NotMember(_) => codes::NOT_MEMBER,
            Self::Crypto(_) => "invalid_message",
            Self::WrongPassphrase => "wrong_passphrase",
            Self::NotLoggedIn => "not_logged_in",
            Self::LoggedOut => "logged_out",
            Self::StoreInUse(_) => "store_in_use",
            Self::RecoveryKeyNeeded => "recovery_key_needed",
            Self::Http(_) | Self::WebSocket(_) | Self::Timeout => "unreachable",
            Self::Closed(_) if self.is_device_refused() => codes::SUSPENDED,
            _ => "client_error",
        }
    }
}
