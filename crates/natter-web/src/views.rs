//! What the app is shown, as JSON: messages, conversations and live events in the shapes the
//! screens draw (snake_case, like natter-proto's documents).

use natter_client::{ApprovalEvent, Directory, Event, Notice, StoredMessage};
use natter_proto::conversations::{ConversationDetails, ConversationKind};
use natter_proto::{ConversationId, DeviceId, UserId};
use serde::Serialize;

/// A message in this device's store.
#[derive(Serialize)]
pub(crate) struct MessageView {
    conversation_id: ConversationId,
    seq: i64,
    sender_id: UserId,
    sender_device_id: DeviceId,
    client_msg_id: String,
    server_ts: i64,
    /// The text, when this device could decrypt it.
    text: Option<String>,
    /// Why it could not (the stable code, such as `missing_key`), otherwise.
    unable_to_decrypt: Option<String>,
}

impl From<StoredMessage> for MessageView {
    fn from(message: StoredMessage) -> Self {
        let (text, unable_to_decrypt) = match message.body {
            Ok(text) => (Some(text), None),
            Err(why) => (None, Some(why.code().to_owned())),
        };
        Self {
            conversation_id: message.conversation_id,
            seq: message.seq,
            sender_id: message.sender_id,
            sender_device_id: message.sender_device_id,
            client_msg_id: message.client_msg_id,
            server_ts: message.server_ts,
            text,
            unable_to_decrypt,
        }
    }
}

/// A conversation in the list: its title as people are named here, its members and unread count.
#[derive(Serialize)]
pub(crate) struct ConversationView {
    id: ConversationId,
    kind: ConversationKind,
    title: String,
    members: Vec<MemberView>,
    unread: i64,
    last_seq: i64,
}

/// A member, with the name they are shown by.
#[derive(Serialize)]
pub(crate) struct MemberView {
    user_id: UserId,
    name: String,
}

/// Every conversation the directory holds, most recently active first.
pub(crate) fn conversations(directory: &Directory, me: UserId) -> Vec<ConversationView> {
    let labels = directory.labels();
    directory
        .conversations
        .iter()
        .map(|details: &ConversationDetails| ConversationView {
            id: details.summary.id,
            kind: details.summary.kind,
            title: natter_client::title(&labels, me, details),
            members: details
                .members
                .iter()
                .map(|m| MemberView {
                    user_id: m.user_id,
                    name: natter_client::label(&labels, m.user_id),
                })
                .collect(),
            unread: details.summary.unread,
            last_seq: details.summary.last_seq,
        })
        .collect()
}

/// A person the directory knows, with the name they are shown by.
#[derive(Serialize)]
pub(crate) struct PersonView {
    user_id: UserId,
    username: String,
    name: String,
}

/// Everyone the directory knows.
pub(crate) fn people(directory: &Directory) -> Vec<PersonView> {
    let labels = directory.labels();
    directory
        .people
        .iter()
        .map(|p| PersonView {
            user_id: p.user_id,
            username: p.username.clone(),
            name: natter_client::label(&labels, p.user_id),
        })
        .collect()
}

/// How far a member got in a conversation.
#[derive(Serialize)]
pub(crate) struct MarkView {
    pub(crate) user_id: UserId,
    pub(crate) delivered_seq: i64,
    pub(crate) read_seq: i64,
}

/// A live event, tagged by `type`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum EventView {
    Connected,
    Synced,
    Disconnected {
        reason: String,
    },
    Message(MessageView),
    Sent {
        conversation_id: ConversationId,
        client_msg_id: String,
        seq: i64,
    },
    Failed {
        client_msg_id: String,
        code: String,
    },
    Receipt(natter_proto::ws::Receipt),
    Notice {
        notice: Notice,
        text: String,
    },
    Approval(ApprovalEvent),
    Typing {
        conversation_id: ConversationId,
        user_id: UserId,
        typing: bool,
    },
}

impl From<Event> for EventView {
    fn from(event: Event) -> Self {
        match event {
            Event::Connected => Self::Connected,
            Event::Synced => Self::Synced,
            Event::Disconnected(reason) => Self::Disconnected { reason },
            Event::Message(message) => Self::Message(message.into()),
            Event::Sent {
                conversation_id,
                client_msg_id,
                seq,
            } => Self::Sent {
                conversation_id,
                client_msg_id,
                seq,
            },
            Event::Failed {
                client_msg_id,
                code,
            } => Self::Failed {
                client_msg_id,
                code,
            },
            Event::Receipt(receipt) => Self::Receipt(receipt),
            Event::Notice(notice) => Self::Notice {
                text: notice.to_string(),
                notice,
            },
            Event::Approval(step) => Self::Approval(step),
            Event::Typing {
                conversation_id,
                user_id,
                typing,
            } => Self::Typing {
                conversation_id,
                user_id,
                typing,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use natter_client::UnableToDecrypt;
    use serde_json::json;

    use super::*;

    fn stored(body: Result<String, UnableToDecrypt>) -> StoredMessage {
        StoredMessage {
            conversation_id: ConversationId::new(),
            seq: 7,
            sender_id: UserId::new(),
            sender_device_id: DeviceId::new(),
            client_msg_id: "c1".into(),
            server_ts: 1,
            body,
        }
    }

    #[test]
    fn a_message_carries_its_text_or_why_it_is_unreadable() {
        let read = serde_json::to_value(MessageView::from(stored(Ok("hi".into())))).unwrap();
        assert_eq!(
            (&read["text"], &read["unable_to_decrypt"]),
            (&json!("hi"), &json!(null))
        );
        let unreadable =
            serde_json::to_value(MessageView::from(stored(Err(UnableToDecrypt::MissingKey))))
                .unwrap();
        assert_eq!(unreadable["text"], json!(null));
        assert_eq!(unreadable["unable_to_decrypt"], json!("missing_key"));
    }

    #[test]
    fn live_events_are_tagged_by_type_with_their_fields_flat() {
        let message =
            serde_json::to_value(EventView::from(Event::Message(stored(Ok("hi".into()))))).unwrap();
        assert_eq!(
            (&message["type"], &message["seq"]),
            (&json!("message"), &json!(7))
        );
        let failed = serde_json::to_value(EventView::from(Event::Failed {
            client_msg_id: "c1".into(),
            code: "forbidden".into(),
        }))
        .unwrap();
        assert_eq!(
            failed,
            json!({"type": "failed", "client_msg_id": "c1", "code": "forbidden"})
        );
        let approval =
            serde_json::to_value(EventView::from(Event::Approval(ApprovalEvent::Done {
                flow_id: "f".into(),
                device_id: DeviceId::new(),
            })))
            .unwrap();
        assert_eq!(
            (&approval["type"], &approval["step"]),
            (&json!("approval"), &json!("done"))
        );
    }
}
