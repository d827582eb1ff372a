//! The web app at `/`: the files crates/natter-web/scripts/build made, embedded in the binary.
//!
//! `index.html` is served `no-cache` (a new natterd serves a new app at once); everything
//! under `/assets/` is named by its content's hash and served `immutable`. Every response
//! carries a strict Content-Security-Policy: scripts, styles and the wasm only from this
//! origin (`wasm-unsafe-eval` lets the page compile wasm, not evaluate JavaScript strings),
//! connections only back to this server over HTTP(S) and WebSocket, no frames, no plugins.
//! Clients that accept gzip get each file gzipped, compressed once when natterd starts.

use axum::Router;
use natter_proto::codes;
use std::io::Write;
use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::ApiError;
use crate::state::AppState;

/// The built app: (path under `dist/`, bytes), listed by the build script.
static FILES: &[(&str, &[u8])] = &include!("../../../natter-web/dist/assets.rs");

/// How long a hashed asset may be cached: a year, never revalidated.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The app's routes, merged beside the API.
pub(crate) fn routes() -> Router<AppState> {
    // Gzip the files now, off the request path, so that the first visitor does not wait.
    std::thread::spawn(gzipped);
    Router::new()
        .route("/", get(index))
        .route("/assets/{file}", get(asset))
}

/// `GET /`: the app's page, `no-cache` so a new natterd's app is loaded at once.
async fn index(headers: HeaderMap) -> Response {
    serve("index.html", "no-cache", &headers)
}

/// `GET /assets/{file}`: a hashed asset of the app, cached for good; 404 for an unknown name.
async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    serve(&format!("assets/{file}"), IMMUTABLE, &headers)
}

/// Serves a file of the embedded app with `cache` as its `Cache-Control`, gzipped when
/// the request accepts it; 404 if there is no such file.
fn serve(path: &str, cache: &'static str, request: &HeaderMap) -> Response {
    let found = FILES
        .iter()
        .position(|(name, _)| *name == path)
        .and_then(|index| Some((index, content_type(path)?)));
    let Some((index, content_type)) = found else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            "no such file in the web app",
        )
        .into_response();
    };
    let compressed = accepts_gzip(request).then(|| gzipped()[index].as_slice());
    let mut response = compressed.unwrap_or(FILES[index].1).into_response();
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if compressed.is_some() {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(policy) = HeaderValue::from_str(&content_security_policy(request)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Every file gzipped, made once (at start, or by the first request that needs it first).
fn gzipped() -> &'static [Vec<u8>] {
    static GZIPPED: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    GZIPPED.get_or_init(|| {
        FILES
            .iter()
            .map(|(_, body)| {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder
                    .write_all(body)
                    .and_then(|()| encoder.finish())
                    .expect("gzip into memory cannot fail")
            })
            .collect()
    })
}

/// Whether `Accept-Encoding` lists gzip (and not with `q=0`).
fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            parts
                .next()
                .is_some_and(|name| name.eq_ignore_ascii_case("gzip"))
                && parts.all(|param| {
                    let q = param.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok());
                    q != Some(0.0)
                })
        })
}

/// The content type of a built file, from its extension; `None` for a kind the app never has.
fn content_type(path: &str) -> Option<&'static str> {
    Some(match path.rsplit_once('.')?.1 {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        _ => return None,
    })
}

/// The policy for a page served under `Host`. `'self'` covers `ws:`/`wss:` to the same host in
/// current browsers; the WebSocket origins are also named for older ones, when the host is a
/// plain `name[:port]` (anything else, and they are left out).
fn content_security_policy(request: &HeaderMap) -> String {
    let host = request
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
        });
    let sockets = host.map_or_else(String::new, |h| format!(" ws://{h} wss://{h}"));
    format!(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data:; connect-src 'self'{sockets}; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    )
}
