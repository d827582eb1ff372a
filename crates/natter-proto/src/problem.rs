//! RFC 9457 problem details: the body of every error response.

use serde::{Deserialize, Serialize};

/// The media type of a [`Problem`] body.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// An error response (RFC 9457). `code` is stable and machine-readable; `detail` is for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// A URI naming the kind of problem (`about:blank` plus `code` when there is no page for it).
    #[serde(rename = "type", default = "about_blank")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request, in words a person can act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// A stable machine-readable code, such as `version_mismatch` (see [`crate::codes`]).
    pub code: String,
    /// The current version of the resource, on a `version_mismatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
}

fn about_blank() -> String {
    "about:blank".to_owned()
}
