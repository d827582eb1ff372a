//! What the bindings take from JavaScript: ids and JSON, parsed with an error that says which.

use std::str::FromStr;

use serde::de::DeserializeOwned;
use wasm_bindgen::JsError;

/// Parses an id (`UserId`, `DeviceId`, `ConversationId`) given as a UUID string.
pub(crate) fn id<T: FromStr>(text: &str, what: &str) -> Result<T, JsError> {
    text.parse()
        .map_err(|_| JsError::new(&format!("not a valid {what}: expected a UUID")))
}

/// Parses a JSON document of one of natter-proto's types.
pub(crate) fn json<T: DeserializeOwned>(text: &str, what: &str) -> Result<T, JsError> {
    serde_json::from_str(text).map_err(|e| JsError::new(&format!("not a valid {what}: {e}")))
}

/// The JSON of a natter-proto value, for JavaScript to send or read.
pub(crate) fn to_json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("natter-proto's types always serialize")
}
