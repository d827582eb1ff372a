//! PostgreSQL going away and coming back: sends get a clear, retryable error and no ack,
//! nothing is half-written, readiness fails, and service resumes by itself.

use crate::helpers::{Backend, Proxy, TestDatabase, TestServer};
use crate::ws::{connect, ping, refused, send};
use natter_server::config::{DatabaseUrl, Secret};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_refuses_sends_clearly_and_service_resumes() {
    let Some(database) = TestDatabase::create(Backend::Postgres).await else {
        return;
    };
    let DatabaseUrl::Postgres(Secret(url)) = &database.url else {
        unreachable!("a PostgreSQL test database")
    };
    let (proxy, proxied) = Proxy::in_front_of(url).await;
    let server = TestServer::start_via(proxied.parse().unwrap()).await;

    let (alice, bob, direct) = server.direct_pair("alice", "bob").await;
    let (mut live, _) = connect(&alice).await;
    send(&mut live, direct, "before", "x").await;

    proxy.cut();
    server
        .wait_for_readiness("503", |status, _| status == 503)
        .await;
    // A send gets a retryable error and no ack; the connection stays.
    let during = refused(&mut live, direct, "during", "x", "store_unavailable").await;
    let refused_at = tokio::time::Instant::now();
    // Until the told wait is over, a later send waits behind it rather than trying the store,
    // so the two cannot be stored out of order.
    refused(&mut live, direct, "later", "x", "rate_limited").await;
    assert!(during.retry_after_ms.is_some_and(|ms| ms > 0));
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
    server
        .wait_for_readiness("200", |status, _| status == 200)
        .await;
    // The client's retry after the told wait, with the same id, is stored once; nothing from
    // the outage is there half-written.
    let wait = std::time::Duration::from_millis(during.retry_after_ms.unwrap());
    tokio::time::sleep_until(refused_at + wait).await;
    let resent = send(&mut live, direct, "during", "x").await;
    let history = bob.history(direct, None, None, None).await.unwrap();
    let ids: Vec<&str> = history.iter().map(|m| m.client_msg_id.as_str()).collect();
    assert_eq!(ids, ["before", "during"]);
    assert_eq!(history[1].seq, resent.seq);
}
