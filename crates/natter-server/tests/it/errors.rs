//! Bad input gets a clear RFC 9457 problem and a 4xx, never a 500; and the OpenAPI document
//! describes what the server really serves.

use natter_proto::problem::Problem;
use reqwest::{Method, Response};
use serde_json::Value;

use crate::helpers::{Backend, backend_tests, server};

backend_tests!(
    malformed_requests_get_problems,
    openapi_matches_the_server,
    the_openapi_document_validates_and_declares_problems
);

async fn problem(response: Response, status: u16) -> Problem {
    assert_eq!(response.status(), status, "{}", response.url());
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let problem: Problem = response.json().await.expect("a problem document");
    assert_eq!(problem.status, status);
    assert!(
        problem.detail.as_deref().is_some_and(|d| !d.is_empty()),
        "a detail a person can act on"
    );
    problem
}

async fn malformed_requests_get_problems(backend: Backend) {
    let server = server!(backend);
    let alice = server.user("alice").await;
    let json = |body: &'static [u8]| {
        server
            .raw(Method::POST, "/v1/accounts")
            .header("content-type", "application/json")
            .body(body)
    };
    problem(json(b"{not json").send().await.unwrap(), 400).await;
    problem(
        json(br#"{"username": 5, "password": "password123"}"#)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    problem(
        json(br#"{"password": "password123"}"#)
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    problem(
        json(b"{\"username\": \"\xff\xfe\", \"password\": \"password123\"}")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    problem(json(b"[]").send().await.unwrap(), 400).await;
    // Serde would take a struct's fields from an array: every body must be an object.
    for (method, path, body) in [
        (Method::PATCH, "/v1/me/profile", "[null,null]"),
        (Method::POST, "/v1/devices/current/keys", "[]"),
        (Method::POST, "/v1/devices/current/keys", " [ ] "),
        (Method::PATCH, "/v1/me/profile", "null"),
        (Method::PATCH, "/v1/me/profile", "\"x\""),
    ] {
        let response = server
            .raw(method.clone(), path)
            .bearer_auth(alice.token())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        problem(response, 400).await;
    }
    let no_type = server
        .raw(Method::POST, "/v1/accounts")
        .body(r#"{"username":"x"}"#)
        .send()
        .await
        .unwrap();
    problem(no_type, 400).await;
    let huge = format!(
        r#"{{"username":"bob","password":"{}"}}"#,
        "p".repeat(100_000)
    );
    let too_large = server
        .raw(Method::POST, "/v1/accounts")
        .header("content-type", "application/json")
        .body(huge);
    assert_eq!(
        problem(too_large.send().await.unwrap(), 413).await.code,
        "payload_too_large"
    );
    // Authentication.
    assert_eq!(
        problem(server.raw(Method::GET, "/v1/me").send().await.unwrap(), 401)
            .await
            .code,
        "unauthorized"
    );
    let garbage = server
        .raw(Method::GET, "/v1/me")
        .bearer_auth("nat_forged")
        .send()
        .await
        .unwrap();
    problem(garbage, 401).await;
    let basic = server
        .raw(Method::GET, "/v1/me")
        .header("authorization", "Basic YTpi")
        .send()
        .await
        .unwrap();
    assert!(basic.headers().contains_key("www-authenticate"));
    problem(basic, 401).await;
    // Ids, routes, methods.
    let bad_id = server
        .raw(Method::GET, "/v1/users/12345/profile")
        .bearer_auth(alice.token())
        .send()
        .await
        .unwrap();
    problem(bad_id, 400).await;
    assert_eq!(
        problem(
            server.raw(Method::GET, "/v2/nothing").send().await.unwrap(),
            404
        )
        .await
        .code,
        "not_found"
    );
    let wrong_method = server
        .raw(Method::PUT, "/v1/accounts")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(wrong_method, 405).await.code, "method_not_allowed");
    // Text PostgreSQL cannot store (U+0000) is no account's name.
    let nul_name = server
        .raw(Method::POST, "/v1/sessions")
        .header("content-type", "application/json")
        .body(r#"{"username":"alice\u0000","password":"password123","device_name":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(nul_name, 401).await.code, "unauthorized");
    // Seqs at the ends of i64 find nothing rather than overflow.
    let (carol, _dan, room) = server.direct_pair("carol", "dan").await;
    let get = |path: String| {
        server
            .raw(Method::GET, &path)
            .bearer_auth(carol.token())
            .send()
    };
    for seq in [i64::MAX, i64::MIN] {
        let receipts = get(format!("/v1/conversations/{room}/messages/{seq}/receipts"));
        assert_eq!(
            problem(receipts.await.unwrap(), 404).await.code,
            "not_found"
        );
    }
    for query in [
        "before=-9223372036854775808",
        "after=0&before=-9223372036854775808",
    ] {
        let page = get(format!("/v1/conversations/{room}/messages?{query}"))
            .await
            .unwrap();
        assert_eq!(page.status(), 200, "{query}");
        let page: Value = page.json().await.unwrap();
        assert_eq!(page["messages"], serde_json::json!([]), "{query}");
    }
    // The server is still fine after all that.
    alice.me().await.unwrap();
}

async fn openapi_matches_the_server(backend: Backend) {
    let server = server!(backend);
    let document: Value = server
        .raw(Method::GET, "/v1/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/accounts", "post"),
        ("/v1/sessions", "post"),
        ("/v1/sessions/current", "delete"),
        ("/v1/devices/current/keys", "post"),
        ("/v1/users/{user_id}/devices/{device_id}/claim", "post"),
        ("/connection/user/{userId}", "get"),
        ("/connection/user/{userId}/recipient/{recipientId}", "post"),
        (
            "/connection/user/{userId}/recipient/{recipientId}",
            "delete",
        ),
        (
            "/connection/user/{userId}/recipient/{recipientId}/request/{accept}",
            "put",
        ),
        (
            "/connection/user/{userId}/recipient/{recipientId}/block/{block}",
            "put",
        ),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} is documented"
        );
    }
    assert!(document["components"]["schemas"]["Problem"].is_object());
    // Every documented path exists: with placeholders filled in, no request gets the router's
    // "no such endpoint" 404 or a 405.
    let id = natter_proto::UserId::new().to_string();
    for (path, methods) in paths {
        let concrete = path
            .replace("{accept}", "true")
            .replace("{block}", "true")
            .replace("{username}", "nobody")
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    id.as_str()
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for method in methods.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = server.raw(method.clone(), &concrete).send().await.unwrap();
            assert_ne!(response.status(), 405, "{method} {concrete}");
            if response.status() == 404 {
                let problem: Problem = response.json().await.unwrap();
                assert_ne!(
                    problem.detail.as_deref(),
                    Some("no such endpoint"),
                    "{method} {concrete}"
                );
            }
        }
    }
}

/// The served document passes openapi-spec-validator (pinned in `.ci/requirements.txt`), every
/// error response is declared as the problem+json it is served as, and every operation with
/// path parameters declares the 400 a malformed one gets.
async fn the_openapi_document_validates_and_declares_problems(backend: Backend) {
    let validator = std::process::Command::new("python3")
        .args(["-c", "import openapi_spec_validator"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !natter_test_support::installed(validator, "openapi-spec-validator (pip)", "OpenAPI") {
        return;
    }
    let server = server!(backend);
    let text = server
        .raw(Method::GET, "/v1/openapi.json")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &text).unwrap();
    let checked = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--validation-errors", "all"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "openapi-spec-validator: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let document: Value = serde_json::from_str(&text).unwrap();
    for (path, methods) in document["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let types: Vec<&String> = response["content"]
                        .as_object()
                        .map(|content| content.keys().collect())
                        .unwrap_or_default();
                    assert!(
                        types.iter().all(|t| *t == "application/problem+json"),
                        "{method} {path} {status}: {types:?}"
                    );
                }
            }
            let path_parameters = operation["parameters"]
                .as_array()
                .is_some_and(|parameters| parameters.iter().any(|p| p["in"] == "path"));
            if path_parameters {
                assert!(
                    responses.contains_key("400"),
                    "{method} {path} declares its 400"
                );
            }
        }
    }
}
