//! What crosses the boundary: ids from JavaScript, parsed with an error that says which, and
//! JSON back.

use std::str::FromStr;

use wasm_bindgen::JsError;

/// Parses an id (`UserId`, `DeviceId`, `ConversationId`) given as a UUID string.
pub(crate) fn id<T: FromStr>(text: &str, what: &str) -> Result<T, JsError> {
    text.parse()
        .map_err(|_| JsError::new(&format!("not a valid {what}: expected a UUID")))
}

/// The JSON of a natter-proto value, for JavaScript to send or read.
pub(crate) fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("natter-proto's types always serialize")
}
