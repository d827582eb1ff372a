//! Live devices: messages, acks, receipts and typing as events, and reconnection after the
//! server restarts.

use std::collections::HashSet;

use natter_client::Event;
use natter_proto::ws::ClientFrame;
use tokio::sync::mpsc;

use crate::helpers::{TestServer, live, live_into, next_event, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_devices_get_messages_receipts_and_reconnect() {
    let mut server = TestServer::start().await;
    let (alice, bob, direct) = server.alice_and_bob().await;
    let (mut alice_events, stop_alice, alice_task) = live(&alice);
    let (mut bob_events, stop_bob, bob_task) = live(&bob);
    for events in [&mut alice_events, &mut bob_events] {
        next_event(events, |e| (e == Event::Synced).then_some(())).await;
    }

    let id = alice.send_text(direct, "live hello").await.unwrap();
    let seq = next_event(&mut alice_events, |e| match e {
        Event::Sent {
            client_msg_id, seq, ..
        } if client_msg_id == id => Some(seq),
        _ => None,
    })
    .await;
    let received = next_event(&mut bob_events, |e| match e {
        Event::Message(m) if m.body.is_ok() => Some(m),
        _ => None,
    })
    .await;
    assert_eq!(received.body.as_deref(), Ok("live hello"));
    assert_eq!(received.seq, seq);

    bob.typing(direct, true);
    next_event(&mut alice_events, |e| {
        matches!(e, Event::Typing { typing: true, user_id, .. } if user_id == bob.user_id())
            .then_some(())
    })
    .await;
    bob.mark_read(direct, seq).await.unwrap();
    next_event(&mut alice_events, |e| match e {
        Event::Receipt(r) if r.user_id == bob.user_id() && r.read_seq >= seq => Some(()),
        _ => None,
    })
    .await;

    // The server goes away and comes back: both reconnect on their own and carry on.
    server.stop().await;
    next_event(&mut bob_events, |e| {
        matches!(e, Event::Disconnected(_)).then_some(())
    })
    .await;
    alice
        .send_text(direct, "sent while the server was down")
        .await
        .unwrap();
    server.restart().await;
    next_event(&mut bob_events, |e| match e {
        Event::Message(m) if m.body.as_deref() == Ok("sent while the server was down") => Some(()),
        _ => None,
    })
    .await;

    for (stop, task) in [(stop_alice, alice_task), (stop_bob, bob_task)] {
        stop.send(()).unwrap();
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_stored_before_its_delivered_was_sent_is_acknowledged_when_replayed() {
    let server = TestServer::start().await;
    let (alice, bob, direct) = server.alice_and_bob().await;
    // Bob's events go into a channel of one that the test fills once bob is synced: his link
    // then stores the next message and its cursor, and blocks reporting it, before the
    // `delivered` frame goes out.
    let (events, mut received) = mpsc::channel(1);
    let filler = events.clone();
    let (stop, task) = live_into(&bob, events);
    next_event(&mut received, |e| (e == Event::Synced).then_some(())).await;
    // Full now, by this or by an event of bob's.
    let _ = filler.try_send(Event::Connected);
    alice.send_text(direct, "did you get this?").await.unwrap();
    alice.sync().await.unwrap();
    let seq = alice.messages(direct, 1).await.unwrap()[0].seq;
    wait_for("bob to store the message", async || {
        bob.cursors(direct).await.unwrap().0 == seq
    })
    .await;
    // The connection drops there: the server never heard that the message arrived.
    stop.send(()).unwrap();
    task.await.unwrap();
    assert_eq!(bob.session().undelivered().await.unwrap().len(), 1);

    // The server sends it again; bob has it already, and tells the server this time.
    assert_eq!(bob.sync().await.unwrap().received, 0);
    wait_for("the server to have bob's delivered cursor", async || {
        bob.session().undelivered().await.unwrap().is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_of_several_devices_reach_the_sender_one_by_one_or_together() {
    let server = TestServer::start().await;
    let (alice, bob, direct) = server.alice_and_bob().await;
    let bob_phone = server.device("bob", "phone").await;
    let (mut events, stop, task) = live(&alice);
    next_event(&mut events, |e| (e == Event::Synced).then_some(())).await;
    let mut seqs = Vec::new();
    for text in ["first", "second"] {
        let id = alice.send_text(direct, text).await.unwrap();
        seqs.push(
            next_event(&mut events, |e| match e {
                Event::Sent {
                    client_msg_id, seq, ..
                } if client_msg_id == id => Some(seq),
                _ => None,
            })
            .await,
        );
    }
    let (first, second) = (seqs[0], seqs[1]);

    // Bob's devices move their cursors right after each other: the server sends a move in a
    // quiet conversation at once (`receipt`), and the moves within the next 250 ms together
    // (`receipts`). Either way, alice hears of each.
    let mut laptop = bob.session().connect().await.unwrap();
    let mut phone = bob_phone.session().connect().await.unwrap();
    laptop
        .send(&ClientFrame::Delivered {
            conversation_id: direct,
            seq: second,
        })
        .await
        .unwrap();
    phone
        .send(&ClientFrame::Read {
            conversation_id: direct,
            seq: first,
        })
        .await
        .unwrap();
    let mut waiting = HashSet::from([bob.device_id(), bob_phone.device_id()]);
    while !waiting.is_empty() {
        let device = next_event(&mut events, |e| match e {
            Event::Receipt(r)
                if (r.device_id == bob.device_id() && r.delivered_seq == second)
                    || (r.device_id == bob_phone.device_id() && r.read_seq == first) =>
            {
                Some(r.device_id)
            }
            _ => None,
        })
        .await;
        waiting.remove(&device);
    }
    // The laptop's delivered and the phone's read are both in alice's store.
    assert_eq!(alice.receipts(direct).await.unwrap(), (second, first));
    laptop.close().await;
    phone.close().await;
    stop.send(()).unwrap();
    task.await.unwrap();
}
