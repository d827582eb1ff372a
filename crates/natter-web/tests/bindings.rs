//! The `Natter` class as JavaScript calls it, run in wasm under `wasm-bindgen-test` (Node):
//! `.ci/web` runs them with `cargo test -p natter-web --target wasm32-unknown-unknown`. What
//! needs a server and IndexedDB (login, chat, the store) is tested in Chromium (`e2e/`).
//! On a native target this file is empty: the bindings need a JavaScript host.
#![cfg(all(target_arch = "wasm32", target_os = "unknown"))]

use natter_web::Natter;
use wasm_bindgen::JsValue;
use wasm_bindgen_test::wasm_bindgen_test;

/// The `name` and `message` JavaScript reads from an error the bindings raised.
fn name_and_message(error: JsValue) -> (String, String) {
    let error = js_sys::Error::from(error);
    (String::from(error.name()), String::from(error.message()))
}

#[wasm_bindgen_test]
async fn opening_a_store_that_was_never_made_says_not_logged_in() {
    let Err(error) = Natter::open("nowhere".into(), "passphrase".into()).await else {
        panic!("a store that does not exist opened");
    };
    assert_eq!(name_and_message(error).0, "not_logged_in");
}

#[wasm_bindgen_test]
async fn a_server_that_cannot_be_reached_says_unreachable() {
    let Err(error) = Natter::register(
        "http://127.0.0.1:9".into(),
        "alice".into(),
        "alice-password".into(),
        None,
    )
    .await
    else {
        panic!("registered with no server");
    };
    let (name, message) = name_and_message(error);
    assert_eq!(name, "unreachable", "{message}");
}
