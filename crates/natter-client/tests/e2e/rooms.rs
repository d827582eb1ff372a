//! Rooms: every member device reads; a device added later reads what follows; a removed
//! member cannot decrypt what is sent after.

use natter_client::UnableToDecrypt;

use crate::helpers::{TestServer, texts};

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

    // A device bob adds later reads what is sent from now on, not before.
    let bob_tablet = server.device("bob", "tablet").await;
    alice.send_text(room, "for everyone now").await.unwrap();
    alice.sync().await.unwrap();
    bob_tablet.sync().await.unwrap();
    assert_eq!(
        texts(&bob_tablet, room).await.last().unwrap(),
        "for everyone now"
    );
    let history = bob_tablet.fetch_history(room, 0).await.unwrap();
    // Alice's session was shared with the tablet from its next message on; carol has not
    // sent since, so the tablet never got her key.
    assert_eq!(history[0].body, Err(UnableToDecrypt::TooOld));
    assert_eq!(history[1].body, Err(UnableToDecrypt::MissingKey));

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
