//! Delivery edges: to-device payloads, slow consumers, idle connections, browser-style
//! authentication, shutdown, and durability across a restart.

use std::time::Duration;

use natter_client::ClientError;
use natter_proto::ws::{ClientFrame, ServerFrame, ToDeviceOut};

use crate::helpers::{
    Backend, TestServer, assert_problem, backend_tests, connect_users, same_device, server,
};
use crate::ws::{connect, connect_with_inbox, error, next, ping, send, to_device, to_device_item};

backend_tests!(
    to_device_payloads_are_delivered_until_acknowledged,
    a_to_device_frame_is_taken_whole_or_not_at_all,
    a_full_inbox_takes_no_more_from_a_sender_until_its_device_acknowledges,
    binary_frames_are_refused_and_huge_ones_close_the_connection,
    text_frames_that_are_not_utf8_are_closed_with_1007,
    a_slow_consumer_is_disconnected_and_resyncs_everything,
    idle_connections_are_closed_and_pings_keep_them_open,
    tokens_are_checked_before_any_state_exists,
    shutdown_tells_clients_to_reconnect,
    acked_messages_survive_a_restart,
);

async fn to_device_payloads_are_delivered_until_acknowledged(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let stranger = server.user("mallory").await;
    let (mut a, _) = connect(&alice).await;
    let share = |payload: &str| to_device(&bob, payload);
    // Bob is offline: the payloads wait in his device's inbox.
    a.send(&share("key-1")).await.unwrap();
    a.send(&share("key-2")).await.unwrap();
    ping(&mut a, 1).await;
    let (mut b, _, inbox) = connect_with_inbox(&bob).await;
    assert_eq!(
        inbox.iter().map(|i| i.payload.as_str()).collect::<Vec<_>>(),
        ["key-1", "key-2"]
    );
    assert_eq!(
        (inbox[0].sender_id, inbox[0].sender_device_id),
        (alice.user_id(), alice.device_id())
    );
    // Online: pushed at once.
    a.send(&share("key-3")).await.unwrap();
    assert_eq!(to_device_item(&mut b).await.payload, "key-3");
    // Acknowledged items are gone; the rest come again on the next connection.
    b.send(&ClientFrame::ToDeviceAck { seq: inbox[1].seq })
        .await
        .unwrap();
    ping(&mut b, 2).await;
    b.close().await;
    let (_, _, again) = connect_with_inbox(&bob).await;
    assert_eq!(
        again.iter().map(|i| i.payload.as_str()).collect::<Vec<_>>(),
        ["key-3"]
    );
    // Strangers cannot reach Bob's devices, nor can anyone name a device under the wrong user.
    let (mut m, _) = connect(&stranger).await;
    m.send(&share("spam")).await.unwrap();
    assert_eq!(error(&mut m).await.code, "not_found");
    let wrong_owner = ClientFrame::ToDevice {
        messages: vec![ToDeviceOut {
            user_id: bob.user_id(),
            device_id: alice.device_id(),
            payload: "x".into(),
        }],
    };
    a.send(&wrong_owner).await.unwrap();
    assert_eq!(error(&mut a).await.code, "not_found");
    let oversized = ClientFrame::ToDevice {
        messages: vec![ToDeviceOut {
            user_id: bob.user_id(),
            device_id: bob.device_id(),
            payload: "x".repeat(9000),
        }],
    };
    a.send(&oversized).await.unwrap();
    assert_eq!(error(&mut a).await.code, "too_large");
}

async fn a_to_device_frame_is_taken_whole_or_not_at_all(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let stranger = server.user("mallory").await;
    let (mut a, _) = connect(&alice).await;
    let item = |to: &natter_client::Session| ToDeviceOut {
        user_id: to.user_id(),
        device_id: to.device_id(),
        payload: "share".into(),
    };
    let too_many = ClientFrame::ToDevice {
        messages: vec![item(&bob); natter_proto::limits::TO_DEVICE_BATCH_MAX + 1],
    };
    a.send(&too_many).await.unwrap();
    assert_eq!(error(&mut a).await.code, "too_large");
    // One device out of reach refuses the frame, the reachable ones with it.
    let mixed = ClientFrame::ToDevice {
        messages: vec![item(&bob), item(&stranger)],
    };
    a.send(&mixed).await.unwrap();
    assert_eq!(error(&mut a).await.code, "not_found");
    let (_, _, inbox) = connect_with_inbox(&bob).await;
    assert!(inbox.is_empty(), "{inbox:?}");
}

async fn a_full_inbox_takes_no_more_from_a_sender_until_its_device_acknowledges(backend: Backend) {
    use natter_proto::limits::{INBOX_FROM_ONE_DEVICE_MAX, TO_DEVICE_BATCH_MAX};
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let carol = server.user("carol").await;
    connect_users(&alice, &carol).await;
    connect_users(&carol, &bob).await;
    let (mut a, _) = connect(&alice).await;
    let (mut c, _) = connect(&carol).await;
    let share = |to: &natter_client::Session| ToDeviceOut {
        user_id: to.user_id(),
        device_id: to.device_id(),
        payload: "share".into(),
    };
    let batch = ClientFrame::ToDevice {
        messages: vec![share(&bob); TO_DEVICE_BATCH_MAX],
    };
    for _ in 0..INBOX_FROM_ONE_DEVICE_MAX as usize / TO_DEVICE_BATCH_MAX {
        a.send(&batch).await.unwrap();
    }
    // All taken (an error frame before the pong would fail the test).
    ping(&mut a, 1).await;
    // Bob's inbox takes no more from Alice's device; the rest of her frame still goes out.
    let mixed = ClientFrame::ToDevice {
        messages: vec![share(&bob), share(&carol)],
    };
    a.send(&mixed).await.unwrap();
    let refusal = error(&mut a).await;
    assert_eq!(refusal.code, "inbox_full");
    assert!(
        refusal.message.contains(&bob.device_id().to_string()),
        "{refusal:?}"
    );
    assert_eq!(to_device_item(&mut c).await.payload, "share");
    // Others still reach Bob.
    c.send(&to_device(&bob, "from carol")).await.unwrap();
    ping(&mut c, 2).await;
    // Bob's device syncs them all (in pages), acknowledges them, and Alice has room again.
    let (mut b, _, inbox) = connect_with_inbox(&bob).await;
    assert_eq!(inbox.len(), INBOX_FROM_ONE_DEVICE_MAX as usize + 1);
    assert_eq!(inbox.last().unwrap().payload, "from carol");
    let last = inbox.last().unwrap().seq;
    b.send(&ClientFrame::ToDeviceAck { seq: last })
        .await
        .unwrap();
    ping(&mut b, 3).await;
    a.send(&to_device(&bob, "room again")).await.unwrap();
    assert_eq!(to_device_item(&mut b).await.payload, "room again");
}

async fn binary_frames_are_refused_and_huge_ones_close_the_connection(backend: Backend) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = server!(backend);
    let alice = server.user("alice").await;
    let mut request = crate::helpers::ws_url(&server.url)
        .as_str()
        .into_client_request()
        .unwrap();
    let bearer = format!("Bearer {}", alice.token());
    request
        .headers_mut()
        .insert("authorization", bearer.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    type Socket = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;
    async fn next_frame(socket: &mut Socket) -> ServerFrame {
        loop {
            let message = tokio::time::timeout(crate::helpers::PATIENCE, socket.next())
                .await
                .expect("a frame in time")
                .expect("the connection is open")
                .expect("a frame");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("{other:?}"),
            }
        }
    }
    while !matches!(next_frame(&mut socket).await, ServerFrame::Synced { .. }) {}
    // Binary frames are not Natter's protocol: an error, and the connection stays.
    socket.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    let refusal = next_frame(&mut socket).await;
    assert!(
        matches!(refusal, ServerFrame::Error(ref e) if e.code == "invalid_frame"),
        "{refusal:?}"
    );
    socket
        .send(Message::text(r#"{"type":"ping","nonce":7}"#))
        .await
        .unwrap();
    assert!(matches!(
        next_frame(&mut socket).await,
        ServerFrame::Pong { nonce: Some(7) }
    ));
    // Past four times the frame limit the server does not read it: it closes (1009). The
    // unread rest of the frame may reset the connection before the close is read; either
    // way the connection ends, and any close it sent says 1009.
    let _ = socket.send(Message::text("x".repeat(300 * 1024))).await;
    loop {
        match tokio::time::timeout(crate::helpers::PATIENCE, socket.next())
            .await
            .expect("the connection ends")
        {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 1009);
                break;
            }
            Some(Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_))) => {}
            Some(Err(_)) | None => break,
            other => panic!("expected a close (1009), got {other:?}"),
        }
    }
}

async fn text_frames_that_are_not_utf8_are_closed_with_1007(backend: Backend) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let server = server!(backend);
    let alice = server.user("alice").await;
    let ws_url = crate::helpers::ws_url(&server.url);
    // A text frame whose payload is not UTF-8, sent as the raw frame tungstenite would refuse
    // to build.
    let not_utf8 = || {
        Message::Frame(Frame::message(
            vec![b'{', 0xff, 0xfe, b'}'],
            OpCode::Data(Data::Text),
            true,
        ))
    };
    // Once as the first frame (before `auth`), once inside a live session.
    let auth = serde_json::json!({"type": "auth", "token": alice.token()}).to_string();
    for authenticated in [false, true] {
        let (mut socket, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
        if authenticated {
            socket.send(Message::text(auth.clone())).await.unwrap();
            loop {
                match socket.next().await.unwrap().unwrap() {
                    Message::Text(text) if text.contains("\"synced\"") => break,
                    Message::Text(_) => {}
                    other => panic!("{other:?}"),
                }
            }
        }
        socket.send(not_utf8()).await.unwrap();
        let close = loop {
            match tokio::time::timeout(crate::helpers::PATIENCE, socket.next())
                .await
                .expect("the server answers in time")
            {
                Some(Ok(Message::Close(frame))) => break frame,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("authenticated {authenticated}: expected a close, got {other:?}"),
            }
        };
        let code = close.map(|frame| u16::from(frame.code));
        assert_eq!(code, Some(1007), "authenticated {authenticated}");
    }
}

async fn a_slow_consumer_is_disconnected_and_resyncs_everything(backend: Backend) {
    let Some(server) = TestServer::start_with(backend, |c| c.gateway.outbound_queue = 8).await
    else {
        return;
    };
    let (alice, bob, direct) = server.direct_pair("alice", "bob").await;
    let (mut a, _) = connect(&alice).await;
    let (mut b, _) = connect(&bob).await;
    // Bob stops reading while Alice sends a few megabytes: his socket buffers fill, then his
    // queue, and the server lets him go instead of buffering without bound. Alice is never
    // slowed down: every send is acked.
    let body = "x".repeat(7_000);
    const TOTAL: i64 = 1_500;
    for i in 1..=TOTAL {
        a.send_message(direct, &format!("m{i}"), &body)
            .await
            .unwrap();
    }
    let mut acked = 0;
    while acked < TOTAL {
        if let ServerFrame::Ack(ack) = next(&mut a).await.unwrap() {
            acked = ack.seq;
        }
    }
    // Bob drains what reached him, then finds the connection closed as too slow.
    let mut received = 0;
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(30), b.next())
            .await
            .expect("bob's connection ends")
        {
            Ok(ServerFrame::Message(_)) => received += 1,
            Ok(_) => {}
            Err(ClientError::Closed(closed)) => break closed,
            Err(other) => panic!("{other}"),
        }
    };
    assert_eq!(closed.code, Some(4008), "{closed:?}");
    assert!(
        received < TOTAL,
        "the slow connection did not get everything live"
    );
    // Reconnecting, he syncs the rest: nothing is lost.
    let (_, synced) = connect(&bob).await;
    assert_eq!(
        synced.len() as i64,
        TOTAL,
        "sync resends from the (unmoved) delivered cursor"
    );
}

async fn idle_connections_are_closed_and_pings_keep_them_open(backend: Backend) {
    let Some(server) = TestServer::start_with(backend, |c| {
        c.gateway.idle_timeout = Duration::from_millis(1500)
    })
    .await
    else {
        return;
    };
    let alice = server.user("alice").await;
    let (mut pinging, _) = connect(&alice).await;
    let (mut silent, _) = connect(&alice).await;
    for i in 0..6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        ping(&mut pinging, i).await;
    }
    assert_eq!(error(&mut silent).await.code, "idle_timeout");
    match next(&mut silent).await {
        Err(ClientError::Closed(closed)) => assert_eq!(closed.code, Some(4001)),
        other => panic!("expected a close, got {other:?}"),
    }
    ping(&mut pinging, 99).await;
}

async fn tokens_are_checked_before_any_state_exists(backend: Backend) {
    let server = server!(backend);
    let alice = server.user("alice").await;
    let ws_url = crate::helpers::ws_url(&server.url);
    // A malformed Authorization header is refused before the upgrade too.
    for value in ["Basic YTpi", "Bearer ", "Bearer"] {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = ws_url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", value.parse().unwrap());
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401, "{value}")
            }
            other => panic!("{value}: expected 401, got {:?}", other.map(|_| ())),
        }
    }
    // A bad header token: refused with 401, no WebSocket at all.
    let forged = natter_client::Session::resume(
        server.client.clone(),
        "nat_forged".into(),
        alice.user_id(),
        alice.device_id(),
    );
    assert_problem(forged.connect().await.map(drop), 401, "unauthorized");
    // Browsers cannot set headers: the first frame authenticates.
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let auth = serde_json::json!({"type": "auth", "token": alice.token()}).to_string();
    socket.send(Message::text(auth)).await.unwrap();
    let ready: ServerFrame = match socket.next().await.unwrap().unwrap() {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("{other:?}"),
    };
    assert!(
        matches!(ready, ServerFrame::Ready { device_id, .. } if device_id == alice.device_id())
    );
    // A wrong first frame gets an error and a close, never a session.
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    socket
        .send(Message::text(r#"{"type":"auth","token":"nat_forged"}"#))
        .await
        .unwrap();
    let refused: ServerFrame = match socket.next().await.unwrap().unwrap() {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("{other:?}"),
    };
    assert!(
        matches!(refused, ServerFrame::Error(ref e) if e.code == "unauthorized"),
        "{refused:?}"
    );
    assert!(
        matches!(socket.next().await, Some(Ok(Message::Close(Some(frame)))) if u16::from(frame.code) == 1008)
    );
}

async fn shutdown_tells_clients_to_reconnect(backend: Backend) {
    let server = server!(backend);
    let alice = server.user("alice").await;
    let (mut a, _) = connect(&alice).await;
    let stopping = tokio::spawn(server.stop());
    match next(&mut a).await {
        Err(ClientError::Closed(closed)) => assert_eq!(closed.code, Some(1012)),
        other => panic!("expected a close, got {other:?}"),
    }
    stopping.await.unwrap();
}

async fn acked_messages_survive_a_restart(backend: Backend) {
    let Some(server) = TestServer::start(backend).await else {
        return;
    };
    let (alice, bob, direct) = server.direct_pair("alice", "bob").await;
    let (mut a, _) = connect(&alice).await;
    let mut acks = Vec::new();
    for i in 1..=20 {
        acks.push(send(&mut a, direct, &format!("m{i}"), &format!("body {i}")).await);
    }
    let server = server.restart().await;
    let alice = same_device(&server.client, &alice);
    let history = alice.history(direct, None, None, Some(100)).await.unwrap();
    assert_eq!(
        history.iter().map(|m| m.seq).collect::<Vec<_>>(),
        acks.iter().map(|a| a.seq).collect::<Vec<_>>()
    );
    // And the log goes on where it was.
    let (mut a, _) = connect(&alice).await;
    assert_eq!(send(&mut a, direct, "after", "x").await.seq, 21);
    let bob = same_device(&server.client, &bob);
    let (_, synced) = connect(&bob).await;
    assert_eq!(synced.len(), 21);
}
