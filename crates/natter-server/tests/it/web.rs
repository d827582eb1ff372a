//! The web app natterd embeds: served at `/` beside the API with the right content types,
//! caching and security headers; unknown paths are problems; the API is unchanged.

use reqwest::{Method, Response};

use crate::helpers::{Backend, TestServer, backend_tests, server};

backend_tests!(
    the_app_is_served_with_types_caching_and_policy,
    unknown_app_paths_are_problems_and_the_api_is_unchanged
);

/// Fetches `path` and checks what every response of the app carries.
async fn fetch(server: &TestServer, path: &str) -> Response {
    let response = server.raw(Method::GET, path).send().await.unwrap();
    assert_eq!(response.status(), 200, "{path}");
    let headers = response.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    assert_eq!(headers["x-frame-options"], "DENY", "{path}");
    assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
    let host = server.url.trim_start_matches("http://");
    let policy = headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self' 'wasm-unsafe-eval'",
        "style-src 'self'",
        &format!("connect-src 'self' ws://{host} wss://{host}"),
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(
            policy.split("; ").any(|d| d == directive),
            "{path}: {directive} in {policy}"
        );
    }
    response
}

/// The `/assets/...` paths `text` refers to that end in `extension`.
fn asset_paths(text: &str, extension: &str) -> Vec<String> {
    text.match_indices("/assets/")
        .filter_map(|(at, _)| {
            let rest = &text[at..];
            let end = rest.find(['"', '\'', '`', ')'])?;
            let path = &rest[..end];
            path.ends_with(extension).then(|| path.to_owned())
        })
        .collect()
}

async fn the_app_is_served_with_types_caching_and_policy(backend: Backend) {
    let server = server!(backend);
    let page = fetch(&server, "/").await;
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(page.headers()["cache-control"], "no-cache");
    let html = page.text().await.unwrap();
    assert!(html.contains("<div id=\"app\">"), "{html}");

    let scripts = asset_paths(&html, ".js");
    let styles = asset_paths(&html, ".css");
    assert!(!scripts.is_empty() && !styles.is_empty(), "{html}");
    let mut wasm = Vec::new();
    for (path, content_type) in scripts
        .iter()
        .map(|p| (p, "text/javascript; charset=utf-8"))
        .chain(styles.iter().map(|p| (p, "text/css; charset=utf-8")))
    {
        let response = fetch(&server, path).await;
        assert_eq!(response.headers()["content-type"], content_type, "{path}");
        assert_eq!(
            response.headers()["cache-control"],
            "public, max-age=31536000, immutable",
            "{path}"
        );
        let text = response.text().await.unwrap();
        assert!(!text.is_empty(), "{path}");
        wasm.extend(asset_paths(&text, ".wasm"));
    }
    wasm.dedup();
    assert_eq!(wasm.len(), 1, "the script loads one wasm module: {wasm:?}");
    let response = fetch(&server, &wasm[0]).await;
    assert_eq!(response.headers()["content-type"], "application/wasm");
    assert_eq!(
        response.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(response.headers()["vary"], "accept-encoding");
    assert!(response.headers().get("content-encoding").is_none());
    let bytes = response.bytes().await.unwrap();
    assert_eq!(&bytes[..4], b"\0asm", "a WebAssembly module");

    for accept in ["gzip", "br, gzip;q=0.5", "deflate, GZIP"] {
        let gzipped = server
            .raw(Method::GET, &wasm[0])
            .header("accept-encoding", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(gzipped.headers()["content-encoding"], "gzip", "{accept}");
        assert_eq!(gzipped.headers()["content-type"], "application/wasm");
        let compressed = gzipped.bytes().await.unwrap();
        assert!(
            compressed.len() < bytes.len() / 2,
            "{} bytes",
            compressed.len()
        );
        let mut unpacked = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&compressed[..]),
            &mut unpacked,
        )
        .unwrap();
        assert_eq!(unpacked, bytes, "{accept}");
    }
    for refused in ["br", "gzip;q=0", "identity"] {
        let plain = server
            .raw(Method::GET, "/")
            .header("accept-encoding", refused)
            .send()
            .await
            .unwrap();
        assert!(
            plain.headers().get("content-encoding").is_none(),
            "{refused}"
        );
    }
}

async fn unknown_app_paths_are_problems_and_the_api_is_unchanged(backend: Backend) {
    let server = server!(backend);
    for path in [
        "/assets/nothing-here.js",
        "/assets/assets.rs",
        "/assets/%2e%2e%2findex.html",
        "/assets/",
        "/index.html",
        "/app",
    ] {
        let response = server.raw(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
    }
    let response = server.raw(Method::POST, "/").send().await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );

    let health = server.raw(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.headers().get("content-security-policy").is_none());
    let missing = server.raw(Method::GET, "/v1/nothing").send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let problem: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(problem["detail"], "no such endpoint");
    let document = server
        .raw(Method::GET, "/v1/openapi.json")
        .send()
        .await
        .unwrap();
    let document: serde_json::Value = document.json().await.unwrap();
    let paths = document["paths"].as_object().unwrap();
    assert!(paths.keys().all(|p| p != "/" && !p.starts_with("/assets")));
    let alice = server.user("alice").await;
    assert_eq!(alice.me().await.unwrap().profile.username, "alice");
}
