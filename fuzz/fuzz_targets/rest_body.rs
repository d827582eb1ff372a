//! natterd's reading of REST request bodies: each request type through the server's own
//! extractor (`ApiJson`, as the routes use it), then the server's pure checks of what it read.
//! Accepted bodies are JSON objects that round-trip; refused ones answer 4xx problem+json; the
//! checks accept only what they promise.
#![no_main]

use axum::extract::{FromRequest, Request};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use libfuzzer_sys::fuzz_target;
use natter_core::accounts::{check_avatar_url, check_display_name};
use natter_core::conversations::UndeliveredCursor;
use natter_core::identity::{check_backup_name, check_identity};
use natter_core::keys::{check_identity_keys, check_one_time_key};
use natter_fuzz::{assert_client_error, ready};
use natter_proto::UserId;
use natter_proto::accounts::{CreateAccountRequest, CreateSessionRequest, UpdateProfileRequest};
use natter_proto::conversations::{AddMembersRequest, CreateDirectRequest, CreateRoomRequest};
use natter_proto::keys::{
    CrossSigningKeys, DeviceSignatureRequest, DevicesQuery, IdentityKeys, OneTimeKey,
    PutBackupItemRequest, ResetIdentityRequest, UploadKeysRequest,
};
use natter_proto::limits::{AVATAR_URL_MAX, DISPLAY_NAME_MAX, is_valid_username};
use natter_server::extract::ApiJson;
use serde::Serialize;
use serde::de::DeserializeOwned;

fuzz_target!(|data: &[u8]| {
    if let Some(request) = extract::<CreateAccountRequest>(data) {
        check_username(&request.username);
        check_profile(request.display_name, None);
    }
    if let Some(request) = extract::<CreateSessionRequest>(data) {
        check_username(&request.username);
    }
    if let Some(request) = extract::<UpdateProfileRequest>(data) {
        check_profile(request.display_name, request.avatar_url);
    }
    extract::<CreateDirectRequest>(data);
    extract::<CreateRoomRequest>(data);
    extract::<AddMembersRequest>(data);
    extract::<DevicesQuery>(data);
    extract::<DeviceSignatureRequest>(data);
    if let Some(request) = extract::<UploadKeysRequest>(data) {
        if let Some(keys) = &request.identity_keys {
            check_keys(keys);
        }
        for key in request.one_time_keys.iter().chain(&request.fallback_key) {
            check_key(key);
        }
    }
    if let Some(keys) = extract::<CrossSigningKeys>(data) {
        check_cross_signing(&keys);
    }
    if let Some(request) = extract::<ResetIdentityRequest>(data) {
        check_cross_signing(&request.identity);
    }
    if let Some(request) = extract::<PutBackupItemRequest>(data) {
        // The item's name comes from the path; the data's printable-ASCII rule is the same one.
        if check_backup_name("data", &request.data).is_ok() {
            assert!(request.data.bytes().all(|b| b.is_ascii_graphic()));
        }
    }
    // The `after` query parameter of `GET /v1/messages/undelivered`.
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(cursor) = text.parse::<UndeliveredCursor>()
    {
        assert_eq!(
            cursor.to_string().parse::<UndeliveredCursor>().ok(),
            Some(cursor)
        );
    }
});

/// The body as a `T`, read by natterd's extractor: `None` when it is refused, which must be a
/// 4xx problem; when accepted, the body is a JSON object and the value round-trips.
fn extract<T: Serialize + DeserializeOwned>(body: &[u8]) -> Option<T> {
    match ready(ApiJson::<T>::from_request(json_request(body), &())) {
        Ok(ApiJson(value)) => {
            let first = body.iter().find(|b| !b.is_ascii_whitespace());
            assert_eq!(first, Some(&b'{'), "only JSON objects are accepted");
            let json = serde_json::to_vec(&value).expect("a request serializes");
            let ApiJson(again) = ready(ApiJson::<T>::from_request(json_request(&json), &()))
                .unwrap_or_else(|e| panic!("a serialized request is refused: {}", e.detail()));
            assert_eq!(
                serde_json::to_value(&again).expect("serializes"),
                serde_json::to_value(&value).expect("serializes"),
            );
            Some(value)
        }
        Err(error) => {
            assert_client_error(error);
            None
        }
    }
}

fn json_request(body: &[u8]) -> Request {
    Request::builder()
        .method("POST")
        .uri("/")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_vec()))
        .expect("a request")
}

fn check_username(name: &str) {
    if is_valid_username(name) {
        assert!((3..=32).contains(&name.len()));
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        );
    }
}

/// A display name and avatar URL as stored: what the checks keep passes them again unchanged,
/// and is what docs/protocol.md and the API document promise.
fn check_profile(display_name: Option<String>, avatar_url: Option<String>) {
    if let Some(name) = display_name {
        match check_display_name(name) {
            Ok(kept) => {
                assert_eq!(kept.trim(), kept);
                assert!((1..=DISPLAY_NAME_MAX).contains(&kept.chars().count()));
                assert!(!kept.chars().any(char::is_control));
                assert_eq!(check_display_name(kept.clone()).ok(), Some(kept));
            }
            Err(error) => assert_client_error(error.into()),
        }
    }
    if let Some(url) = avatar_url {
        match check_avatar_url(url.clone()) {
            Ok(None) => assert!(url.is_empty()),
            Ok(Some(kept)) => {
                assert_eq!(kept, url);
                assert!(kept.len() <= AVATAR_URL_MAX);
                assert!(kept.starts_with("https://") || kept.starts_with("http://"));
                assert!(!kept.chars().any(|c| c.is_whitespace() || c.is_control()));
            }
            Err(error) => assert_client_error(error.into()),
        }
    }
}

fn check_keys(keys: &IdentityKeys) {
    match check_identity_keys(keys) {
        Ok(()) => {
            assert_eq!(decoded_len(&keys.curve25519), Some(32));
            assert_eq!(decoded_len(&keys.ed25519), Some(32));
            assert_eq!(decoded_len(&keys.signature), Some(64));
        }
        Err(error) => assert_client_error(error.into()),
    }
}

fn check_key(key: &OneTimeKey) {
    match check_one_time_key(key) {
        Ok(()) => {
            assert!((1..=64).contains(&key.key_id.len()));
            assert!(key.key_id.bytes().all(|b| b.is_ascii_graphic()));
            assert_eq!(decoded_len(&key.key), Some(32));
        }
        Err(error) => assert_client_error(error.into()),
    }
}

/// An identity checked for a fixed user: no panic, and refusals are 4xx.
fn check_cross_signing(keys: &CrossSigningKeys) {
    let user = UserId(uuid::Uuid::from_u128(
        0x0190_0000_0000_7000_8000_0000_0000_0001,
    ));
    if let Err(error) = check_identity(user, keys) {
        assert_client_error(error.into());
    }
}

fn decoded_len(text: &str) -> Option<usize> {
    STANDARD_NO_PAD.decode(text).ok().map(|bytes| bytes.len())
}
