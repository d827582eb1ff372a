//! Time for the client's rules, the same on every target: the wall clock, monotonic instants
//! and timers (tokio's on native, the browser's `setTimeout` in wasm, where tokio has no timer).

use std::future::Future;
use std::time::Duration;

pub(crate) use web_time::Instant;

/// The wall clock, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> i64 {
    web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A future that completes after `duration`.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) async fn sleep(duration: Duration) {
    tokio::time::sleep(duration).await;
}

/// A future that completes after `duration`.
#[cfg(target_arch = "wasm32")]
pub(crate) async fn sleep(duration: Duration) {
    use wasm_bindgen::prelude::*;

    #[wasm_bindgen]
    extern "C" {
        // The global `setTimeout`, present in windows and workers alike.
        #[wasm_bindgen(js_name = setTimeout)]
        fn set_timeout(callback: &js_sys::Function, millis: i32) -> JsValue;
    }

    let millis = i32::try_from(duration.as_millis()).unwrap_or(i32::MAX);
    let fired = js_sys::Promise::new(&mut |resolve, _reject| {
        set_timeout(&resolve, millis);
    });
    let _ = wasm_bindgen_futures::JsFuture::from(fired).await;
}

/// `future`'s output, or `None` if it did not complete within `limit`.
pub(crate) async fn timeout<T>(limit: Duration, future: impl Future<Output = T>) -> Option<T> {
    let future = std::pin::pin!(future);
    let timer = std::pin::pin!(sleep(limit));
    match futures_util::future::select(future, timer).await {
        futures_util::future::Either::Left((output, _)) => Some(output),
        futures_util::future::Either::Right(((), _)) => None,
    }
}
