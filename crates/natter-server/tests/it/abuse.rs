//! Abuse controls: every rate limit, its 429 with Retry-After (or error frame with the retry
//! time), that a second device adds no allowance, and operator suspension.

use natter_client::ClientError;
use natter_proto::ConversationId;
use natter_proto::ws::{ClientFrame, ServerFrame};
use natter_server::config::DatabaseUrl;
use natter_server::ratelimit::{Kind, Rate};
use reqwest::Method;
use sqlx::Connection;

use crate::helpers::{
    Backend, PATIENCE, TestDatabase, TestServer, assert_problem, backend_tests, connect_users,
    server,
};
use crate::ws::{
    connect, error, marker, message, next, ping, receipt_of, refused, send, typing, until,
};

backend_tests!(
    logins_are_limited_per_account_and_per_address,
    registrations_are_limited_per_address,
    connection_requests_are_limited,
    a_second_device_adds_no_allowance,
    message_bytes_are_limited_per_user,
    a_short_wait_for_the_rate_holds_later_sends_so_order_is_kept,
    websocket_connects_are_limited_per_address,
    suspension_takes_effect_at_once,
    a_suspended_sender_is_refused_before_its_close_arrives,
    a_full_node_refuses_sends_with_a_retry_time,
    typing_notices_are_limited_per_device,
    to_device_frames_spend_the_message_allowance,
    checked_cursor_moves_and_syncs_are_limited_per_device,
    key_claims_are_limited_per_claiming_user_and_claimed_device,
);

async fn limited(backend: Backend, kind: Kind, rate: Rate) -> Option<TestServer> {
    TestServer::start_with(backend, |c| c.limits.set(kind, rate)).await
}

/// Asserts a 429 `rate_limited` with a Retry-After of at least a second.
fn assert_limited<T: std::fmt::Debug>(result: Result<T, ClientError>) {
    assert_problem(result, 429, "rate_limited");
}

async fn logins_are_limited_per_account_and_per_address(backend: Backend) {
    let Some(server) = limited(backend, Kind::AccountLogins, Rate::new(0.001, 3.0)).await else {
        return;
    };
    server
        .client
        .register("alice", "password123", None)
        .await
        .unwrap();
    server
        .client
        .register("bob", "password123", None)
        .await
        .unwrap();
    for _ in 0..3 {
        let wrong = server.client.login("alice", "guess", "x").await;
        assert_problem(wrong, 401, "unauthorized");
    }
    // Even the right password is refused now: guessing cannot continue.
    assert_limited(server.client.login("ALICE", "password123", "x").await);
    // Another account is unaffected; names that do not exist are limited the same way.
    server
        .client
        .login("bob", "password123", "x")
        .await
        .unwrap();
    for _ in 0..3 {
        let _ = server.client.login("nobody", "guess", "x").await;
    }
    assert_limited(server.client.login("nobody", "guess", "x").await);
    let response = server
        .raw(Method::POST, "/v1/sessions")
        .json(&serde_json::json!({"username": "alice", "password": "password123", "device_name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1, "Retry-After in whole seconds");

    let Some(server) = limited(backend, Kind::AddressLogins, Rate::new(0.001, 4.0)).await else {
        return;
    };
    for name in ["carol", "dave"] {
        server
            .client
            .register(name, "password123", None)
            .await
            .unwrap();
    }
    for name in ["carol", "dave", "carol", "dave"] {
        server.client.login(name, "password123", "x").await.unwrap();
    }
    assert_limited(server.client.login("dave", "password123", "x").await);
}

async fn registrations_are_limited_per_address(backend: Backend) {
    let Some(server) = limited(backend, Kind::AddressRegistrations, Rate::new(0.001, 2.0)).await
    else {
        return;
    };
    server
        .client
        .register("one", "password123", None)
        .await
        .unwrap();
    server
        .client
        .register("two", "password123", None)
        .await
        .unwrap();
    assert_limited(server.client.register("three", "password123", None).await);
}

async fn connection_requests_are_limited(backend: Backend) {
    let Some(server) = limited(backend, Kind::ConnectionRequests, Rate::new(0.001, 2.0)).await
    else {
        return;
    };
    let spammer = server.user("spammer").await;
    let mut targets = Vec::new();
    for name in ["target1", "target2", "target3"] {
        targets.push(server.user(name).await);
    }
    // Requests on another user's side are refused, and spend nothing of the allowance.
    for _ in 0..3 {
        let path = format!(
            "/connection/user/{}/recipient/{}",
            targets[0].user_id(),
            targets[1].user_id()
        );
        let response = server
            .raw(Method::POST, &path)
            .bearer_auth(spammer.token())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403);
    }
    spammer
        .request_connection(targets[0].user_id(), None)
        .await
        .unwrap();
    spammer
        .request_connection(targets[1].user_id(), None)
        .await
        .unwrap();
    assert_limited(spammer.request_connection(targets[2].user_id(), None).await);
    assert!(targets[2].connections().await.unwrap().incoming.is_empty());
    // Other users are not affected, and other actions of the spammer still work.
    targets[2]
        .request_connection(targets[1].user_id(), None)
        .await
        .unwrap();
    spammer
        .block(targets[2].user_id(), true, None)
        .await
        .unwrap();
}

async fn a_second_device_adds_no_allowance(backend: Backend) {
    let Some(server) = TestServer::start_with(backend, |c| {
        c.limits.set(Kind::DeviceMessages, Rate::new(0.001, 4.0));
        c.limits.set(Kind::UserMessages, Rate::new(0.001, 4.0));
    })
    .await
    else {
        return;
    };
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let phone = server.login("alice", "phone").await;
    let direct = alice.open_direct(bob.user_id()).await.unwrap().summary.id;
    let (mut laptop, _) = connect(&alice).await;
    let (mut phone, _) = connect(&phone).await;
    // Each device sees the other's messages (the sender's other devices get them too).
    for i in 0..2 {
        send(&mut laptop, direct, &format!("l{i}"), "x").await;
        message(&mut phone).await;
        send(&mut phone, direct, &format!("p{i}"), "x").await;
        message(&mut laptop).await;
    }
    // Each device has used half its own allowance, but together they used the user's.
    let refusal = refused(&mut phone, direct, "p2", "x", "rate_limited").await;
    assert!(refusal.retry_after_ms.is_some_and(|ms| ms > 0));
    refused(&mut laptop, direct, "l2", "x", "rate_limited").await;
    // Nobody was disconnected, and nothing refused was stored.
    ping(&mut laptop, 1).await;
    ping(&mut phone, 2).await;
    assert_eq!(
        bob.history(direct, None, None, None).await.unwrap().len(),
        4
    );
}

async fn a_short_wait_for_the_rate_holds_later_sends_so_order_is_kept(backend: Backend) {
    // 1,000 bytes at once, then 100 a second.
    let Some(server) = limited(backend, Kind::UserBytes, Rate::new(100.0, 1_000.0)).await else {
        return;
    };
    let (alice, bob, direct) = server.direct_pair("alice", "bob").await;
    let carol = server.user("carol").await;
    connect_users(&alice, &carol).await;
    let other = alice.open_direct(carol.user_id()).await.unwrap().summary.id;
    let (mut a, _) = connect(&alice).await;
    let (mut again, _) = connect(&alice).await;
    let body = "x".repeat(600);
    send(&mut a, direct, "m1", &body).await;
    // 400 bytes are left: m2 waits ~2 s for the rest.
    let m2 = refused(&mut a, direct, "m2", &body, "rate_limited").await;
    let wait = m2.retry_after_ms.expect("a retry time");
    // m3 fits in what is left, but would be stored before m2: it waits too, no longer; so
    // does a send to another conversation on that connection.
    for (conversation, id) in [(direct, "m3"), (other, "o1")] {
        let held = refused(&mut a, conversation, id, "tiny", "rate_limited").await;
        assert!(
            held.retry_after_ms.is_some_and(|ms| ms > 0 && ms <= wait),
            "{held:?} after {wait} ms"
        );
    }
    // The hold is the connection's sends only: its other frames go on, and the device's other
    // connection sends what fits.
    typing(&mut a, direct, true).await;
    ping(&mut a, 1).await;
    send(&mut again, other, "o2", "tiny").await;
    // Resent in order once the wait is over (and a little more, for m3's bytes).
    tokio::time::sleep(std::time::Duration::from_millis(wait + 200)).await;
    let (second, third) = (
        send(&mut a, direct, "m2", &body).await,
        send(&mut a, direct, "m3", "tiny").await,
    );
    assert_eq!((second.seq, third.seq), (2, 3));
    let ids: Vec<String> = bob
        .history(direct, None, None, None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.client_msg_id)
        .collect();
    assert_eq!(ids, ["m1", "m2", "m3"], "stored in the order sent");
}

async fn message_bytes_are_limited_per_user(backend: Backend) {
    let Some(server) = limited(backend, Kind::UserBytes, Rate::new(1.0, 10_000.0)).await else {
        return;
    };
    let (alice, _bob, direct) = server.direct_pair("alice", "bob").await;
    let (mut a, _) = connect(&alice).await;
    let body = "x".repeat(4_000);
    send(&mut a, direct, "m1", &body).await;
    send(&mut a, direct, "m2", &body).await;
    let long = refused(&mut a, direct, "m3", &body, "rate_limited").await;
    // A wait this long (past HOLD_AT_MOST, 5 s) holds nothing: what still fits goes through.
    assert!(long.retry_after_ms.is_some_and(|ms| ms > 5_000), "{long:?}");
    send(&mut a, direct, "small", "tiny").await;
}

async fn websocket_connects_are_limited_per_address(backend: Backend) {
    let Some(server) = limited(backend, Kind::AddressConnects, Rate::new(0.001, 2.0)).await else {
        return;
    };
    let alice = server.user("alice").await;
    let (_first, _) = connect(&alice).await;
    let (_second, _) = connect(&alice).await;
    // Refused before the upgrade, with natterd's problem.
    assert_problem(alice.connect().await.map(drop), 429, "rate_limited");
}

async fn suspension_takes_effect_at_once(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let (mallory, bob) = server.connected_pair("mallory", "bob").await;
    let (mut live, _) = connect(&mallory).await;
    let admin = reqwest::Client::new();
    let suspension = format!(
        "{}/admin/users/{}/suspension",
        server.admin_url,
        mallory.user_id()
    );
    let suspended = admin.put(&suspension).send().await.unwrap();
    assert_eq!(suspended.status(), 200);
    let body: serde_json::Value = suspended.json().await.unwrap();
    assert_eq!(
        (&body["user_id"], &body["suspended"]),
        (&mallory.user_id().to_string().into(), &true.into())
    );
    // The open connection is closed, the token refused, and logging in again refused too.
    match next(&mut live).await {
        Err(ClientError::Closed(closed)) => assert_eq!(closed.code, Some(4003)),
        other => panic!("expected a close, got {other:?}"),
    }
    assert_problem(mallory.me().await, 403, "suspended");
    assert_problem(mallory.connect().await.map(drop), 403, "suspended");
    assert_problem(
        server.client.login("mallory", "password123", "x").await,
        403,
        "suspended",
    );
    // A wrong password still says only "wrong password": suspension is not revealed to guessers.
    assert_problem(
        server.client.login("mallory", "wrong", "x").await,
        401,
        "unauthorized",
    );
    bob.me().await.expect("others are unaffected");
    // Lifting it restores access; unknown users are 404; the public port has no admin routes.
    assert_eq!(
        admin.delete(&suspension).send().await.unwrap().status(),
        200
    );
    mallory.me().await.unwrap();
    let (mut back, _) = connect(&mallory).await;
    ping(&mut back, 1).await;
    let unknown = format!(
        "{}/admin/users/{}/suspension",
        server.admin_url,
        natter_proto::UserId::new()
    );
    assert_eq!(admin.put(&unknown).send().await.unwrap().status(), 404);
    let public = server
        .raw(
            Method::PUT,
            &format!("/admin/users/{}/suspension", mallory.user_id()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404);
}

async fn a_suspended_sender_is_refused_before_its_close_arrives(backend: Backend) {
    let server = server!(backend);
    let (mallory, bob, direct) = server.direct_pair("mallory", "bob").await;
    // Also a room big enough that its posts go by the member list in memory.
    let (room, _) = crate::rooms::big_room(&server, &mallory).await;
    let (mut live, _) = connect(&mallory).await;
    send(&mut live, direct, "before", "x").await;
    send(&mut live, room, "before-room", "x").await;
    // Suspended in the database only, as by an operator on another node whose close has not
    // reached this connection: nothing tells the connection.
    let store = natter_server::open_store(&server.database.url, 1)
        .await
        .unwrap();
    assert!(
        store
            .set_suspended(mallory.user_id(), Some(natter_core::clock::now_ms()))
            .await
            .unwrap()
    );
    for (conversation, id) in [(direct, "after"), (room, "after-room")] {
        refused(&mut live, conversation, id, "x", "suspended").await;
    }
    let stored = bob.history(direct, None, None, None).await.unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|m| m.client_msg_id.as_str())
            .collect::<Vec<_>>(),
        ["before"]
    );
}

/// The store's writes, held by the test: SQLite's write lock, or on PostgreSQL the row of the
/// conversation that every append to it updates.
enum HeldWrites {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl HeldWrites {
    async fn take(database: &TestDatabase, conversation: ConversationId) -> Self {
        match &database.url {
            DatabaseUrl::Sqlite(_) => {
                let mut held = sqlx::SqliteConnection::connect(&database.url_text())
                    .await
                    .unwrap();
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut held)
                    .await
                    .unwrap();
                Self::Sqlite(held)
            }
            DatabaseUrl::Postgres(url) => {
                let mut held = sqlx::PgConnection::connect(&url.0).await.unwrap();
                sqlx::query("BEGIN").execute(&mut held).await.unwrap();
                // `fetch_one`: the row exists, so it is locked.
                sqlx::query("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE")
                    .bind(conversation.to_string())
                    .fetch_one(&mut held)
                    .await
                    .unwrap();
                Self::Postgres(held)
            }
        }
    }

    async fn release(self) {
        match self {
            Self::Sqlite(mut held) => {
                sqlx::query("ROLLBACK").execute(&mut held).await.unwrap();
            }
            Self::Postgres(mut held) => {
                sqlx::query("ROLLBACK").execute(&mut held).await.unwrap();
            }
        }
    }
}

async fn a_full_node_refuses_sends_with_a_retry_time(backend: Backend) {
    // A long retry time, so that the test's next send surely falls within it.
    let Some(server) = TestServer::start_with(backend, |c| {
        c.gateway.sends_in_flight = 1;
        c.gateway.busy_retry = std::time::Duration::from_secs(2);
    })
    .await
    else {
        return;
    };
    let (alice, bob, direct) = server.direct_pair("alice", "bob").await;
    let (mut a, _) = connect(&alice).await;
    let (mut b, _) = connect(&bob).await;
    // While the test holds the store's writes, whichever send the node takes first stays in
    // flight, and the node has room for one.
    let held = HeldWrites::take(&server.database, direct).await;
    a.send_message(direct, "a1", "x").await.unwrap();
    b.send_message(direct, "b1", "x").await.unwrap();
    let (refusal, alice_refused) = tokio::time::timeout(PATIENCE, async {
        loop {
            tokio::select! {
                frame = a.next() => if let ServerFrame::Error(e) = frame.unwrap() { break (e, true) },
                frame = b.next() => if let ServerFrame::Error(e) = frame.unwrap() { break (e, false) },
            }
        }
    })
    .await
    .expect("one of the two sends is refused");
    let (mut taken, mut turned_away, taken_id, [first, second]) = if alice_refused {
        (b, a, "b1", ["a1", "a2"])
    } else {
        (a, b, "a1", ["b1", "b2"])
    };
    assert_eq!(
        (refusal.code.as_str(), refusal.client_msg_id.as_deref()),
        ("rate_limited", Some(first)),
        "{refusal:?}"
    );
    // The node's wait, and up to half again so that refused clients spread out.
    let wait = refusal.retry_after_ms.expect("a retry time");
    assert!((2000..=3000).contains(&wait), "{wait} ms");
    // Once the store takes writes again, the send in flight is stored and acked, and the place
    // is free; yet a later send on the refused connection still waits behind the refused one,
    // so the sender's order is kept.
    held.release().await;
    until(&mut taken, |f| {
        matches!(f, ServerFrame::Ack(_)).then_some(())
    })
    .await;
    assert_eq!(message(&mut turned_away).await.client_msg_id, taken_id);
    refused(&mut turned_away, direct, second, "x", "rate_limited").await;
    // Both go through, in order, when sent again after the retry time.
    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
    send(&mut turned_away, direct, first, "x").await;
    send(&mut turned_away, direct, second, "x").await;
    let mut history = alice.history(direct, None, None, None).await.unwrap();
    history.sort_by_key(|m| m.seq);
    let order: Vec<_> = history.iter().map(|m| m.client_msg_id.as_str()).collect();
    assert_eq!(order, [taken_id, first, second]);
}

/// A refusal over WebSocket for the device's rate, with a wait of at least a second.
async fn frame_limited(connection: &mut natter_client::Connection) {
    let refusal = error(connection).await;
    assert_eq!(refusal.code, "rate_limited", "{refusal:?}");
    assert!(
        refusal.retry_after_ms.is_some_and(|ms| ms >= 1000),
        "{refusal:?}"
    );
}

async fn to_device_frames_spend_the_message_allowance(backend: Backend) {
    let Some(server) = limited(backend, Kind::DeviceMessages, Rate::new(0.001, 2.0)).await else {
        return;
    };
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let (mut a, _) = connect(&alice).await;
    for payload in ["one", "two"] {
        a.send(&crate::ws::to_device(&bob, payload)).await.unwrap();
    }
    ping(&mut a, 1).await;
    a.send(&crate::ws::to_device(&bob, "three")).await.unwrap();
    frame_limited(&mut a).await;
    let (_, _, inbox) = crate::ws::connect_with_inbox(&bob).await;
    assert_eq!(inbox.len(), 2);
}

async fn typing_notices_are_limited_per_device(backend: Backend) {
    let Some(server) = limited(backend, Kind::DeviceTyping, Rate::new(0.001, 3.0)).await else {
        return;
    };
    let (alice, bob, direct) = server.direct_pair("alice", "bob").await;
    let phone = server.login("alice", "phone").await;
    let (mut a, _) = connect(&alice).await;
    let (mut p, _) = connect(&phone).await;
    let (mut b, _) = connect(&bob).await;
    for _ in 0..4 {
        typing(&mut a, direct, true).await;
    }
    frame_limited(&mut a).await;
    let notices = |frames: &[ServerFrame]| {
        frames
            .iter()
            .filter(|f| matches!(f, ServerFrame::Typing { .. }))
            .count()
    };
    assert_eq!(notices(&marker(&mut a, &bob, &mut b).await), 3);
    // The allowance is the device's: Alice's phone still types, and the laptop's connection
    // stays.
    typing(&mut p, direct, false).await;
    assert_eq!(notices(&marker(&mut p, &bob, &mut b).await), 1);
    ping(&mut a, 1).await;
}

async fn checked_cursor_moves_and_syncs_are_limited_per_device(backend: Backend) {
    let Some(server) = limited(backend, Kind::DeviceEvents, Rate::new(0.001, 3.0)).await else {
        return;
    };
    let (alice, bob, direct) = server.direct_pair("alice", "bob").await;
    let (mut a, _) = connect(&alice).await;
    let (mut b, _) = connect(&bob).await;
    let read = |seq| ClientFrame::Read {
        conversation_id: direct,
        seq,
    };
    send(&mut a, direct, "m1", "x").await;
    assert_eq!(message(&mut b).await.seq, 1);
    // Moves past what the connection sent must be checked: they spend the allowance, as
    // syncs do.
    for _ in 0..2 {
        b.send(&read(99)).await.unwrap();
        assert_eq!(error(&mut b).await.code, "invalid_request");
    }
    b.send(&ClientFrame::Sync).await.unwrap();
    // The sync sends m1 again (Bob's cursor is at 0), then `synced`.
    while !matches!(next(&mut b).await.unwrap(), ServerFrame::Synced { .. }) {}
    b.send(&read(99)).await.unwrap();
    frame_limited(&mut b).await;
    b.send(&ClientFrame::Sync).await.unwrap();
    frame_limited(&mut b).await;
    // Moves over what it sent are never limited: a client may report every message.
    for _ in 0..5 {
        b.send(&ClientFrame::Delivered {
            conversation_id: direct,
            seq: 1,
        })
        .await
        .unwrap();
    }
    b.send(&read(1)).await.unwrap();
    while receipt_of(&mut a, bob.device_id()).await.read_seq != 1 {}
    assert_eq!(
        alice.receipts(direct, 1).await.unwrap().read_users,
        [bob.user_id()]
    );
}

async fn key_claims_are_limited_per_claiming_user_and_claimed_device(backend: Backend) {
    let Some(server) = limited(backend, Kind::KeyClaims, Rate::new(0.001, 2.0)).await else {
        return;
    };
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let bob_phone = server.login("bob", "phone").await;
    let alice_phone = server.login("alice", "phone").await;
    let carol = server.user("carol").await;
    connect_users(&carol, &alice).await;
    let status = |result: Result<natter_proto::keys::ClaimedKey, ClientError>| {
        result.err().and_then(|e| e.status())
    };
    let (user, laptop) = (alice.user_id(), alice.device_id());
    // Alice's laptop has no keys: a claim finds none, and still counts.
    for _ in 0..2 {
        assert_eq!(status(bob.claim_key(user, laptop).await), Some(404));
    }
    assert_limited(bob.claim_key(user, laptop).await);
    // Bob's other devices share his allowance: logging in more gains him nothing.
    assert_limited(bob_phone.claim_key(user, laptop).await);
    // Another claiming user, or another claimed device, has an allowance of its own.
    assert_eq!(status(carol.claim_key(user, laptop).await), Some(404));
    let other = alice_phone.device_id();
    assert_eq!(status(bob.claim_key(user, other).await), Some(404));
}
