//! A direct conversation between two users, one of them on two devices.

use natter_client::{Client, Event};
use natter_proto::ws::{ClientFrame, ServerFrame, ToDeviceOut};

use crate::helpers::{Relay, TestServer, live, next_event, texts, to_device_waiting, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_and_a_second_device_talk_in_a_direct_conversation() {
    let server = TestServer::start().await;
    let (alice, bob, direct) = server.alice_and_bob().await;
    let alice_phone = server.device("alice", "phone").await;

    alice.send_text(direct, "hello bob").await.unwrap();
    let report = alice.sync().await.unwrap();
    assert_eq!(report.sent, 1);
    assert!(alice.queued().await.unwrap().is_empty());

    bob.sync().await.unwrap();
    assert_eq!(texts(&bob, direct).await, ["hello bob"]);
    alice_phone.sync().await.unwrap();
    assert_eq!(texts(&alice_phone, direct).await, ["hello bob"]);

    bob.send_text(direct, "hi alice, from bob").await.unwrap();
    bob.sync().await.unwrap();
    for device in [&alice, &alice_phone] {
        device.sync().await.unwrap();
        assert_eq!(
            texts(device, direct).await,
            ["hello bob", "hi alice, from bob"]
        );
    }
    // The sender's own copy is stored too, with the seq the server gave it.
    assert_eq!(
        texts(&bob, direct).await,
        ["hello bob", "hi alice, from bob"]
    );

    // Syncing again brings nothing twice.
    assert_eq!(bob.sync().await.unwrap().received, 0);
    assert_eq!(texts(&bob, direct).await.len(), 2);

    // Local full-text search, with conversation and sender filters.
    let found = bob.search("alice", None, None, 10).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].sender_id, bob.user_id());
    assert!(
        bob.search("hello", Some(direct), Some(bob.user_id()), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        bob.search("HELLO", Some(direct), Some(alice.user_id()), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        bob.search("\"unbalanced OR", None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Both sides compute the same safety number.
    let theirs = bob.safety_number(alice.user_id()).await.unwrap();
    assert_eq!(alice.safety_number(bob.user_id()).await.unwrap(), theirs);
    assert_eq!(theirs.split(' ').count(), 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_before_anything_is_queued() {
    let server = TestServer::start().await;
    let (alice, _bob, direct) = server.alice_and_bob().await;

    let error = alice
        .send_text(direct, &"x".repeat(1001))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "a message is at most 1000 characters; this one has 1001"
    );
    assert!(alice.send_text(direct, "   ").await.is_err());
    assert!(alice.send_text(direct, &"字".repeat(1000)).await.is_ok());
    assert_eq!(alice.queued().await.unwrap().len(), 1);

    // The store opens only with its passphrase.
    let path = server.store_path("alice", "first");
    let wrong = natter_client::Device::open(&path, "not the passphrase").await;
    assert!(wrong.unwrap_err().to_string().contains("wrong passphrase"));
    let reopened = natter_client::Device::open(&path, "store passphrase")
        .await
        .unwrap();
    assert_eq!(reopened.device_id(), alice.device_id());
    assert_eq!(reopened.queued().await.unwrap().len(), 1);
    // A store holds one login.
    assert!(
        natter_client::Device::login(&server.url, "alice", "password123", "again", &path, "p")
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_keys_are_topped_up_when_they_run_low() {
    let server = TestServer::start().await;
    let (alice, bob, direct) = server.alice_and_bob().await;
    let stock = bob.session().key_counts().await.unwrap();
    assert_eq!(stock.one_time_key_count, 50);
    assert!(stock.has_fallback_key);
    // Alice claims keys as a device opening sessions with bob would; never his fallback key.
    let claim = async |count| {
        for _ in 0..count {
            let claimed = alice
                .session()
                .claim_key(bob.user_id(), bob.device_id())
                .await
                .unwrap();
            assert!(!claimed.fallback);
        }
    };
    claim(30).await;
    assert_eq!(
        bob.session().key_counts().await.unwrap().one_time_key_count,
        20
    );
    bob.sync().await.unwrap();
    assert_eq!(
        bob.session().key_counts().await.unwrap().one_time_key_count,
        50
    );

    // A device that stays live tops up too, each time it catches up (just after saying so).
    claim(30).await;
    let (mut events, stop, task) = live(&bob);
    next_event(&mut events, |e| (e == Event::Synced).then_some(())).await;
    wait_for("bob to top up once caught up", async || {
        bob.session().key_counts().await.unwrap().one_time_key_count == 50
    })
    .await;

    // While it stays connected, it tops up when a new session uses one of its keys: 29
    // claimed here, and the 30th by alice's device, whose first message opens a session.
    claim(29).await;
    alice.send_text(direct, "a new session").await.unwrap();
    alice.sync().await.unwrap();
    next_event(&mut events, |e| match e {
        Event::Message(m) if m.body.as_deref() == Ok("a new session") => Some(()),
        _ => None,
    })
    .await;
    wait_for("bob to top up while connected", async || {
        bob.session().key_counts().await.unwrap().one_time_key_count == 50
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_says_it_is_synced_and_sends_its_queue_before_topping_up_keys() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    Client::new(&server.url)
        .unwrap()
        .register("bob", "password123", None)
        .await
        .unwrap();
    let relay = Relay::start(&server.url).await;
    let bob = server.device_through(&relay.url, "bob", "first").await;
    let direct = server.connect(&alice, &bob).await;
    // Bob's stock runs low, so his next connection tops it up; that top-up does not finish.
    for _ in 0..30 {
        alice
            .session()
            .claim_key(bob.user_id(), bob.device_id())
            .await
            .unwrap();
    }
    relay.hold(true);
    bob.send_text(direct, "sent before the top-up")
        .await
        .unwrap();

    let (mut events, stop, task) = live(&bob);
    next_event(&mut events, |e| (e == Event::Synced).then_some(())).await;
    wait_for("bob's queued message to reach alice", async || {
        alice.sync().await.unwrap();
        texts(&alice, direct).await == ["sent before the top-up"]
    })
    .await;

    relay.hold(false);
    wait_for("bob to top up", async || {
        bob.session().key_counts().await.unwrap().one_time_key_count == 50
    })
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_to_device_payload_is_dropped_and_acknowledged() {
    let server = TestServer::start().await;
    let (alice, bob, direct) = server.alice_and_bob().await;

    // Bob's device (or a server that lies) sends alice something that is no key share.
    let garbage = ClientFrame::ToDevice {
        messages: vec![ToDeviceOut {
            user_id: alice.user_id(),
            device_id: alice.device_id(),
            payload: "not an olm message".into(),
        }],
    };
    taken(&bob, &[garbage]).await;
    assert_eq!(to_device_waiting(&alice).await, 1);

    // Alice's sync neither fails nor keeps the payload: it is acknowledged, so it does not
    // come again, and real messages still decrypt.
    alice.sync().await.unwrap();
    assert_eq!(to_device_waiting(&alice).await, 0);
    bob.send_text(direct, "still fine").await.unwrap();
    bob.sync().await.unwrap();
    alice.sync().await.unwrap();
    assert_eq!(texts(&alice, direct).await, ["still fine"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_share_refused_by_a_full_inbox_is_made_again_with_a_new_session() {
    use natter_proto::limits::{INBOX_FROM_ONE_DEVICE_MAX, TO_DEVICE_BATCH_MAX};
    let server = TestServer::start().await;
    let (alice, bob, direct) = server.alice_and_bob().await;

    // Alice's device has filled its share of Bob's inbox, which Bob has not fetched.
    let junk = ToDeviceOut {
        user_id: bob.user_id(),
        device_id: bob.device_id(),
        payload: "not an olm message".into(),
    };
    let batch = ClientFrame::ToDevice {
        messages: vec![junk; TO_DEVICE_BATCH_MAX],
    };
    let frames = vec![batch; INBOX_FROM_ONE_DEVICE_MAX as usize / TO_DEVICE_BATCH_MAX];
    taken(&alice, &frames).await;

    // The first message's key share is refused (`inbox_full`); the message itself is sent.
    alice.send_text(direct, "lost").await.unwrap();
    assert_eq!(alice.sync().await.unwrap().sent, 1);
    // Bob fetches and drops what waited; Alice's next message brings a new session's key.
    bob.sync().await.unwrap();
    alice.send_text(direct, "found").await.unwrap();
    alice.sync().await.unwrap();
    bob.sync().await.unwrap();
    let read = texts(&bob, direct).await;
    assert!(read.iter().any(|t| t == "found"), "{read:?}");
}

/// Sends `frames` from `device` over a connection of its own and waits until the server has
/// taken them all (frames are handled in order: once the ping is answered, they were); a
/// refusal fails the test.
async fn taken(device: &natter_client::Device, frames: &[ClientFrame]) {
    let mut raw = device.session().connect().await.unwrap();
    for frame in frames {
        raw.send(frame).await.unwrap();
    }
    raw.send(&ClientFrame::Ping { nonce: Some(1) })
        .await
        .unwrap();
    loop {
        match raw.next().await.unwrap() {
            ServerFrame::Pong { .. } => break,
            ServerFrame::Error(error) => panic!("a frame was refused: {error:?}"),
            _ => {}
        }
    }
    raw.close().await;
}
