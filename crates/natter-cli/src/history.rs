//! Showing messages: a conversation's history with the marks of my messages and what is
//! still queued, and search results. The marks are worded by `marks`; the chat screen lays
//! out its own log (`chat::log`).

use natter_client::{Device, Queued, StoredMessage};
use natter_proto::{ConversationId, UserId};
use serde_json::json;

use crate::marks::Marks;
use crate::out::Out;
use crate::text::body;

/// `natter history`: receives what is waiting (if the server answers), catches up on who
/// read my messages, prints the newest `limit` messages and my queued ones, and marks what
/// was shown as read. Away from the server it prints what the store holds; errors are the
/// store's. Under `--json`, one line per message, then one per pending send
/// (`"pending": true`).
pub async fn history(
    device: &Device,
    out: &Out,
    conversation: ConversationId,
    limit: usize,
) -> anyhow::Result<()> {
    // Away: the history here is shown, and the read mark waits in the queue.
    let online =
        device.sync().await.is_ok() && device.catch_up_receipts(conversation).await.is_ok();
    let me = device.user_id();
    let directory = device.directory().await?;
    let (kind, others) = match directory.conversation(conversation) {
        Some(details) => (
            details.summary.kind,
            details
                .members
                .iter()
                .map(|m| m.user_id)
                .filter(|&m| m != me)
                .collect(),
        ),
        None => (
            natter_proto::conversations::ConversationKind::Direct,
            Vec::new(),
        ),
    };
    let receipts = device.member_receipts(conversation, &others).await?;
    let marks = Marks {
        kind,
        others: others.len(),
        receipts: &receipts,
    };
    let messages = device.messages(conversation, limit).await?;
    print_messages(device, out, &messages, Some(&marks)).await?;
    let labels = device.directory().await?.labels();
    for item in device.queued().await? {
        if let Queued::Send {
            conversation_id,
            client_msg_id,
            text,
            ..
        } = item
            && conversation_id == conversation
        {
            out.show(
                format!("#- {}: {text} ◷ pending", natter_client::label(&labels, me)),
                json!({ "conversation_id": conversation_id, "client_msg_id": client_msg_id,
                        "sender_id": me, "text": text, "pending": true }),
            );
        }
    }
    // Shown is read: move the read cursor (the senders see a read mark).
    if let Some(last) = messages.last()
        && device.mark_read(conversation, last.seq).await?
        && online
    {
        let _ = device.sync().await;
    }
    Ok(())
}

/// Prints messages with their senders' names (fetched again, so a changed name shows), and
/// the marks of mine when `marks` is given: one line each (`#seq sender: text mark`), or one
/// JSON object each under `--json`.
pub async fn print_messages(
    device: &Device,
    out: &Out,
    messages: &[StoredMessage],
    marks: Option<&Marks<'_>>,
) -> anyhow::Result<()> {
    let mut directory = device.directory().await?;
    let senders: Vec<UserId> = messages.iter().map(|m| m.sender_id).collect();
    device.refresh_people(&mut directory, &senders).await?;
    let labels = directory.labels();
    for message in messages {
        let sender = natter_client::label(&labels, message.sender_id);
        let username = directory
            .person(message.sender_id)
            .map_or_else(|| message.sender_id.to_string(), |p| p.username.clone());
        let mine = message.sender_id == device.user_id();
        let mark = marks.filter(|_| mine).map(|m| m.mark(message.seq));
        let read_by: Option<Vec<String>> = marks.filter(|_| mine).map(|m| {
            m.readers(message.seq)
                .into_iter()
                .map(|u| natter_client::label(&labels, u))
                .collect()
        });
        let shown_mark = mark.as_deref().map(|m| format!(" {m}")).unwrap_or_default();
        out.show(
            format!("#{} {sender}: {}{shown_mark}", message.seq, body(message)),
            json!({
                "conversation_id": message.conversation_id, "seq": message.seq,
                "sender_id": message.sender_id, "sender": username, "sender_name": sender,
                "server_ts": message.server_ts, "text": message.body.as_ref().ok(),
                "unable_to_decrypt": message.body.as_ref().err().map(|r| r.code()),
                "mark": mark, "read_by": read_by,
            }),
        );
    }
    Ok(())
}
