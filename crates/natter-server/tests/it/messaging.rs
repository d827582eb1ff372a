//! Real-time messaging over real WebSockets: 1:1 and rooms, multi-device, offline sync, the
//! sync/live seam, idempotent resends, blocks, bad frames, rate limits, receipts.

use std::collections::{HashMap, HashSet};

use natter_client::{Connection, Session};
use natter_proto::connections::ConnectionState;
use natter_proto::ws::{ClientFrame, ServerFrame};
use natter_proto::{ConversationId, DeviceId, UserId};

use natter_server::ratelimit::{Kind, Rate};

use crate::helpers::{Backend, TestServer, assert_problem, backend_tests, connect_users, server};
use crate::ws::{
    connect, drained, error, marker, message, next, ping, receipt_of, receipts_in, refused, send,
    typing, until,
};

backend_tests!(
    direct_messages_flow_both_ways_to_every_device,
    room_messages_reach_every_member_device,
    offline_devices_sync_in_order_from_their_cursor,
    undelivered_lists_what_a_sync_would_send_a_page_at_a_time,
    sync_and_live_traffic_meet_without_gap_or_duplicate,
    resending_a_client_msg_id_stores_once,
    only_members_and_connections_may_send,
    blocked_senders_do_not_reach_the_blocker,
    bad_frames_get_error_frames_and_the_connection_stays,
    senders_past_their_rate_get_rate_limited,
    receipts_reach_the_sender,
    receipts_of_a_busy_room_all_reach_the_sender,
    typing_reaches_the_other_members,
    typing_does_not_reach_a_blocker,
    cursor_moves_outside_ones_conversations_are_refused,
    a_past_member_moves_its_cursors_only_over_what_it_saw,
    receipts_leave_out_who_never_got_the_message,
    a_receipt_goes_to_the_senders_of_what_it_newly_covers,
);

async fn direct_messages_flow_both_ways_to_every_device(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let alice_phone = server.login("alice", "phone").await;
    let direct = alice.open_direct(bob.user_id()).await.unwrap().summary.id;
    assert_eq!(
        bob.open_direct(alice.user_id()).await.unwrap().summary.id,
        direct,
        "one conversation per pair"
    );
    let (mut a, _) = connect(&alice).await;
    let (mut a2, _) = connect(&alice_phone).await;
    let (mut b, _) = connect(&bob).await;

    let ack = send(&mut a, direct, "m1", "ciphertext-1").await;
    assert_eq!((ack.seq, ack.conversation_id), (1, direct));
    for connection in [&mut b, &mut a2] {
        let got = message(connection).await;
        assert_eq!(
            (got.seq, got.sender_id, got.ciphertext.as_str()),
            (1, alice.user_id(), "ciphertext-1")
        );
        assert_eq!(got.sender_device_id, alice.device_id());
    }
    let back = send(&mut b, direct, "r1", "ciphertext-2").await;
    assert_eq!(back.seq, 2);
    for connection in [&mut a, &mut a2] {
        assert_eq!(message(connection).await.seq, 2);
    }
    // The sending device gets only its ack, never an echo.
    drained(&mut b, &bob).await;
    let history = bob.history(direct, None, None, None).await.unwrap();
    assert_eq!(history.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2]);
}

async fn room_messages_reach_every_member_device(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let carol = server.user("carol").await;
    connect_users(&alice, &carol).await;
    let bob_tablet = server.login("bob", "tablet").await;
    let room = alice
        .create_room("team", &[bob.user_id(), carol.user_id()])
        .await
        .unwrap();
    assert_eq!(room.members.len(), 3);
    let id = room.summary.id;
    let mut connections = Vec::new();
    for session in [&bob, &bob_tablet, &carol] {
        connections.push(connect(session).await.0);
    }
    let (mut a, _) = connect(&alice).await;
    for i in 1..=3 {
        send(&mut a, id, &format!("m{i}"), &format!("body {i}")).await;
    }
    for connection in &mut connections {
        for seq in 1..=3 {
            assert_eq!(message(connection).await.seq, seq);
        }
    }
    // Bob and Carol see the room with unread messages; Alice has none unread.
    let unread = |list: Vec<natter_proto::conversations::ConversationSummary>| list[0].unread;
    assert_eq!(unread(bob.conversations().await.unwrap()), 3);
    assert_eq!(unread(alice.conversations().await.unwrap()), 0);
}

async fn offline_devices_sync_in_order_from_their_cursor(backend: Backend) {
    let server = server!(backend);
    let (alice, bob, direct) = server.direct_pair("alice", "bob").await;
    let (mut a, _) = connect(&alice).await;
    for i in 1..=7 {
        send(&mut a, direct, &format!("m{i}"), "x").await;
    }
    assert_eq!(bob.undelivered().await.unwrap().len(), 7);
    let (mut b, synced) = connect(&bob).await;
    assert_eq!(
        synced.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
    // Acknowledge up to 4: a reconnect resends only 5..=7.
    b.send(&ClientFrame::Delivered {
        conversation_id: direct,
        seq: 4,
    })
    .await
    .unwrap();
    ping(&mut b, 1).await;
    b.close().await;
    let (mut b, synced) = connect(&bob).await;
    assert_eq!(synced.iter().map(|m| m.seq).collect::<Vec<_>>(), [5, 6, 7]);
    assert_eq!(bob.undelivered().await.unwrap().len(), 3);
    // A sync frame resends the same from the cursor, then `synced`.
    b.send(&ClientFrame::Sync).await.unwrap();
    let mut again = Vec::new();
    loop {
        match next(&mut b).await.unwrap() {
            ServerFrame::Message(m) => again.push(m.seq),
            ServerFrame::Synced { messages, .. } => {
                assert_eq!(messages, 3);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(again, [5, 6, 7]);
    // Cursors never move back, and cannot pass the end of the conversation.
    b.send(&ClientFrame::Delivered {
        conversation_id: direct,
        seq: 2,
    })
    .await
    .unwrap();
    b.send(&ClientFrame::Delivered {
        conversation_id: direct,
        seq: 99,
    })
    .await
    .unwrap();
    assert_eq!(error(&mut b).await.code, "invalid_request");
    b.close().await;
    let (_, synced) = connect(&bob).await;
    assert_eq!(synced.len(), 3);
}

async fn undelivered_lists_what_a_sync_would_send_a_page_at_a_time(backend: Backend) {
    let server = server!(backend);
    let (alice, bob, direct) = server.direct_pair("alice", "bob").await;
    let (mut a, _) = connect(&alice).await;
    for i in 0..101 {
        send(&mut a, direct, &format!("a{i}"), "x").await;
    }
    let (mut b, _) = connect(&bob).await;
    let from_bob = send(&mut b, direct, "b0", "x").await;
    // The sending device's own messages are not undelivered to it: Bob's one is all there is.
    let page = alice.undelivered_page(None, None).await.unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [from_bob.seq]
    );
    assert_eq!(page.next, None);
    // Alice's other device gets all 102, as its sync would send them, in pages that follow
    // each other's cursor.
    let laptop = server.login("alice", "laptop").await;
    let mut paged = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = laptop
            .undelivered_page(after.as_deref(), Some(40))
            .await
            .unwrap();
        pages += 1;
        paged.extend(page.messages.iter().map(|m| m.seq));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let (_, synced) = connect(&laptop).await;
    let synced: Vec<i64> = synced.iter().map(|m| m.seq).collect();
    assert_eq!(paged, synced);
    assert_eq!(paged, (1..=102).collect::<Vec<_>>());
    // Bad cursors and limits out of range are 400 problems.
    for query in ["after=nonsense", "after=1.2", "limit=0", "limit=501"] {
        let response = server
            .raw(
                reqwest::Method::GET,
                &format!("/v1/messages/undelivered?{query}"),
            )
            .bearer_auth(laptop.token())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{query}");
    }
}

async fn sync_and_live_traffic_meet_without_gap_or_duplicate(backend: Backend) {
    let server = server!(backend);
    let (alice, bob, direct) = server.direct_pair("alice", "bob").await;
    let (mut a, _) = connect(&alice).await;
    const TOTAL: i64 = 300;
    // Alice sends steadily while Bob connects, reads a little, drops the connection and
    // reconnects, again and again: each connection must continue exactly where the
    // cursor says, through the seam between its sync and the live messages.
    let sender = tokio::spawn(async move {
        for i in 1..=TOTAL {
            send(&mut a, direct, &format!("m{i}"), &format!("body {i}")).await;
        }
        a
    });
    let mut seen: Vec<i64> = Vec::new();
    let mut dedup = natter_client::Dedup::default();
    let mut delivered = 0;
    while delivered < TOTAL {
        let (mut b, synced) = connect(&bob).await;
        let mut this_connection: Vec<i64> = synced.iter().map(|m| m.seq).collect();
        let mut batch = synced;
        for _ in 0..25 {
            if this_connection.last().copied().unwrap_or(delivered) >= TOTAL {
                break;
            }
            let m = message(&mut b).await;
            this_connection.push(m.seq);
            batch.push(m);
        }
        // Within one connection: strictly consecutive from the cursor, no gap, no repeat.
        let expected: Vec<i64> =
            (delivered + 1..=delivered + this_connection.len() as i64).collect();
        assert_eq!(
            this_connection, expected,
            "connection starting after {delivered}"
        );
        seen.extend(batch.iter().filter(|m| dedup.accept(m)).map(|m| m.seq));
        // Acknowledge only part of it, so the next connection resends the rest.
        delivered = this_connection.last().copied().unwrap_or(delivered) - 3;
        delivered = delivered.max(0);
        if this_connection.last().copied() == Some(TOTAL) {
            delivered = TOTAL;
        }
        b.send(&ClientFrame::Delivered {
            conversation_id: direct,
            seq: delivered,
        })
        .await
        .unwrap();
        // The pong says the cursor move was handled; live messages that arrive first are past
        // the acknowledged point and come again on the next connection.
        b.send(&ClientFrame::Ping { nonce: Some(7) }).await.unwrap();
        loop {
            match next(&mut b).await.unwrap() {
                ServerFrame::Pong { .. } => break,
                ServerFrame::Message(_)
                | ServerFrame::Receipt(_)
                | ServerFrame::Receipts { .. } => {}
                other => panic!("unexpected frame: {other:?}"),
            }
        }
        b.close().await;
    }
    sender.await.unwrap();
    assert_eq!(
        seen,
        (1..=TOTAL).collect::<Vec<_>>(),
        "the client shows each message once"
    );
}

async fn resending_a_client_msg_id_stores_once(backend: Backend) {
    let server = server!(backend);
    let (alice, bob, direct) = server.direct_pair("alice", "bob").await;
    let (mut a, _) = connect(&alice).await;
    let (mut b, _) = connect(&bob).await;
    let first = send(&mut a, direct, "same-id", "hello").await;
    assert_eq!(message(&mut b).await.seq, first.seq);
    let again = send(&mut a, direct, "same-id", "hello").await;
    assert_eq!(first, again);
    // Even from a fresh connection of the same device (the sender never saw the ack).
    a.close().await;
    let (mut a, _) = connect(&alice).await;
    assert_eq!(send(&mut a, direct, "same-id", "hello").await, first);
    // The id names the message, whatever conversation a resend names.
    let carol = server.user("carol").await;
    connect_users(&alice, &carol).await;
    let other = alice.open_direct(carol.user_id()).await.unwrap().summary.id;
    assert_eq!(send(&mut a, other, "same-id", "hello").await, first);
    assert!(
        carol
            .history(other, None, None, None)
            .await
            .unwrap()
            .is_empty()
    );
    // Bob, online throughout, was shown the message once: a message before the marker fails.
    marker(&mut a, &bob, &mut b).await;
    // Another device may use the same id for its own message.
    let phone = server.login("alice", "phone").await;
    let (mut p, _) = connect(&phone).await;
    assert_eq!(send(&mut p, direct, "same-id", "hi").await.seq, 2);
    assert_eq!(message(&mut b).await.seq, 2);
    assert_eq!(
        bob.history(direct, None, None, None).await.unwrap().len(),
        2
    );
    assert_eq!(alice.sent(None).await.unwrap().len(), 2);
}

async fn only_members_and_connections_may_send(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let mallory = server.user("mallory").await;
    let direct = alice.open_direct(bob.user_id()).await.unwrap().summary.id;
    let (mut m, _) = connect(&mallory).await;
    mallory_refused(&mut m, direct).await;
    assert_problem(
        mallory.history(direct, None, None, None).await,
        404,
        "not_found",
    );
    assert_problem(mallory.conversation(direct).await, 404, "not_found");
    assert_problem(
        mallory.open_direct(alice.user_id()).await,
        403,
        "not_connected",
    );
    // Once the connection is removed, the direct conversation refuses new messages.
    let (mut b, _) = connect(&bob).await;
    send(&mut b, direct, "before", "x").await;
    alice.remove_connection(bob.user_id(), None).await.unwrap();
    refused(&mut b, direct, "after", "x", "not_connected").await;
    // Typing notices are refused the same way, and Mallory's too.
    typing(&mut b, direct, true).await;
    assert_eq!(error(&mut b).await.code, "not_connected");
    typing(&mut m, direct, true).await;
    assert_eq!(error(&mut m).await.code, "not_member");
    assert_eq!(
        alice.history(direct, None, None, None).await.unwrap().len(),
        1
    );
}

async fn mallory_refused(connection: &mut natter_client::Connection, conversation: ConversationId) {
    refused(connection, conversation, "x1", "spam", "not_member").await;
}

/// Alice, Bob and Carol, all connected to each other, and Carol's room of the three.
async fn three_in_a_room(server: &TestServer) -> (Session, Session, Session, ConversationId) {
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let carol = server.user("carol").await;
    for peer in [&alice, &bob] {
        connect_users(&carol, peer).await;
    }
    let room = carol
        .create_room("three", &[alice.user_id(), bob.user_id()])
        .await
        .unwrap()
        .summary
        .id;
    (alice, bob, carol, room)
}

/// [`three_in_a_room`] where Alice blocks Bob, and the three connected (`a`, `b`, `c`).
async fn alice_blocking_bob(
    server: &TestServer,
) -> (
    (Session, Session, Session, ConversationId),
    (Connection, Connection, Connection),
) {
    let (alice, bob, carol, room) = three_in_a_room(server).await;
    alice.block(bob.user_id(), true, None).await.unwrap();
    let (a, _) = connect(&alice).await;
    let (b, _) = connect(&bob).await;
    let (c, _) = connect(&carol).await;
    ((alice, bob, carol, room), (a, b, c))
}

async fn blocked_senders_do_not_reach_the_blocker(backend: Backend) {
    let server = server!(backend);
    let (alice, bob, carol, room) = three_in_a_room(&server).await;
    let direct = alice.open_direct(bob.user_id()).await.unwrap().summary.id;
    alice.block(bob.user_id(), true, None).await.unwrap();
    assert_eq!(
        alice.connection(bob.user_id()).await.unwrap().state,
        ConnectionState::Blocked
    );
    let (mut a, _) = connect(&alice).await;
    let (mut c, _) = connect(&carol).await;
    let (mut b, _) = connect(&bob).await;
    // In the room, Bob still talks to Carol, but Alice never sees him.
    send(&mut b, room, "b1", "from bob").await;
    assert_eq!(message(&mut c).await.sender_id, bob.user_id());
    send(&mut c, room, "c1", "from carol").await;
    let got = message(&mut a).await;
    assert_eq!(
        (got.seq, got.sender_id),
        (2, carol.user_id()),
        "Bob's message (seq 1) is hidden from Alice"
    );
    let history: Vec<UserId> = alice
        .history(room, None, None, None)
        .await
        .unwrap()
        .iter()
        .map(|m| m.sender_id)
        .collect();
    assert_eq!(history, [carol.user_id()]);
    assert_eq!(
        message(&mut b).await.seq,
        2,
        "Bob still gets Carol's messages"
    );
    // The direct conversation refuses Bob like any non-connection.
    refused(&mut b, direct, "b2", "hello?", "not_connected").await;
    // Alice's later connection does not sync Bob's room message either.
    a.close().await;
    let (_, synced) = connect(&alice).await;
    assert!(synced.iter().all(|m| m.sender_id != bob.user_id()));
}

async fn bad_frames_get_error_frames_and_the_connection_stays(backend: Backend) {
    let server = server!(backend);
    let (alice, _bob, direct) = server.direct_pair("alice", "bob").await;
    let (mut a, _) = connect(&alice).await;
    for (text, code) in [
        ("not json".to_owned(), "invalid_frame"),
        (r#"{"type":"launch_missiles"}"#.to_owned(), "invalid_frame"),
        (
            r#"{"type":"send","conversation_id":"nope","client_msg_id":"a","ciphertext":"x"}"#
                .to_owned(),
            "invalid_frame",
        ),
        (r#"{"type":"read"}"#.to_owned(), "invalid_frame"),
        (
            format!(r#"{{"type":"read","conversation_id":"{direct}","seq":-1}}"#),
            "invalid_request",
        ),
        (
            format!(
                r#"{{"type":"send","conversation_id":"{direct}","client_msg_id":"","ciphertext":"x"}}"#
            ),
            "invalid_request",
        ),
        (
            format!(
                r#"{{"type":"send","conversation_id":"{direct}","client_msg_id":"a","ciphertext":""}}"#
            ),
            "invalid_request",
        ),
        (
            format!(
                r#"{{"type":"send","conversation_id":"{direct}","client_msg_id":"a","ciphertext":"{}"}}"#,
                "x".repeat(9000)
            ),
            "too_large",
        ),
        (
            format!(
                r#"{{"type":"send","conversation_id":"{direct}","client_msg_id":"a","ciphertext":"{}"}}"#,
                "x".repeat(100_000)
            ),
            "too_large",
        ),
        (
            r#"{"type":"auth","token":"whatever"}"#.to_string(),
            "invalid_frame",
        ),
        // U+0000, which PostgreSQL cannot store, in opaque text.
        (
            format!(
                r#"{{"type":"send","conversation_id":"{direct}","client_msg_id":"a","ciphertext":"x\u0000y"}}"#
            ),
            "invalid_request",
        ),
        (
            format!(
                r#"{{"type":"to_device","messages":[{{"user_id":"{}","device_id":"{}","payload":"\u0000"}}]}}"#,
                alice.user_id(),
                alice.device_id()
            ),
            "invalid_request",
        ),
    ] {
        a.send_text(text).await.unwrap();
        assert_eq!(error(&mut a).await.code, code);
    }
    // The connection still works, and nothing was stored.
    ping(&mut a, 3).await;
    assert_eq!(send(&mut a, direct, "ok", "fine").await.seq, 1);
}

async fn senders_past_their_rate_get_rate_limited(backend: Backend) {
    let Some(server) = TestServer::start_with(backend, |c| {
        c.limits.set(Kind::DeviceMessages, Rate::new(0.5, 3.0));
    })
    .await
    else {
        return;
    };
    let (alice, bob, direct) = server.direct_pair("alice", "bob").await;
    let (mut a, _) = connect(&alice).await;
    for i in 0..3 {
        send(&mut a, direct, &format!("m{i}"), "x").await;
    }
    let limited = refused(&mut a, direct, "m3", "x", "rate_limited").await;
    assert!(
        limited
            .retry_after_ms
            .is_some_and(|ms| ms > 0 && ms <= 2000),
        "{limited:?}"
    );
    ping(&mut a, 1).await; // not disconnected
    assert_eq!(
        bob.history(direct, None, None, None).await.unwrap().len(),
        3
    );
}

async fn receipts_reach_the_sender(backend: Backend) {
    let server = server!(backend);
    let (alice, bob, direct) = server.direct_pair("alice", "bob").await;
    let bob_phone = server.login("bob", "phone").await;
    let (mut a, _) = connect(&alice).await;
    let (mut b, _) = connect(&bob).await;
    send(&mut a, direct, "m1", "x").await;
    send(&mut a, direct, "m2", "x").await;
    assert_eq!(message(&mut b).await.seq, 1);
    assert_eq!(message(&mut b).await.seq, 2);
    let sent = alice.receipts(direct, 2).await.unwrap();
    assert_eq!(
        (sent.sent, sent.delivered_devices, sent.read_users.len()),
        (true, 0, 0)
    );

    b.send(&ClientFrame::Delivered {
        conversation_id: direct,
        seq: 2,
    })
    .await
    .unwrap();
    let moved = receipt_of(&mut a, bob.device_id()).await;
    assert_eq!(
        (
            moved.user_id,
            moved.device_id,
            moved.delivered_seq,
            moved.read_seq
        ),
        (bob.user_id(), bob.device_id(), 2, 0)
    );
    b.send(&ClientFrame::Read {
        conversation_id: direct,
        seq: 1,
    })
    .await
    .unwrap();
    let moved = receipt_of(&mut a, bob.device_id()).await;
    assert_eq!((moved.delivered_seq, moved.read_seq), (2, 1));
    let (mut phone, synced) = connect(&bob_phone).await;
    assert_eq!(synced.len(), 2);
    phone
        .send(&ClientFrame::Delivered {
            conversation_id: direct,
            seq: 1,
        })
        .await
        .unwrap();
    ping(&mut phone, 1).await;

    let first = alice.receipts(direct, 1).await.unwrap();
    assert_eq!(
        (
            first.delivered_devices,
            first.delivered_users.clone(),
            first.read_users.clone()
        ),
        (2, vec![bob.user_id()], vec![bob.user_id()])
    );
    let second = alice.receipts(direct, 2).await.unwrap();
    assert_eq!((second.delivered_devices, second.read_users.len()), (1, 0));
    // The unread count follows the read cursor.
    assert_eq!(bob.conversations().await.unwrap()[0].unread, 1);
    let seen: HashSet<_> = [first.seq, second.seq].into();
    assert_eq!(seen.len(), 2);
    assert_problem(alice.receipts(direct, 3).await, 404, "not_found");
    // The mover's other devices hear of its moves: Bob reads on the laptop, the phone knows.
    b.send(&ClientFrame::Read {
        conversation_id: direct,
        seq: 2,
    })
    .await
    .unwrap();
    let mine = receipt_of(&mut phone, bob.device_id()).await;
    assert_eq!((mine.user_id, mine.read_seq), (bob.user_id(), 2));
}

async fn typing_reaches_the_other_members(backend: Backend) {
    let server = server!(backend);
    let (alice, bob, direct) = server.direct_pair("alice", "bob").await;
    let (mut a, _) = connect(&alice).await;
    let (mut b, _) = connect(&bob).await;
    typing(&mut a, direct, true).await;
    let next_frame = next(&mut b).await.unwrap();
    assert_eq!(
        next_frame,
        ServerFrame::Typing {
            conversation_id: direct,
            user_id: alice.user_id(),
            typing: true
        }
    );
    let mallory = server.user("mallory").await;
    let (mut m, _) = connect(&mallory).await;
    typing(&mut m, direct, true).await;
    assert_eq!(error(&mut m).await.code, "not_member");
    // Alice stops typing after Mallory was refused: Bob's very next frame is that, so nothing
    // of Mallory's reached him.
    typing(&mut a, direct, false).await;
    assert_eq!(
        next(&mut b).await.unwrap(),
        ServerFrame::Typing {
            conversation_id: direct,
            user_id: alice.user_id(),
            typing: false
        }
    );
}

async fn receipts_of_a_busy_room_all_reach_the_sender(backend: Backend) {
    let server = server!(backend);
    let owner = server.user("owner").await;
    let mut members = Vec::new();
    for i in 0..5 {
        let member = server.user(&format!("member{i}")).await;
        connect_users(&owner, &member).await;
        members.push(member);
    }
    let ids: Vec<UserId> = members.iter().map(|m| m.user_id()).collect();
    let room = owner.create_room("six", &ids).await.unwrap().summary.id;
    let mut live = Vec::new();
    for member in &members {
        live.push(connect(member).await.0);
    }
    let (mut o, _) = connect(&owner).await;
    send(&mut o, room, "m1", "x").await;
    for connection in &mut live {
        assert_eq!(message(connection).await.seq, 1);
    }
    // All five acknowledge at once: the first move goes out alone, the rest gathered.
    for connection in &mut live {
        connection
            .send(&ClientFrame::Delivered {
                conversation_id: room,
                seq: 1,
            })
            .await
            .unwrap();
    }
    let mut delivered = HashMap::new();
    while delivered.len() < members.len() || delivered.values().any(|seq| *seq < 1) {
        let moves: Vec<_> = until(&mut o, |f| {
            let moves: Vec<_> = receipts_in(f).cloned().collect();
            (!moves.is_empty()).then_some(moves)
        })
        .await;
        for moved in moves {
            assert_eq!(moved.conversation_id, room);
            delivered.insert(moved.device_id, moved.delivered_seq);
        }
    }
    let expected: HashMap<_, _> = members.iter().map(|m| (m.device_id(), 1)).collect();
    assert_eq!(delivered, expected);
}

async fn typing_does_not_reach_a_blocker(backend: Backend) {
    let server = server!(backend);
    let ((_, bob, carol, room), (mut a, mut b, mut c)) = alice_blocking_bob(&server).await;
    let typist = |f: &ServerFrame| match f {
        ServerFrame::Typing { user_id, .. } => Some(*user_id),
        _ => None,
    };
    // Bob's notice is handled (and would be queued to Alice) before his pong; Carol's comes
    // after it through the same queue: if Alice's next typing frame is Carol's, Bob's never
    // came.
    typing(&mut b, room, true).await;
    ping(&mut b, 1).await;
    typing(&mut c, room, true).await;
    assert_eq!(until(&mut a, typist).await, carol.user_id());
    // Bob still reaches Carol.
    assert_eq!(until(&mut c, typist).await, bob.user_id());
}

async fn cursor_moves_outside_ones_conversations_are_refused(backend: Backend) {
    let server = server!(backend);
    let (alice, bob, direct) = server.direct_pair("alice", "bob").await;
    let mallory = server.user("mallory").await;
    let (mut a, _) = connect(&alice).await;
    let (mut b, _) = connect(&bob).await;
    let (mut m, _) = connect(&mallory).await;
    send(&mut a, direct, "m1", "x").await;
    assert_eq!(message(&mut b).await.seq, 1);
    for seq in [0, 1] {
        for frame in [
            ClientFrame::Read {
                conversation_id: direct,
                seq,
            },
            ClientFrame::Delivered {
                conversation_id: direct,
                seq,
            },
        ] {
            m.send(&frame).await.unwrap();
            assert_eq!(error(&mut m).await.code, "not_member", "{frame:?}");
        }
    }
    // Bob's move is pushed to Alice after any of Mallory's would have been, through the same
    // queue: the first receipt Alice gets is Bob's alone.
    b.send(&ClientFrame::Delivered {
        conversation_id: direct,
        seq: 1,
    })
    .await
    .unwrap();
    let first: Vec<DeviceId> = until(&mut a, |f| {
        let moves: Vec<_> = receipts_in(f).map(|r| r.device_id).collect();
        (!moves.is_empty()).then_some(moves)
    })
    .await;
    assert_eq!(first, [bob.device_id()]);
    let stored = alice.receipts(direct, 1).await.unwrap();
    assert_eq!(
        (stored.delivered_users, stored.read_users),
        (vec![bob.user_id()], vec![])
    );
}

async fn a_receipt_goes_to_the_senders_of_what_it_newly_covers(backend: Backend) {
    let server = server!(backend);
    let (alice, bob, carol, room) = three_in_a_room(&server).await;
    let (mut a, _) = connect(&alice).await;
    let (mut b, _) = connect(&bob).await;
    let (mut c, _) = connect(&carol).await;
    let delivered = |seq| ClientFrame::Delivered {
        conversation_id: room,
        seq,
    };
    // Alice posts; Carol's delivered cursor covers it: Alice hears.
    send(&mut a, room, "a1", "x").await;
    assert_eq!(message(&mut c).await.seq, 1);
    assert_eq!(message(&mut b).await.seq, 1);
    c.send(&delivered(1)).await.unwrap();
    assert_eq!(receipt_of(&mut a, carol.device_id()).await.delivered_seq, 1);
    // Bob posts; Carol's next move (her read cursor still at 0) newly covers Bob's post only.
    send(&mut b, room, "b1", "x").await;
    assert_eq!(message(&mut c).await.seq, 2);
    assert_eq!(message(&mut a).await.seq, 2);
    c.send(&delivered(2)).await.unwrap();
    assert_eq!(receipt_of(&mut b, carol.device_id()).await.delivered_seq, 2);
    // Published to everyone at once: had Alice been told, it would be before the marker.
    let before = marker(&mut b, &alice, &mut a).await;
    assert!(
        !before
            .iter()
            .flat_map(receipts_in)
            .any(|r| r.device_id == carol.device_id() && r.delivered_seq == 2),
        "{before:?}"
    );
}

async fn a_past_member_moves_its_cursors_only_over_what_it_saw(backend: Backend) {
    let server = server!(backend);
    let (alice, bob, carol, room) = three_in_a_room(&server).await;
    let (mut a, _) = connect(&alice).await;
    let (mut b, _) = connect(&bob).await;
    send(&mut a, room, "a1", "seen by bob").await;
    assert_eq!(message(&mut b).await.seq, 1);
    carol.remove_member(room, bob.user_id()).await.unwrap();
    send(&mut a, room, "a2", "after bob left").await;
    let read = |seq| ClientFrame::Read {
        conversation_id: room,
        seq,
    };
    // Past where Bob left: refused, and the bound it tells is his, not the room's.
    b.send(&read(2)).await.unwrap();
    let refusal = error(&mut b).await;
    assert_eq!(refusal.code, "invalid_request", "{refusal:?}");
    assert!(refusal.message.contains("(0..=1)"), "{refusal:?}");
    // Up to there he may still mark what he saw; Alice hears of that move only.
    b.send(&read(1)).await.unwrap();
    let receipt = receipt_of(&mut a, bob.device_id()).await;
    assert_eq!((receipt.delivered_seq, receipt.read_seq), (1, 1));
    let second = alice.receipts(room, 2).await.unwrap();
    assert!(
        !second.delivered_users.contains(&bob.user_id()),
        "{second:?}"
    );
    let first = alice.receipts(room, 1).await.unwrap();
    assert_eq!(first.read_users, [bob.user_id()]);
}

async fn receipts_leave_out_who_never_got_the_message(backend: Backend) {
    let server = server!(backend);
    let ((alice, bob, carol, room), (mut a, mut b, mut c)) = alice_blocking_bob(&server).await;
    send(&mut b, room, "b1", "hidden from alice").await;
    assert_eq!(message(&mut c).await.seq, 1);
    send(&mut c, room, "c1", "for everyone").await;
    assert_eq!(message(&mut a).await.seq, 2);
    assert_eq!(message(&mut b).await.seq, 2);
    // Alice's read cursor passes Bob's message, which she never got: he hears nothing of it.
    a.send(&ClientFrame::Read {
        conversation_id: room,
        seq: 2,
    })
    .await
    .unwrap();
    assert_eq!(receipt_of(&mut c, alice.device_id()).await.read_seq, 2);
    let before = marker(&mut c, &bob, &mut b).await;
    assert!(
        !before
            .iter()
            .flat_map(receipts_in)
            .any(|r| r.user_id == alice.user_id()),
        "{before:?}"
    );
    // Nor does the message's state name her, whoever asks.
    for asking in [&bob, &carol] {
        let state = asking.receipts(room, 1).await.unwrap();
        assert!(
            !state.delivered_users.contains(&alice.user_id())
                && !state.read_users.contains(&alice.user_id()),
            "{state:?}"
        );
    }
    let carols = carol.receipts(room, 2).await.unwrap();
    assert_eq!(carols.read_users, [alice.user_id()]);
    // A member who joins later was never sent what came before.
    let dave = server.user("dave").await;
    connect_users(&carol, &dave).await;
    carol.add_members(room, &[dave.user_id()]).await.unwrap();
    send(&mut c, room, "c2", "welcome").await;
    let (mut d, _) = connect(&dave).await;
    d.send(&ClientFrame::Read {
        conversation_id: room,
        seq: 3,
    })
    .await
    .unwrap();
    assert_eq!(receipt_of(&mut c, dave.device_id()).await.read_seq, 3);
    let earlier = carol.receipts(room, 2).await.unwrap();
    assert!(!earlier.read_users.contains(&dave.user_id()), "{earlier:?}");
}
