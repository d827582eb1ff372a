//! Checks shared by the fuzz targets.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use axum::response::IntoResponse;
use natter_proto::problem::{CONTENT_TYPE, Problem};
use natter_server::error::ApiError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Serializing `value` and parsing the JSON back gives the same value, and the same JSON again.
pub fn assert_round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let json = serde_json::to_string(value).expect("serializes");
    let again: T = serde_json::from_str(&json).expect("what was serialized parses");
    assert_eq!(&again, value, "round trip through {json}");
    assert_eq!(serde_json::to_string(&again).expect("serializes"), json);
}

/// The error is a 4xx problem+json response whose body says the same status and code: bad
/// input never answers 5xx.
pub fn assert_client_error(error: ApiError) {
    let code = error.code();
    let response = error.into_response();
    let status = response.status();
    assert!(
        status.is_client_error(),
        "bad input answered {status} ({code})"
    );
    assert_eq!(response.headers()["content-type"], CONTENT_TYPE);
    let body = ready(axum::body::to_bytes(response.into_body(), usize::MAX)).expect("a body");
    let problem: Problem = serde_json::from_slice(&body).expect("the body is a problem");
    assert_eq!(problem.status, status.as_u16());
    assert_eq!(problem.code, code);
}

/// The output of a future that needs nothing but memory (an extractor over an in-memory body):
/// it is polled once and must be ready.
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the future waited on something besides memory"),
    }
}
