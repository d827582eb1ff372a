//! Offline: a device that was away catches up; what is queued while the server is down is
//! sent in order once it is back; a block hides a user's messages at once.

use natter_proto::connections::ConnectionState;
use natter_proto::ws::ServerFrame;

use crate::helpers::{TestServer, texts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_device_catches_up_in_order_once() {
    let server = TestServer::start().await;
    let (alice, bob, direct) = server.alice_and_bob().await;
    let sent: Vec<String> = (1..=5)
        .map(|i| format!("while you were away {i}"))
        .collect();
    for text in &sent {
        alice.send_text(direct, text).await.unwrap();
    }
    assert_eq!(alice.sync().await.unwrap().sent, 5);

    assert_eq!(bob.sync().await.unwrap().received, 5);
    assert_eq!(texts(&bob, direct).await, sent);
    let (delivered, _) = bob.cursors(direct).await.unwrap();
    let last = bob.messages(direct, 1).await.unwrap()[0].seq;
    assert_eq!(delivered, last);
    // The server resumes from the delivered cursor: nothing comes twice.
    assert_eq!(bob.sync().await.unwrap().received, 0);

    // The read cursor is queued, sent, and shows on the sender's receipts.
    assert!(bob.mark_read(direct, last).await.unwrap());
    bob.sync().await.unwrap();
    assert_eq!(bob.cursors(direct).await.unwrap(), (last, last));
    // A mark that is not ahead of the read cursor queues nothing.
    assert!(!bob.mark_read(direct, last).await.unwrap());
    assert!(!bob.mark_read(direct, last - 1).await.unwrap());
    assert!(bob.queued().await.unwrap().is_empty());
    let receipts = alice.session().receipts(direct, last).await.unwrap();
    assert_eq!(receipts.read_users, [bob.user_id()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_queue_flushes_in_order_when_the_server_is_back() {
    let mut server = TestServer::start().await;
    let (alice, bob, with_bob) = server.alice_and_bob().await;
    let carol = server.user("carol").await;
    let with_carol = server.connect(&alice, &carol).await;
    carol
        .send_text(with_carol, "hi alice, it's carol")
        .await
        .unwrap();
    carol.sync().await.unwrap();
    alice.sync().await.unwrap();
    assert_eq!(texts(&alice, with_carol).await, ["hi alice, it's carol"]);

    server.stop().await;
    alice.send_text(with_bob, "queued one").await.unwrap();
    alice.block(carol.user_id(), true).await.unwrap();
    alice.send_text(with_bob, "queued two").await.unwrap();
    // The block holds locally at once: carol's messages are hidden.
    assert!(texts(&alice, with_carol).await.is_empty());
    assert!(
        alice
            .search("carol", None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(alice.sync().await.is_err(), "the server is down");
    assert_eq!(alice.queued().await.unwrap().len(), 3);

    server.restart().await;
    let report = alice.sync().await.unwrap();
    assert_eq!(report.sent, 2);
    assert!(alice.queued().await.unwrap().is_empty());
    let status = alice.session().connection(carol.user_id()).await.unwrap();
    assert_eq!(status.state, ConnectionState::Blocked);
    bob.sync().await.unwrap();
    assert_eq!(texts(&bob, with_bob).await, ["queued one", "queued two"]);
    let seqs: Vec<i64> = bob
        .messages(with_bob, 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert!(seqs[0] < seqs[1]);

    // Unblocking shows the old messages again.
    alice.block(carol.user_id(), false).await.unwrap();
    assert_eq!(texts(&alice, with_carol).await, ["hi alice, it's carol"]);
    alice.sync().await.unwrap();
    let status = alice.session().connection(carol.user_id()).await.unwrap();
    assert_ne!(status.state, ConnectionState::Blocked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_whose_ack_was_lost_is_resent_and_stored_once() {
    let server = TestServer::start().await;
    let (alice, bob, direct) = server.alice_and_bob().await;
    let id = alice.send_text(direct, "did this arrive?").await.unwrap();

    // The server stores the send, but the device never sees the ack (as when the connection
    // dies between append and ack): another connection of the same device takes it.
    let mut raw = alice.session().connect().await.unwrap();
    raw.send_message(direct, &id, "stored before the ack was lost")
        .await
        .unwrap();
    let first_seq = loop {
        if let ServerFrame::Ack(ack) = raw.next().await.unwrap() {
            break ack.seq;
        }
    };
    raw.close().await;
    assert_eq!(alice.queued().await.unwrap().len(), 1);

    // The device resends with the same id, learns it was stored, and nothing is stored twice.
    assert_eq!(alice.sync().await.unwrap().sent, 1);
    assert!(alice.queued().await.unwrap().is_empty());
    let own = alice.messages(direct, 10).await.unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(
        (own[0].seq, own[0].client_msg_id.as_str()),
        (first_seq, id.as_str())
    );
    let history = bob
        .session()
        .history(direct, None, None, None)
        .await
        .unwrap();
    assert_eq!(history.len(), 1);
}
