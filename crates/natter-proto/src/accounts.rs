//! Accounts, sessions (logins) and profiles.

use serde::{Deserialize, Serialize};

use crate::{DeviceId, UserId};

/// `POST /v1/accounts`: register a new user.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateAccountRequest {
    /// 3 to 32 ASCII letters, digits, `_`, `.` or `-`; unique regardless of case.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 3,
            max_length = 32,
            pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
        )
    )]
    pub username: String,
    /// At least 8 characters, at most 1024 bytes.
    #[cfg_attr(feature = "openapi", schema(min_length = 8, max_length = 1024))]
    pub password: String,
    /// Shown to connected users; defaults to the username. 1 to 64 characters (leading and
    /// trailing spaces are trimmed), no control characters.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
        )
    )]
    pub display_name: Option<String>,
}

/// The new account.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateAccountResponse {
    /// The new user's id.
    pub user_id: UserId,
}

/// `POST /v1/sessions`: log in, which registers a new device.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateSessionRequest {
    /// The username, in any case.
    pub username: String,
    /// The password.
    pub password: String,
    /// A name for this device, such as "laptop": 1 to 64 characters (leading and trailing
    /// spaces are trimmed), no control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
        )
    )]
    pub device_name: String,
}

/// A logged-in device and its bearer token.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionResponse {
    /// The bearer token for `Authorization: Bearer`. Shown once; the server keeps only a hash.
    pub token: String,
    /// The user who logged in.
    pub user_id: UserId,
    /// The device this login created.
    pub device_id: DeviceId,
    /// When the token expires unless used, in milliseconds since the Unix epoch: each use
    /// (a request, an open connection) moves it later, at most once a day.
    pub expires_at: i64,
}

/// A user as connected users see them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Profile {
    /// The user's id.
    pub user_id: UserId,
    /// The username as registered.
    pub username: String,
    /// The display name.
    pub display_name: String,
    /// An avatar image URL, if set.
    pub avatar_url: Option<String>,
}

/// `GET /v1/users/{id}/presence`: whether a user is online now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Presence {
    /// The user's id.
    pub user_id: UserId,
    /// At least one of the user's devices holds a live connection (to any node).
    pub online: bool,
}

/// `GET /v1/me`: who the token belongs to.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MeResponse {
    /// The user's profile.
    pub profile: Profile,
    /// The device this token belongs to.
    pub device_id: DeviceId,
}

/// `PATCH /v1/me/profile`: change what connected users see. Absent fields stay as they are.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateProfileRequest {
    /// A new display name (1 to 64 characters, leading and trailing spaces trimmed, no control
    /// characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
        )
    )]
    pub display_name: Option<String>,
    /// A new avatar URL (`https://` or `http://`, no spaces, at most 512 bytes); an empty
    /// string clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 512,
            pattern = r"^(https?://[^\s\u0000-\u001f\u007f-\u009f]*)?$"
        )
    )]
    pub avatar_url: Option<String>,
}

/// `GET /v1/users/by-username/{username}`: find a user to connect with.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserLookup {
    /// The user's id.
    pub user_id: UserId,
    /// The username as registered.
    pub username: String,
}
