//! [`ServiceError`]: why a service refused or failed a request, in terms that carry no HTTP
//! types (the server maps each to a response in natter-server's `error` module).

use crate::store::{Refusal, StoreError};

/// Why a service refused or failed a request. Carries no HTTP types.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed or breaks a rule (the text says which).
    #[error("{0}")]
    Invalid(String),
    /// Wrong username or password.
    #[error("wrong username or password")]
    BadCredentials,
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(&'static str),
    /// A rule forbids this; `code` names the rule (such as `not_member`).
    #[error("{detail}")]
    Denied {
        /// A stable code.
        code: &'static str,
        /// What the rule is, for people.
        detail: String,
    },
    /// Too many requests of this kind; try again after `retry_after`.
    #[error("too many {kind} requests; retry in {} ms", whole_ms_up(*retry_after))]
    RateLimited {
        /// Which limit (`device_messages`, `account_logins`, ...).
        kind: &'static str,
        /// How long until the request would pass.
        retry_after: std::time::Duration,
    },
    /// The node already works on all the sends it can; try again after `retry_after` (the
    /// node's base wait, grown by the session while its refusals continue).
    #[error("the server is busy; retry in {} ms", whole_ms_up(*retry_after))]
    Busy {
        /// How long to wait.
        retry_after: std::time::Duration,
    },
    /// An earlier send on this connection was refused for a short while (the server busy, the
    /// sender's rate, the store unavailable); later ones wait as long, so that the sender's
    /// messages keep their order.
    #[error("an earlier message was refused for now; retry in {} ms, after it", whole_ms_up(*retry_after))]
    HeldBehind {
        /// How long to wait.
        retry_after: std::time::Duration,
    },
    /// The account is suspended by an operator.
    #[error("this account is suspended")]
    Suspended,
    /// The request or one of its parts is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// The thing does not exist, or the caller may not know it does.
    #[error("{0}")]
    NotFound(&'static str),
    /// It clashes with what is stored (the text says how).
    #[error("{0}")]
    Conflict(String),
    /// Well formed, but a key or signature in it does not check (422 `bad_signature`).
    #[error("{0}")]
    BadSignature(String),
    /// A connection change was refused.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something else failed inside the server.
    #[error("internal error: {0}")]
    Internal(String),
}

/// `wait` in whole milliseconds, rounded up (at least 1), as clients are told it: in a frame's
/// `retry_after_ms` and in the words beside it.
pub fn whole_ms_up(wait: std::time::Duration) -> u64 {
    u64::try_from(wait.as_nanos().div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}
