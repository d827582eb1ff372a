//! PostgreSQL going away and coming back: sends get a clear, retryable error and no ack,
//! nothing is half-written, readiness fails, and service resumes by itself.

use std::time::Duration;

use crate::helpers::{Backend, Proxy, TestDatabase, TestServer};
use crate::ws::{connect, error, ping, send};
use natter_server::config::{DatabaseUrl, Secret};

async fn readiness(server: &TestServer) -> u16 {
    reqwest::get(format!("{}/readyz", server.url))
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Polls readiness until it is `status` (bounded).
async fn wait_for_readiness(server: &TestServer, status: u16) {
    for _ in 0..300 {
        if readiness(server).await == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/readyz never answered {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_refuses_sends_clearly_and_service_resumes() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else {
        return;
    };
    let DatabaseUrl::Postgres(Secret(url)) = &database.url else {
        unreachable!("a PostgreSQL test database")
    };
    let after_host = url.split_once('@').map_or(url.as_str(), |(_, rest)| rest);
    let (upstream, _) = after_host.split_once('/').expect("host/database");
    let proxy = Proxy::start(upstream.to_owned()).await;
    let proxied = url.replacen(upstream, &proxy.address.to_string(), 1);
    let server = TestServer::start_via(proxied.parse().unwrap()).await;

    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let direct = alice.open_direct(bob.user_id()).await.unwrap().summary.id;
    let (mut live, _) = connect(&alice).await;
    send(&mut live, direct, "before", "x").await;

    proxy.cut();
    wait_for_readiness(&server, 503).await;
    // A send gets a retryable error and no ack; the connection stays.
    live.send_message(direct, "during", "x").await.unwrap();
    let refused = error(&mut live).await;
    assert_eq!(refused.code, "store_unavailable");
    assert_eq!(refused.client_msg_id.as_deref(), Some("during"));
    assert!(refused.retry_after_ms.is_some_and(|ms| ms > 0));
    ping(&mut live, 1).await;
    // Over HTTP: 503 problem+json with the same code and a Retry-After, never a 500.
    let response = server
        .raw(reqwest::Method::GET, "/v1/conversations")
        .bearer_auth(alice.token())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "store_unavailable");

    proxy.restore();
    wait_for_readiness(&server, 200).await;
    // The client's retry, with the same id, is stored once; nothing from the outage is there
    // half-written.
    let resent = send(&mut live, direct, "during", "x").await;
    let history = bob.history(direct, None, None, None).await.unwrap();
    let ids: Vec<&str> = history.iter().map(|m| m.client_msg_id.as_str()).collect();
    assert_eq!(ids, ["before", "during"]);
    assert_eq!(history[1].seq, resent.seq);
}
