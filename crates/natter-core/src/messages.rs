//! The sender and message services: validate and append a message, then fan it out; move
//! delivered/read cursors and push receipts; relay to-device payloads; typing.
//!
//! The durable append is the acceptance point: a message is acked only after it is committed,
//! and fan-out happens after that without waiting on any recipient.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use natter_proto::codes;
use natter_proto::conversations::ConversationKind;
use natter_proto::limits::{
    CIPHERTEXT_MAX, CLIENT_MSG_ID_MAX, TO_DEVICE_BATCH_MAX, TO_DEVICE_PAYLOAD_MAX,
};
use natter_proto::ws::{Ack, Message, Receipt, SendMessage, ServerFrame, ToDeviceOut};
use natter_proto::{ConversationId, DeviceId, UserId};

use crate::credentials::Auth;
use crate::fanout::{Bus, Outbound, encode};
use crate::member_lists::MemberLists;
use crate::ratelimit::{Kind, RateLimits};
use crate::receipts::Receipts;
use crate::service_error::ServiceError;
use crate::store::{NewMessage, SendPlan, Store};
use tokio::sync::Semaphore;

/// The `kind` under which `natter_rate_limited_total` counts sends refused because the node is
/// busy.
pub const NODE_SENDS: &str = "node_sends";

/// How many sends a node works on at once, and what it tells the sender past that.
#[derive(Clone, Copy, Debug)]
pub struct Admission {
    /// Sends worked on at once; one more is refused as busy.
    pub sends_in_flight: usize,
    /// The base wait told to a send refused as busy (the session grows it).
    pub busy_retry: Duration,
}

/// The messaging services over a store and a bus.
#[derive(Clone)]
pub struct Messenger {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    limits: Arc<RateLimits>,
    receipts: Arc<Receipts>,
    member_lists: Arc<MemberLists>,
    /// Admission for sends: one permit per send being worked on.
    in_flight: Arc<Semaphore>,
    /// The base wait for a send refused for want of a permit (the session grows it).
    busy_retry: Duration,
}

fn not_member() -> ServiceError {
    ServiceError::Denied {
        code: codes::NOT_MEMBER,
        detail: "you are not a member of this conversation".into(),
    }
}

impl Messenger {
    /// Messaging over `store`, fanning out through `bus`.
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        limits: Arc<RateLimits>,
        admission: Admission,
    ) -> Self {
        Self {
            receipts: Receipts::new(Arc::clone(&bus), Arc::clone(&store)),
            store,
            bus,
            limits,
            member_lists: Arc::default(),
            in_flight: Arc::new(Semaphore::new(
                admission.sends_in_flight.clamp(1, Semaphore::MAX_PERMITS),
            )),
            busy_retry: admission.busy_retry,
        }
    }

    /// Charges one send of `bytes` to the device's and the user's allowances, so a user
    /// gains nothing by sending from several devices.
    async fn charge(&self, auth: Auth, bytes: usize) -> Result<(), ServiceError> {
        let (device, user) = (auth.device_id.to_string(), auth.user_id.to_string());
        self.limits
            .charge(&[
                (Kind::DeviceMessages, &device, 1.0),
                (Kind::UserMessages, &user, 1.0),
                (Kind::UserBytes, &user, bytes as f64),
            ])
            .await
    }

    /// Charges one checked cursor move or sync to the device's `device_events` allowance.
    ///
    /// # Errors
    /// `RateLimited` past it.
    pub async fn charge_event(&self, auth: Auth) -> Result<(), ServiceError> {
        self.charge_device(Kind::DeviceEvents, auth).await
    }

    /// Charges one action of `kind` to the device's allowance.
    async fn charge_device(&self, kind: Kind, auth: Auth) -> Result<(), ServiceError> {
        let device = auth.device_id.to_string();
        self.limits.check(kind, &device, 1.0).await
    }

    /// What sending to `conversation` involves, if `user` is a current member (and, in a direct
    /// conversation, still connected); else `not_member` (or `not_connected`).
    async fn plan(
        &self,
        conversation: ConversationId,
        user: UserId,
    ) -> Result<SendPlan, ServiceError> {
        let plan = self
            .member_lists
            .plan(self.store.as_ref(), conversation, user)
            .await?;
        match plan {
            Some(plan) if plan.sender_suspended => Err(ServiceError::Suspended),
            // A direct conversation needs the sender's side of the connection to be accepted.
            Some(plan)
                if plan.kind == ConversationKind::Direct
                    && plan.is_member
                    && !(plan.connected && plan.members() == 2) =>
            {
                Err(ServiceError::Denied {
                    code: codes::NOT_CONNECTED,
                    detail: "you are no longer connected to this user".into(),
                })
            }
            Some(plan) if plan.is_member => Ok(plan),
            _ => Err(not_member()),
        }
    }

    /// Checks, stores and fans out a message; the ack says where it was stored. A resend of a
    /// stored (device, client_msg_id) gets the first ack again and stores nothing.
    ///
    /// # Errors
    /// Malformed or oversized; not a member; not connected (direct); the store is down.
    pub async fn send(
        &self,
        auth: Auth,
        message: &SendMessage,
        now: i64,
    ) -> Result<Ack, ServiceError> {
        check_send(message)?;
        // A node that already works on all the sends it can says so at once: the sender retries
        // shortly, instead of every send waiting longer behind the others.
        let Ok(_admitted) = self.in_flight.try_acquire() else {
            metrics::counter!("natter_rate_limited_total", "kind" => NODE_SENDS).increment(1);
            return Err(ServiceError::Busy {
                retry_after: self.busy_retry,
            });
        };
        let conversation = message.conversation_id;
        // Independent round trips (Redis in a cluster, the store): at the same time.
        let (charged, plan) = tokio::join!(
            self.charge(auth, message.ciphertext.len()),
            self.plan(conversation, auth.user_id)
        );
        charged?;
        let plan = plan?;
        let stored = Message {
            conversation_id: conversation,
            seq: 0,
            sender_id: auth.user_id,
            sender_device_id: auth.device_id,
            client_msg_id: message.client_msg_id.clone(),
            server_ts: now,
            client_ts: message.client_ts,
            ciphertext: message.ciphertext.clone(),
        };
        // Fan-out starts from the commit, in commit order: recipients get a conversation's
        // messages in seq order and need not fetch the ones that overtook each other.
        let on_stored = {
            let (bus, recipients, stored) = (
                Arc::clone(&self.bus),
                plan.recipients.clone(),
                stored.clone(),
            );
            Box::new(move |seq| publish(bus.as_ref(), &recipients, Message { seq, ..stored }))
        };
        let appended = self
            .store
            .append(
                &NewMessage {
                    conversation_id: conversation,
                    sender_id: auth.user_id,
                    sender_device: auth.device_id,
                    client_msg_id: &message.client_msg_id,
                    client_ts: message.client_ts,
                    ciphertext: &message.ciphertext,
                    server_ts: now,
                },
                on_stored,
            )
            .await?;
        let ack = Ack {
            client_msg_id: message.client_msg_id.clone(),
            conversation_id: appended.conversation_id,
            seq: appended.seq,
            server_ts: appended.server_ts,
        };
        // A resend is published again too: if the node died between append and fan-out the
        // first time, this is when recipients hear of it; their watermarks drop duplicates.
        if appended.duplicate && appended.conversation_id == conversation {
            let first = Message {
                seq: appended.seq,
                server_ts: appended.server_ts,
                ..stored
            };
            publish(self.bus.as_ref(), &plan.recipients, first);
        }
        if !appended.duplicate {
            let kind = match plan.kind {
                ConversationKind::Direct => "direct",
                ConversationKind::Room => "room",
            };
            metrics::counter!("natter_messages_accepted_total", "kind" => kind).increment(1);
        }
        tracing::debug!(
            conversation.id = %ack.conversation_id,
            seq = ack.seq,
            bytes = message.ciphertext.len(),
            recipients = plan.recipients.len(),
            duplicate = appended.duplicate,
            "message accepted"
        );
        Ok(ack)
    }

    /// Moves the caller's device cursors forward (`read` implies `delivered`) and pushes a
    /// receipt to the senders of the newly covered messages and to the caller's other devices.
    /// `before` is the device's (delivered, read) as last stored; `sent_here` is the highest seq
    /// the caller's connection sent it in this conversation, if it knows the conversation (up
    /// to there the move needs no check). Returns the new cursors.
    ///
    /// # Errors
    /// Not a member (now or before); a seq past the end of the conversation; past the device's
    /// rate of the moves it must check (beyond what the connection sent).
    pub async fn move_cursor(
        &self,
        auth: Auth,
        conversation: ConversationId,
        before: (i64, i64),
        (delivered, read): (i64, i64),
        sent_here: Option<i64>,
    ) -> Result<(i64, i64), ServiceError> {
        let furthest = delivered.max(read);
        if delivered < 0 || read < 0 {
            return Err(ServiceError::Invalid(format!(
                "seq {} is negative",
                delivered.min(read)
            )));
        }
        let within_sent = sent_here.is_some_and(|sent| furthest <= sent);
        if within_sent && furthest <= before.0 && read <= before.1 {
            return Ok(before); // Nothing moves: no write.
        }
        // Moves over what this connection sent are bounded by its messages, however a client
        // reports them (one frame per message, say); others cost a check and are limited.
        if !within_sent {
            self.charge_event(auth).await?;
            let last_seq = self
                .store
                .cursor_bound(conversation, auth.user_id)
                .await?
                .ok_or_else(not_member)?;
            if furthest > last_seq {
                return Err(ServiceError::Invalid(format!(
                    "seq {furthest} is not in this conversation (0..={last_seq})"
                )));
            }
        }
        let after = self
            .store
            .move_cursor(
                auth.device_id,
                auth.user_id,
                conversation,
                delivered.max(read),
                read,
            )
            .await?;
        if after != before {
            tracing::debug!(
                conversation.id = %conversation,
                delivered_seq = after.0,
                read_seq = after.1,
                event = if after.1 != before.1 { "read" } else { "delivered" },
                "cursor moved"
            );
            // The newly covered messages: from where read was, if it moved (it trails
            // delivered), else from where delivered was.
            let from = if after.1 != before.1 {
                before.1
            } else {
                before.0
            };
            let covered = (from, after.0);
            let receipt = Receipt {
                conversation_id: conversation,
                user_id: auth.user_id,
                device_id: auth.device_id,
                delivered_seq: after.0,
                read_seq: after.1,
            };
            self.receipts.push(covered, receipt).await;
        }
        Ok(after)
    }

    /// Stores opaque payloads for devices and pushes them to the ones online. A device may
    /// write to its own user's devices, connections' devices, and co-members' devices.
    ///
    /// # Errors
    /// Too many or too large; an unknown device, or one the sender may not reach (nothing is
    /// stored); `inbox_full` naming the devices whose inboxes were full (the rest is stored).
    pub async fn to_device(
        &self,
        auth: Auth,
        messages: &[ToDeviceOut],
        now: i64,
    ) -> Result<usize, ServiceError> {
        if messages.len() > TO_DEVICE_BATCH_MAX {
            return Err(ServiceError::TooLarge(format!(
                "at most {TO_DEVICE_BATCH_MAX} to-device payloads per frame"
            )));
        }
        self.charge(auth, messages.iter().map(|m| m.payload.len()).sum())
            .await?;
        // Each user is checked once, however many of their devices the frame addresses.
        let mut reachable_users = HashSet::new();
        for message in messages {
            if message.payload.is_empty() || message.payload.len() > TO_DEVICE_PAYLOAD_MAX {
                return Err(ServiceError::TooLarge(format!(
                    "a to-device payload has 1 to {TO_DEVICE_PAYLOAD_MAX} bytes"
                )));
            }
            check_no_nul("a to-device payload", &message.payload)?;
            let owner = self.store.device_owner(message.device_id).await?;
            let reachable = owner == Some(message.user_id)
                && (reachable_users.contains(&message.user_id)
                    || crate::visibility::can_see(
                        self.store.as_ref(),
                        auth.user_id,
                        message.user_id,
                    )
                    .await?);
            if !reachable {
                return Err(ServiceError::NotFound(
                    "no such device, or you may not reach it",
                ));
            }
            reachable_users.insert(message.user_id);
        }
        let items: Vec<(DeviceId, &str)> = messages
            .iter()
            .map(|m| (m.device_id, m.payload.as_str()))
            .collect();
        let stored = self
            .store
            .push_inbox(auth.user_id, auth.device_id, &items, now)
            .await?;
        let mut full = Vec::new();
        for (message, item) in messages.iter().zip(stored) {
            let Some(item) = item else {
                full.push(message.device_id.to_string());
                continue;
            };
            let seq = item.seq;
            let frame = encode(&ServerFrame::ToDevice(item));
            self.bus.publish_to_device(
                message.user_id,
                message.device_id,
                Outbound::ToDevice { seq, frame },
            );
        }
        if !full.is_empty() {
            full.dedup();
            return Err(ServiceError::Denied {
                code: codes::INBOX_FULL,
                detail: format!(
                    "not stored for {}: too many payloads wait there (from you, or in all); \
                     the rest of the frame was",
                    full.join(", ")
                ),
            });
        }
        Ok(messages.len())
    }

    /// Tells the other members' devices the caller is (not) typing.
    ///
    /// # Errors
    /// Not a member; past the device's typing rate.
    pub async fn typing(
        &self,
        auth: Auth,
        conversation: ConversationId,
        typing: bool,
    ) -> Result<(), ServiceError> {
        self.charge_device(Kind::DeviceTyping, auth).await?;
        let plan = self.plan(conversation, auth.user_id).await?;
        let frame = encode(&ServerFrame::Typing {
            conversation_id: conversation,
            user_id: auth.user_id,
            typing,
        });
        self.bus.publish_to_users(
            &plan.recipients,
            Some(auth.device_id),
            Outbound::Frame {
                kind: "typing",
                frame,
            },
        );
        Ok(())
    }
}

/// Fans a stored message out to the online devices of `recipients`, except the sending device.
fn publish(bus: &dyn Bus, recipients: &[UserId], message: Message) {
    let (conversation_id, seq, server_ts, sender_device) = (
        message.conversation_id,
        message.seq,
        message.server_ts,
        message.sender_device_id,
    );
    let event = Outbound::Message {
        conversation_id,
        seq,
        server_ts,
        remote: false,
        frame: encode(&ServerFrame::Message(message)),
    };
    bus.publish_to_users(recipients, Some(sender_device), event);
}

/// Checks a `send` frame's own fields: its `client_msg_id`, and a ciphertext of 1 to
/// [`CIPHERTEXT_MAX`] bytes without U+0000.
///
/// # Errors
/// [`ServiceError::Invalid`] or [`ServiceError::TooLarge`] saying which.
pub fn check_send(message: &SendMessage) -> Result<(), ServiceError> {
    check_client_msg_id(&message.client_msg_id)?;
    if message.ciphertext.is_empty() {
        return Err(ServiceError::Invalid("the ciphertext is empty".into()));
    }
    check_no_nul("the ciphertext", &message.ciphertext)?;
    if message.ciphertext.len() > CIPHERTEXT_MAX {
        return Err(ServiceError::TooLarge(format!(
            "the ciphertext is {} bytes; at most {CIPHERTEXT_MAX} are allowed (1,000 characters of text)",
            message.ciphertext.len()
        )));
    }
    Ok(())
}

/// Refuses text with U+0000 in it, which PostgreSQL cannot store (opaque text is otherwise
/// the client's business).
fn check_no_nul(what: &str, text: &str) -> Result<(), ServiceError> {
    if text.contains('\0') {
        return Err(ServiceError::Invalid(format!(
            "{what} contains U+0000, which cannot be stored"
        )));
    }
    Ok(())
}

/// Checks a `client_msg_id`: 1 to `CLIENT_MSG_ID_MAX` printable ASCII characters.
fn check_client_msg_id(id: &str) -> Result<(), ServiceError> {
    if id.is_empty() || id.len() > CLIENT_MSG_ID_MAX || !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ServiceError::Invalid(format!(
            "client_msg_id has 1 to {CLIENT_MSG_ID_MAX} printable ASCII characters"
        )));
    }
    Ok(())
}
