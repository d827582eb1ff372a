//! The connection service over HTTP: every transition of the state machine, blocks, versions
//! with If-Match, racing devices, and cross-user attempts.

use natter_client::Session;
use natter_proto::UserId;
use natter_proto::connections::ConnectionState::{
    self, Accepted, Blocked, Incoming, None as Nothing, Rejected, Requested,
};
use reqwest::Method;

use crate::helpers::{
    Backend, TestServer, assert_problem, assert_sees_nothing_of, backend_tests, presence, server,
};
use crate::ws::{connect, error, refused, typing};

backend_tests!(
    request_and_accept,
    request_and_reject_then_ask_again,
    mutual_requests_connect,
    requests_are_idempotent,
    remove_dissolves_withdraws_and_declines,
    answering_without_a_request_is_refused,
    blocking_hides_the_blocker,
    unblocking_reveals_a_waiting_request,
    blocks_from_both_sides_are_independent,
    stale_versions_are_refused,
    racing_devices_converge,
    only_your_own_connections,
    a_removed_connection_sees_nothing_through_the_old_chat,
    unknown_users_and_yourself,
);

/// My side's state as my connection list shows it (`None` when absent).
async fn state(me: &Session, peer: &Session) -> ConnectionState {
    let list = me.connections().await.unwrap();
    let find = |entries: &[natter_proto::connections::ConnectionEntry]| {
        entries
            .iter()
            .find(|e| e.status.user_id == peer.user_id())
            .map(|e| e.status.state)
    };
    [
        &list.connections,
        &list.incoming,
        &list.outgoing,
        &list.blocked,
    ]
    .into_iter()
    .find_map(|entries| find(entries))
    .unwrap_or(Nothing)
}

async fn states(a: &Session, b: &Session) -> (ConnectionState, ConnectionState) {
    (state(a, b).await, state(b, a).await)
}

async fn pair(server: &TestServer) -> (Session, Session) {
    (server.user("alice").await, server.user("bob").await)
}

async fn request_and_accept(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = pair(&server).await;
    let sent = alice.request_connection(bob.user_id(), None).await.unwrap();
    assert_eq!((sent.state, sent.version), (Requested, 1));
    assert_eq!(states(&alice, &bob).await, (Requested, Incoming));
    let incoming = bob.connections().await.unwrap().incoming;
    assert_eq!(
        incoming[0].profile.username, "alice",
        "the recipient sees who asks"
    );
    assert!(
        incoming[0].devices.is_empty(),
        "but not their devices before accepting"
    );
    let accepted = bob
        .answer_request(alice.user_id(), true, None)
        .await
        .unwrap();
    assert_eq!(accepted.state, Accepted);
    assert_eq!(states(&alice, &bob).await, (Accepted, Accepted));
    let list = alice.connections().await.unwrap();
    assert_eq!(list.connections[0].profile.username, "bob");
    assert_eq!(list.connections[0].devices[0].device_id, bob.device_id());
}

async fn request_and_reject_then_ask_again(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = pair(&server).await;
    alice.request_connection(bob.user_id(), None).await.unwrap();
    let rejected = bob
        .answer_request(alice.user_id(), false, None)
        .await
        .unwrap();
    assert_eq!(rejected.state, Nothing);
    assert_eq!(states(&alice, &bob).await, (Rejected, Nothing));
    assert!(bob.profile(alice.user_id()).await.is_err());
    // Asking again after a rejection opens a new request.
    alice.request_connection(bob.user_id(), None).await.unwrap();
    assert_eq!(states(&alice, &bob).await, (Requested, Incoming));
    bob.answer_request(alice.user_id(), true, None)
        .await
        .unwrap();
    assert_eq!(states(&alice, &bob).await, (Accepted, Accepted));
}

async fn mutual_requests_connect(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = pair(&server).await;
    alice.request_connection(bob.user_id(), None).await.unwrap();
    let back = bob.request_connection(alice.user_id(), None).await.unwrap();
    assert_eq!(back.state, Accepted);
    assert_eq!(states(&alice, &bob).await, (Accepted, Accepted));
}

async fn requests_are_idempotent(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = pair(&server).await;
    let first = alice.request_connection(bob.user_id(), None).await.unwrap();
    let again = alice.request_connection(bob.user_id(), None).await.unwrap();
    assert_eq!(
        first, again,
        "a repeated request changes nothing, not even the version"
    );
    bob.answer_request(alice.user_id(), true, None)
        .await
        .unwrap();
    let connected = alice.request_connection(bob.user_id(), None).await.unwrap();
    assert_eq!(connected.state, Accepted);
}

async fn remove_dissolves_withdraws_and_declines(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    assert_eq!(
        alice
            .remove_connection(bob.user_id(), None)
            .await
            .unwrap()
            .state,
        Nothing
    );
    assert_eq!(states(&alice, &bob).await, (Nothing, Nothing));
    assert!(
        bob.devices(alice.user_id()).await.is_err(),
        "no longer connected"
    );
    // Withdrawing a request.
    alice.request_connection(bob.user_id(), None).await.unwrap();
    alice.remove_connection(bob.user_id(), None).await.unwrap();
    assert_eq!(states(&alice, &bob).await, (Nothing, Nothing));
    // Declining a request by removing it.
    alice.request_connection(bob.user_id(), None).await.unwrap();
    bob.remove_connection(alice.user_id(), None).await.unwrap();
    assert_eq!(states(&alice, &bob).await, (Rejected, Nothing));
    // Removing nothing is fine.
    assert_eq!(
        bob.remove_connection(alice.user_id(), None)
            .await
            .unwrap()
            .state,
        Nothing
    );
}

async fn answering_without_a_request_is_refused(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = pair(&server).await;
    assert_problem(
        bob.answer_request(alice.user_id(), true, None).await,
        409,
        "no_pending_request",
    );
    alice.request_connection(bob.user_id(), None).await.unwrap();
    // The requester cannot accept their own request.
    assert_problem(
        alice.answer_request(bob.user_id(), true, None).await,
        409,
        "no_pending_request",
    );
    bob.answer_request(alice.user_id(), true, None)
        .await
        .unwrap();
    assert_problem(
        bob.answer_request(alice.user_id(), false, None).await,
        409,
        "no_pending_request",
    );
}

async fn blocking_hides_the_blocker(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let blocked = alice.block(bob.user_id(), true, None).await.unwrap();
    assert_eq!(blocked.state, Blocked);
    assert_eq!(states(&alice, &bob).await, (Blocked, Nothing));
    assert_eq!(
        alice.connections().await.unwrap().blocked[0]
            .profile
            .username,
        "bob"
    );
    // Bob sees exactly what a stranger sees.
    assert_problem(bob.profile(alice.user_id()).await, 404, "not_found");
    assert_problem(bob.devices(alice.user_id()).await, 404, "not_found");
    // Bob's new request looks sent to him, but Alice never sees it.
    let sent = bob.request_connection(alice.user_id(), None).await.unwrap();
    assert_eq!(sent.state, Requested);
    let stranger = server.user("carol").await;
    let stranger_sent = stranger
        .request_connection(alice.user_id(), None)
        .await
        .unwrap();
    assert_eq!(
        (sent.state, sent.version > 0),
        (stranger_sent.state, stranger_sent.version > 0)
    );
    let alice_list = alice.connections().await.unwrap();
    assert!(
        alice_list
            .incoming
            .iter()
            .all(|e| e.status.user_id != bob.user_id())
    );
    assert!(
        alice_list
            .incoming
            .iter()
            .any(|e| e.status.user_id == stranger.user_id())
    );
    // Alice cannot request or remove while she blocks Bob; blocking again is harmless.
    assert_problem(
        alice.request_connection(bob.user_id(), None).await,
        409,
        "blocked_by_you",
    );
    assert_problem(
        alice.remove_connection(bob.user_id(), None).await,
        409,
        "blocked_by_you",
    );
    assert_eq!(
        alice.block(bob.user_id(), true, None).await.unwrap().state,
        Blocked
    );
}

async fn unblocking_reveals_a_waiting_request(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = pair(&server).await;
    alice.block(bob.user_id(), true, None).await.unwrap();
    bob.request_connection(alice.user_id(), None).await.unwrap();
    let unblocked = alice.block(bob.user_id(), false, None).await.unwrap();
    assert_eq!(unblocked.state, Incoming);
    assert_eq!(states(&alice, &bob).await, (Incoming, Requested));
    alice
        .answer_request(bob.user_id(), true, None)
        .await
        .unwrap();
    assert_eq!(states(&alice, &bob).await, (Accepted, Accepted));
    // Unblocking someone not blocked changes nothing.
    assert_eq!(
        alice.block(bob.user_id(), false, None).await.unwrap().state,
        Accepted
    );
    // Without a waiting request, unblocking returns to no relationship.
    alice.block(bob.user_id(), true, None).await.unwrap();
    assert_eq!(
        alice.block(bob.user_id(), false, None).await.unwrap().state,
        Nothing
    );
    assert_eq!(states(&alice, &bob).await, (Nothing, Nothing));
}

async fn blocks_from_both_sides_are_independent(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    alice.block(bob.user_id(), true, None).await.unwrap();
    bob.block(alice.user_id(), true, None).await.unwrap();
    assert_eq!(states(&alice, &bob).await, (Blocked, Blocked));
    alice.block(bob.user_id(), false, None).await.unwrap();
    assert_eq!(
        states(&alice, &bob).await,
        (Nothing, Blocked),
        "Bob's block survives Alice's unblock"
    );
    alice.request_connection(bob.user_id(), None).await.unwrap();
    assert_eq!(states(&alice, &bob).await, (Requested, Blocked));
}

async fn stale_versions_are_refused(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let laptop_view = alice.connections().await.unwrap().connections[0]
        .status
        .clone();
    let phone = server.login("alice", "phone").await;
    let blocked = phone
        .block(bob.user_id(), true, Some(laptop_view.version))
        .await
        .unwrap();
    assert_eq!(blocked.version, laptop_view.version + 1);
    // The laptop, still believing the old version, is told the current one.
    let stale = alice
        .block(bob.user_id(), false, Some(laptop_view.version))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Some("version_mismatch"));
    assert_eq!(
        stale.problem().unwrap().current_version,
        Some(blocked.version)
    );
    assert_eq!(
        state(&alice, &bob).await,
        Blocked,
        "the refused write changed nothing"
    );
    let unblocked = alice
        .block(bob.user_id(), false, Some(blocked.version))
        .await
        .unwrap();
    assert_eq!(unblocked.version, blocked.version + 1);
    // The ETag header carries the same version.
    let response = server
        .raw(
            Method::PUT,
            &format!(
                "/connection/user/{}/recipient/{}/block/true",
                alice.user_id(),
                bob.user_id()
            ),
        )
        .bearer_auth(alice.token())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["etag"],
        format!("\"{}\"", unblocked.version + 1).as_str()
    );
    // A malformed If-Match is a 400, not a silent overwrite.
    let malformed = server
        .raw(
            Method::PUT,
            &format!(
                "/connection/user/{}/recipient/{}/block/false",
                alice.user_id(),
                bob.user_id()
            ),
        )
        .bearer_auth(alice.token())
        .header("if-match", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
}

async fn racing_devices_converge(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let phone = server.login("alice", "phone").await;
    for round in 0..10 {
        let version = alice.connection(bob.user_id()).await.unwrap().version;
        let (a, b, peer) = (alice.clone(), phone.clone(), bob.user_id());
        let block = tokio::spawn(async move { a.block(peer, true, Some(version)).await });
        let unblock =
            tokio::spawn(async move { b.block(peer, round % 2 == 0, Some(version)).await });
        let results = [block.await.unwrap(), unblock.await.unwrap()];
        // Exactly one write wins against the shared version unless both asked for no change;
        // the loser learns the current version.
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert!(
            !winners.is_empty(),
            "round {round}: someone must win: {results:?}"
        );
        for loser in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(loser.code(), Some("version_mismatch"), "round {round}");
        }
        // Both devices now read the same final state, which is the last winner's.
        let final_state = state(&alice, &bob).await;
        assert_eq!(state(&phone, &bob).await, final_state);
        assert_eq!(
            phone.connection(bob.user_id()).await.unwrap().state,
            final_state
        );
        assert!(
            winners.iter().any(|w| w.state == final_state),
            "round {round}"
        );
    }
}

async fn only_your_own_connections(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = pair(&server).await;
    let mallory = server.user("mallory").await;
    let (a, b) = (alice.user_id(), bob.user_id());
    for (method, path) in [
        (Method::GET, format!("/connection/user/{a}")),
        (Method::GET, format!("/connection/user/{a}/recipient/{b}")),
        (Method::POST, format!("/connection/user/{a}/recipient/{b}")),
        (
            Method::PUT,
            format!("/connection/user/{a}/recipient/{b}/request/true"),
        ),
        (
            Method::PUT,
            format!("/connection/user/{a}/recipient/{b}/block/true"),
        ),
        (
            Method::DELETE,
            format!("/connection/user/{a}/recipient/{b}"),
        ),
    ] {
        let response = server
            .raw(method.clone(), &path)
            .bearer_auth(mallory.token())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{method} {path}");
        let anonymous = server.raw(method.clone(), &path).send().await.unwrap();
        assert_eq!(anonymous.status(), 401, "{method} {path}");
    }
    assert_eq!(
        states(&alice, &bob).await,
        (Nothing, Nothing),
        "nothing changed"
    );
}

async fn unknown_users_and_yourself(backend: Backend) {
    let server = server!(backend);
    let alice = server.user("alice").await;
    assert_problem(
        alice.request_connection(UserId::new(), None).await,
        404,
        "not_found",
    );
    assert_problem(
        alice.block(UserId::new(), true, None).await,
        404,
        "not_found",
    );
    assert_problem(
        alice.request_connection(alice.user_id(), None).await,
        400,
        "invalid_request",
    );
    let bad_id = server
        .raw(
            Method::POST,
            &format!("/connection/user/{}/recipient/not-a-uuid", alice.user_id()),
        )
        .bearer_auth(alice.token())
        .send()
        .await
        .unwrap();
    assert_eq!(bad_id.status(), 400);
    let bad_bool = server
        .raw(
            Method::PUT,
            &format!(
                "/connection/user/{}/recipient/{}/block/maybe",
                alice.user_id(),
                UserId::new()
            ),
        )
        .bearer_auth(alice.token())
        .send()
        .await
        .unwrap();
    assert_eq!(bad_bool.status(), 400);
}

async fn a_removed_connection_sees_nothing_through_the_old_chat(backend: Backend) {
    let server = server!(backend);
    let (alice, bob, direct) = server.direct_pair("alice", "bob").await;
    bob.profile(alice.user_id()).await.unwrap();
    bob.devices(alice.user_id()).await.unwrap();
    assert_eq!(
        presence(&server.url, &bob, &alice.user_id().to_string())
            .await
            .0,
        200
    );

    // Alice removes Bob. Their direct conversation stays, with both still in it, yet it
    // grants Bob nothing a stranger does not have.
    alice.remove_connection(bob.user_id(), None).await.unwrap();
    assert_sees_nothing_of(&server, &bob, &alice).await;
    // Typing in it is refused like sending.
    let (mut b, _) = connect(&bob).await;
    typing(&mut b, direct, true).await;
    assert_eq!(error(&mut b).await.code, "not_connected");
    refused(&mut b, direct, "late", "x", "not_connected").await;
}
