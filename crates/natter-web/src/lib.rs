#![doc = include_str!("../README.md")]
// The bindings need a JavaScript host: on native targets the crate is empty but for the views'
// tests (and the example, natter-crypto's native safety number for the browser tests).

#[cfg(target_arch = "wasm32")]
mod error;
#[cfg(target_arch = "wasm32")]
pub mod natter;
#[cfg(any(target_arch = "wasm32", test))]
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))] // natively, only its tests use it
mod views;

#[cfg(target_arch = "wasm32")]
pub use natter::Natter;
