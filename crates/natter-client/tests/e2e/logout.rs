//! The end of a login: logging out lets the requests already on their way finish with the
//! token and sends none with it once the server has forgotten it (a browser would show each such
//! 401 as an error); a suspended account's live loop stops instead of reconnecting for ever.

use std::time::Duration;

use natter_client::ClientError;

use crate::helpers::{Relay, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_waits_for_requests_in_flight_and_sends_none_after() {
    let server = TestServer::start().await;
    server.user("alice").await;
    let relay = Relay::start(&server.url).await;
    let device = server.device_through(&relay.url, "alice", "laptop").await;

    // A request on its way: the relay holds it before the server sees it.
    relay.hold(true);
    let in_flight = tokio::spawn({
        let session = device.session().clone();
        async move { session.key_counts().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logout = tokio::spawn({
        let device = device.clone();
        async move { device.logout().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Asked for while the logout waits: it must not go out after the token is revoked.
    let later = tokio::spawn({
        let session = device.session().clone();
        async move { session.me().await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !logout.is_finished(),
        "the logout waits for the request in flight"
    );

    relay.hold(false);
    let counts = in_flight.await.unwrap();
    assert!(
        counts.is_ok(),
        "the request in flight was answered: {counts:?}"
    );
    logout.await.unwrap().expect("logging out");
    let later = later.await.unwrap();
    assert!(
        matches!(later, Err(ClientError::LoggedOut)),
        "a request asked for during the logout is not sent: {later:?}"
    );
    assert!(matches!(
        device.session().me().await,
        Err(ClientError::LoggedOut)
    ));
    assert!(matches!(
        device.session().connect().await,
        Err(ClientError::LoggedOut)
    ));
    // The token is revoked for real: a session resumed from it is refused by the server.
    let resumed = natter_client::Session::resume(
        natter_client::Client::new(&server.url).unwrap(),
        device.session().token().to_owned(),
        device.user_id(),
        device.device_id(),
    );
    let refused = resumed.me().await.unwrap_err();
    assert_eq!(refused.status(), Some(401), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_accounts_live_loop_stops_instead_of_reconnecting() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    // The operator suspends the account in the database: every connection is refused.
    server.operator_sql("UPDATE users SET suspended_at = 1 WHERE username = 'alice'");
    let (events, _received) = tokio::sync::mpsc::channel(64);
    let ended = tokio::time::timeout(
        Duration::from_secs(10),
        alice.run(events, std::future::pending()),
    )
    .await
    .expect("the live loop gives up at once, not after backoff");
    let error = ended.expect_err("the live loop ends with the refusal");
    assert!(error.is_device_refused(), "{error:?}");
}
