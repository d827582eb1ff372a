//! Rooms: every member device reads; a device added later reads what follows (and, once
//! approved, what came before); a removed member cannot decrypt what is sent after.

use natter_client::{Event, Notice, UnableToDecrypt};

use crate::helpers::{TestServer, live, next_event, texts, to_device_waiting};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_members_read_and_a_removed_member_cannot() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    server.connect(&alice, &bob).await;
    server.connect(&alice, &carol).await;
    // The server lists devices (and so lets room keys be shared) only between connections.
    server.connect(&bob, &carol).await;
    let room = alice
        .session()
        .create_room("friends", &[bob.user_id(), carol.user_id()])
        .await
        .unwrap()
        .summary
        .id;

    alice.send_text(room, "welcome, both").await.unwrap();
    alice.sync().await.unwrap();
    for member in [&bob, &carol] {
        member.sync().await.unwrap();
        assert_eq!(texts(member, room).await, ["welcome, both"]);
    }
    carol.send_text(room, "thanks from carol").await.unwrap();
    carol.sync().await.unwrap();
    bob.sync().await.unwrap();
    assert_eq!(
        texts(&bob, room).await,
        ["welcome, both", "thanks from carol"]
    );

    // A device bob adds later (approved with his recovery key) reads what is sent from now
    // on, and what was sent before from the keys bob's first device backed up.
    let bob_tablet = server.device("bob", "tablet").await;
    alice.send_text(room, "for everyone now").await.unwrap();
    alice.sync().await.unwrap();
    bob_tablet.sync().await.unwrap();
    assert_eq!(
        texts(&bob_tablet, room).await.last().unwrap(),
        "for everyone now"
    );
    let history = bob_tablet.fetch_history(room, 0).await.unwrap();
    assert_eq!(history[0].body.as_deref(), Ok("welcome, both"));
    assert_eq!(history[1].body.as_deref(), Ok("thanks from carol"));

    // Carol is removed; what alice sends next is under a new key she never gets.
    alice
        .session()
        .remove_member(room, carol.user_id())
        .await
        .unwrap();
    alice.send_text(room, "carol is gone").await.unwrap();
    alice.sync().await.unwrap();
    bob.sync().await.unwrap();
    assert_eq!(texts(&bob, room).await.last().unwrap(), "carol is gone");
    carol.sync().await.unwrap();
    assert!(
        !texts(&carol, room)
            .await
            .contains(&"carol is gone".to_owned())
    );
    let after = alice
        .session()
        .history(room, None, None, None)
        .await
        .unwrap();
    let secret = after.last().unwrap();
    assert_eq!(
        carol.decrypt(secret).await.unwrap(),
        Err(UnableToDecrypt::MissingKey)
    );
    // The key rotated: the new message's session is not the one carol was given.
    let before = &after[0];
    assert_eq!(
        carol.decrypt(before).await.unwrap().unwrap(),
        "welcome, both"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_to_a_room_one_was_removed_from_fails_once_and_leaves_the_queue() {
    let server = TestServer::start().await;
    let (alice, bob, _) = server.alice_and_bob().await;
    let room = alice
        .session()
        .create_room("brief", &[bob.user_id()])
        .await
        .unwrap()
        .summary
        .id;
    alice
        .session()
        .remove_member(room, bob.user_id())
        .await
        .unwrap();

    // Queued before bob learns he is out: it is refused for good, reported, and not retried.
    let (mut events, stop, task) = live(&bob);
    let id = bob.send_text(room, "am I still here?").await.unwrap();
    let code = next_event(&mut events, |e| match e {
        Event::Failed {
            client_msg_id,
            code,
        } if client_msg_id == id => Some(code),
        Event::Sent { client_msg_id, .. } if client_msg_id == id => {
            panic!("a removed member's message was sent")
        }
        _ => None,
    })
    .await;
    assert_eq!(code, "not_found", "the server no longer shows him the room");
    assert!(bob.queued().await.unwrap().is_empty());
    stop.send(()).unwrap();
    task.await.unwrap();
    // A sync reports such a refusal too.
    let again = bob.send_text(room, "and now?").await.unwrap();
    let report = bob.sync().await.unwrap();
    assert_eq!(report.failed, [(again, "not_found".to_owned())]);
    assert!(bob.queued().await.unwrap().is_empty());
    let history = alice
        .session()
        .history(room, None, None, None)
        .await
        .unwrap();
    assert!(history.is_empty(), "nothing reached the room");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_key_from_someone_who_left_is_dropped_and_the_sync_completes() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let carol = server.user("carol").await;
    // Alice and bob are not connected: each sees the other's devices only while they share
    // carol's room.
    server.connect(&carol, &alice).await;
    server.connect(&carol, &bob).await;
    let room = carol
        .session()
        .create_room("passing", &[alice.user_id(), bob.user_id()])
        .await
        .unwrap()
        .summary
        .id;
    bob.send_text(room, "hello and goodbye").await.unwrap();
    bob.sync().await.unwrap();
    bob.session()
        .remove_member(room, bob.user_id())
        .await
        .unwrap();
    assert_eq!(to_device_waiting(&alice).await, 1, "bob's room key");

    // Alice can no longer look up bob's device (404), so his key share cannot be checked: it
    // is dropped and acknowledged, and the sync still completes and sends her queue.
    alice.send_text(room, "still here").await.unwrap();
    assert_eq!(alice.sync().await.unwrap().sent, 1);
    assert!(alice.queued().await.unwrap().is_empty());
    assert_eq!(to_device_waiting(&alice).await, 0);
    assert_eq!(
        texts(&alice, room).await,
        [UnableToDecrypt::MissingKey.to_string(), "still here".into()]
    );
}

crate::helpers::on_both_backends!(a_member_the_server_adds_behind_the_owners_back_is_told);

/// The operator adds a user to a room in its database; the members' next send tells them.
async fn a_member_the_server_adds_behind_the_owners_back_is_told(server: TestServer) {
    let (alice, bob, _direct) = server.alice_and_bob().await;
    let mallory = server.user("mallory").await;
    let room = alice
        .session()
        .create_room("team", &[bob.user_id()])
        .await
        .unwrap()
        .summary
        .id;
    alice.send_text(room, "first").await.unwrap();
    alice.sync().await.unwrap();
    assert!(alice.notices().await.unwrap().is_empty());

    server.operator_sql(&format!(
        "INSERT INTO members (conversation_id, user_id, role, joined_seq, joined_at) \
         VALUES ('{room}', '{}', 'member', 1, 0)",
        mallory.user_id()
    ));
    server.operator_sql(&format!(
        "UPDATE conversations SET members_version = members_version + 1 WHERE id = '{room}'"
    ));
    alice.send_text(room, "second").await.unwrap();
    alice.sync().await.unwrap();
    assert_eq!(
        alice.notices().await.unwrap(),
        [Notice::MembersAdded {
            conversation_id: room,
            user_ids: vec![mallory.user_id()],
        }]
    );
}
