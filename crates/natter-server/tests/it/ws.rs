//! WebSocket helpers for the messaging tests.

use natter_client::{ClientError, Connection, Session};
use natter_proto::ws::{
    Ack, ClientFrame, ErrorFrame, Message, Receipt, ServerFrame, ToDeviceIn, ToDeviceOut,
};
use natter_proto::{ConversationId, DeviceId};

/// The next frame, or a panic if none comes in time.
pub async fn next(connection: &mut Connection) -> Result<ServerFrame, ClientError> {
    tokio::time::timeout(crate::helpers::PATIENCE, connection.next())
        .await
        .expect("no frame within the patience window")
}

/// Reads until the server closes the connection: the frames before the close, and the close.
pub async fn closed(connection: &mut Connection) -> (Vec<ServerFrame>, natter_client::Closed) {
    let mut before = Vec::new();
    loop {
        match next(connection).await {
            Ok(frame) => before.push(frame),
            Err(ClientError::Closed(closed)) => return (before, closed),
            Err(other) => panic!("expected a close, got {other:?}"),
        }
    }
}

/// Sends a `typing` notice.
pub async fn typing(connection: &mut Connection, conversation_id: ConversationId, typing: bool) {
    connection
        .send(&ClientFrame::Typing {
            conversation_id,
            typing,
        })
        .await
        .unwrap();
}

/// Connects a device and reads through its sync: returns the connection and what it synced.
pub async fn connect(session: &Session) -> (Connection, Vec<Message>) {
    let (connection, messages, _) = connect_with_inbox(session).await;
    (connection, messages)
}

/// Like [`connect`], also returning the to-device payloads the sync sent.
pub async fn connect_with_inbox(session: &Session) -> (Connection, Vec<Message>, Vec<ToDeviceIn>) {
    // Straight to the session's node (not through the gateway): cluster tests pin nodes.
    let mut connection = session.connect_direct().await.expect("connecting");
    assert!(matches!(
        next(&mut connection).await.unwrap(),
        ServerFrame::Ready { .. }
    ));
    let (mut synced, mut inbox) = (Vec::new(), Vec::new());
    loop {
        match next(&mut connection).await.unwrap() {
            ServerFrame::Message(message) => synced.push(message),
            ServerFrame::ToDevice(item) => inbox.push(item),
            // A device logged in or uploaded keys meanwhile (told to every connection of its
            // user and its contacts).
            ServerFrame::DeviceListChanged { .. } => {}
            ServerFrame::Synced {
                messages,
                to_device,
            } => {
                assert_eq!(
                    (messages as usize, to_device as usize),
                    (synced.len(), inbox.len())
                );
                return (connection, synced, inbox);
            }
            other => panic!("unexpected frame during sync: {other:?}"),
        }
    }
}

/// Reads frames until one matches `pick`; receipts, typing, device-list changes and pongs in
/// between are skipped, anything else is a test failure.
pub async fn until<T>(
    connection: &mut Connection,
    mut pick: impl FnMut(&ServerFrame) -> Option<T>,
) -> T {
    loop {
        let frame = next(connection).await.expect("connection open");
        if let Some(found) = pick(&frame) {
            return found;
        }
        assert!(
            matches!(
                frame,
                ServerFrame::Receipt(_)
                    | ServerFrame::Receipts { .. }
                    | ServerFrame::Typing { .. }
                    | ServerFrame::DeviceListChanged { .. }
                    | ServerFrame::Pong { .. }
            ),
            "unexpected frame: {frame:?}"
        );
    }
}

/// The next message.
pub async fn message(connection: &mut Connection) -> Message {
    until(connection, |f| match f {
        ServerFrame::Message(m) => Some(m.clone()),
        _ => None,
    })
    .await
}

/// The next to-device payload pushed live (receipts, typing and pongs before it skipped).
pub async fn to_device_item(connection: &mut Connection) -> ToDeviceIn {
    until(connection, |f| match f {
        ServerFrame::ToDevice(item) => Some(item.clone()),
        _ => None,
    })
    .await
}

/// The next receipt of `device`: a `receipt` frame for it, or its entry in a `receipts` frame
/// (moves in a busy conversation are gathered, the latest per device). Receipts of other
/// devices before it are skipped.
pub async fn receipt_of(connection: &mut Connection, device: DeviceId) -> Receipt {
    until(connection, |f| {
        receipts_in(f).find(|r| r.device_id == device).cloned()
    })
    .await
}

/// The receipts a frame carries, in either shape (none for other frames).
pub fn receipts_in(frame: &ServerFrame) -> impl Iterator<Item = &Receipt> {
    let receipts: &[Receipt] = match frame {
        ServerFrame::Receipt(receipt) => std::slice::from_ref(receipt),
        ServerFrame::Receipts { receipts } => receipts,
        _ => &[],
    };
    receipts.iter()
}

/// The next error frame.
pub async fn error(connection: &mut Connection) -> ErrorFrame {
    until(connection, |f| match f {
        ServerFrame::Error(e) => Some(e.clone()),
        _ => None,
    })
    .await
}

/// Sends a message and waits for its answer: the ack, or the (first) refusal.
async fn answer(
    connection: &mut Connection,
    conversation: ConversationId,
    id: &str,
    body: &str,
) -> Result<Ack, ErrorFrame> {
    connection
        .send_message(conversation, id, body)
        .await
        .expect("sending");
    until(connection, |f| match f {
        ServerFrame::Ack(ack) if ack.client_msg_id == id => Some(Ok(ack.clone())),
        ServerFrame::Error(e) => Some(Err(e.clone())),
        _ => None,
    })
    .await
}

/// Sends a message and waits for its ack.
pub async fn send(
    connection: &mut Connection,
    conversation: ConversationId,
    id: &str,
    body: &str,
) -> Ack {
    answer(connection, conversation, id, body)
        .await
        .unwrap_or_else(|e| panic!("send {id} refused: {e:?}"))
}

/// Sends a message that must be refused with `code`; the refusal, which names the message.
pub async fn refused(
    connection: &mut Connection,
    conversation: ConversationId,
    id: &str,
    body: &str,
    code: &str,
) -> ErrorFrame {
    let refusal = answer(connection, conversation, id, body)
        .await
        .expect_err("the send is refused");
    assert_eq!(
        (refusal.code.as_str(), refusal.client_msg_id.as_deref()),
        (code, Some(id)),
        "{refusal:?}"
    );
    refusal
}

/// Pings and waits for the pong: proves the connection is alive and everything sent before
/// was handled.
pub async fn ping(connection: &mut Connection, nonce: u64) {
    connection
        .send(&natter_proto::ws::ClientFrame::Ping { nonce: Some(nonce) })
        .await
        .unwrap();
    until(connection, |f| {
        matches!(f, ServerFrame::Pong { nonce: Some(n) } if *n == nonce).then_some(())
    })
    .await;
}

/// A `to_device` frame carrying `payload` to `to`'s device.
pub fn to_device(to: &Session, payload: &str) -> ClientFrame {
    ClientFrame::ToDevice {
        messages: vec![ToDeviceOut {
            user_id: to.user_id(),
            device_id: to.device_id(),
            payload: payload.into(),
        }],
    }
}

/// Sends a to-device payload from `from` to `to_session`'s device and reads `to` until it
/// arrives: a FIFO marker, since live events for a connection all go through its one queue, so
/// whatever was published to it before is read first. Returns the receipts, typing and pongs
/// read before it; a message among them fails the test.
pub async fn marker(
    from: &mut Connection,
    to_session: &Session,
    to: &mut Connection,
) -> Vec<ServerFrame> {
    from.send(&to_device(to_session, "marker")).await.unwrap();
    before_marker(to).await
}

/// [`marker`] sent by a connection to its own device: everything published to it so far has
/// been read. (A pong is no such proof: frames from the client are answered before queued
/// events.)
pub async fn drained(live: &mut Connection, me: &Session) -> Vec<ServerFrame> {
    live.send(&to_device(me, "marker")).await.unwrap();
    before_marker(live).await
}

/// Reads until a to-device payload; see [`marker`].
async fn before_marker(to: &mut Connection) -> Vec<ServerFrame> {
    let mut before = Vec::new();
    loop {
        match next(to).await.expect("connection open") {
            ServerFrame::ToDevice(_) => return before,
            frame @ (ServerFrame::Receipt(_)
            | ServerFrame::Receipts { .. }
            | ServerFrame::Typing { .. }
            | ServerFrame::Pong { .. }) => before.push(frame),
            other => panic!("unexpected frame before the marker: {other:?}"),
        }
    }
}
