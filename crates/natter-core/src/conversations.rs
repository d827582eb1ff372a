//! The conversation service: direct conversations, rooms and their members, history,
//! per-message receipts.
//!
//! # Who may do what
//! - A direct conversation exists between two users with an accepted connection; either may
//!   open it, and messages need the connection to still be accepted (a block ends it).
//! - Anyone may create a room; its first members, and anyone added later, must be accepted
//!   connections of whoever adds them. A room has 2 to 1,000 members.
//! - Only the room's owner adds or removes members; any member may leave. When the owner
//!   leaves, the longest-standing member becomes owner.
//! - Members read the history from when they joined; after leaving, up to when they left.
//!   Messages from users a member blocks are hidden from them.

use std::collections::HashSet;

use natter_proto::codes;
use natter_proto::conversations::{
    ConversationDetails, ConversationKind, Member, MessageReceipts, Role,
};
use natter_proto::limits::{PAGE_MAX, ROOM_MEMBERS_MAX, ROOM_NAME_MAX};
use natter_proto::ws::Message;
use natter_proto::{ConversationId, UserId};

use crate::credentials::Auth;
use crate::service_error::ServiceError;
use crate::store::{MemberRecord, Store, StoreError};

fn not_member() -> ServiceError {
    ServiceError::NotFound("no such conversation, or you are not a member")
}

/// The users among `candidates` who are not `user`'s accepted connections.
async fn strangers(
    store: &dyn Store,
    user: UserId,
    candidates: &[UserId],
) -> Result<Vec<UserId>, ServiceError> {
    let connected = store.accepted_among(user, candidates).await?;
    Ok(candidates
        .iter()
        .copied()
        .filter(|c| !connected.contains(c))
        .collect())
}

/// Refuses with `not_connected` when there are `strangers`: members to be who are not the
/// caller's connections.
fn check_connected(strangers: &[UserId]) -> Result<(), ServiceError> {
    match strangers.first() {
        None => Ok(()),
        Some(first) => Err(ServiceError::Denied {
            code: codes::NOT_CONNECTED,
            detail: format!(
                "you can only add your connections; {first} is not one ({} in all)",
                strangers.len()
            ),
        }),
    }
}

/// Opens (or finds) the direct conversation with `peer`.
///
/// # Errors
/// Not connected to `peer`.
pub async fn open_direct(
    store: &dyn Store,
    auth: Auth,
    peer: UserId,
    now: i64,
) -> Result<ConversationDetails, ServiceError> {
    if peer == auth.user_id {
        return Err(ServiceError::Invalid(
            "a direct conversation needs another user".into(),
        ));
    }
    check_connected(&strangers(store, auth.user_id, &[peer]).await?)?;
    let id = store.direct_conversation(auth.user_id, peer, now).await?;
    details(store, auth.user_id, id).await
}

/// Creates a room owned by the caller.
///
/// # Errors
/// A bad name; no other member; more than 1,000 members; a member who is not a connection.
pub async fn create_room(
    store: &dyn Store,
    auth: Auth,
    name: &str,
    members: &[UserId],
    now: i64,
) -> Result<ConversationDetails, ServiceError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > ROOM_NAME_MAX || name.chars().any(char::is_control)
    {
        return Err(ServiceError::Invalid(format!(
            "a room name has 1 to {ROOM_NAME_MAX} characters and no control characters"
        )));
    }
    let mut seen = HashSet::new();
    let others: Vec<UserId> = members
        .iter()
        .copied()
        .filter(|m| *m != auth.user_id && seen.insert(*m))
        .collect();
    if others.is_empty() {
        return Err(ServiceError::Invalid(
            "a room needs at least one other member".into(),
        ));
    }
    if others.len() + 1 > ROOM_MEMBERS_MAX {
        return Err(room_full(others.len() + 1));
    }
    check_connected(&strangers(store, auth.user_id, &others).await?)?;
    let id = ConversationId::new();
    store
        .create_room(id, name, auth.user_id, &others, now)
        .await?;
    details(store, auth.user_id, id).await
}

/// The `room_full` refusal for a room that would pass the member limit.
fn room_full(size: usize) -> ServiceError {
    ServiceError::Denied {
        code: codes::ROOM_FULL,
        detail: format!("a room has at most {ROOM_MEMBERS_MAX} members; this would make {size}"),
    }
}

/// The caller's current membership of a room they own.
async fn owned_room(store: &dyn Store, auth: Auth, id: ConversationId) -> Result<(), ServiceError> {
    let record = store.conversation(id).await?.ok_or_else(not_member)?;
    match store.member(id, auth.user_id).await? {
        Some(MemberRecord {
            left_seq: None,
            role,
            ..
        }) => {
            if record.kind == ConversationKind::Direct {
                return Err(ServiceError::Invalid(
                    "a direct conversation always has exactly its two users".into(),
                ));
            }
            if role != Role::Owner {
                return Err(ServiceError::Denied {
                    code: codes::NOT_OWNER,
                    detail: "only the room's owner can do this".into(),
                });
            }
            Ok(())
        }
        _ => Err(not_member()),
    }
}

/// Adds the caller's connections to a room the caller owns.
///
/// # Errors
/// Not the owner; a user who is not a connection; the room would exceed 1,000 members.
pub async fn add_members(
    store: &dyn Store,
    auth: Auth,
    id: ConversationId,
    users: &[UserId],
    now: i64,
) -> Result<ConversationDetails, ServiceError> {
    owned_room(store, auth, id).await?;
    if users.is_empty() || users.len() > ROOM_MEMBERS_MAX {
        return Err(ServiceError::Invalid(format!(
            "add 1 to {ROOM_MEMBERS_MAX} users at a time"
        )));
    }
    let others: Vec<UserId> = users
        .iter()
        .copied()
        .filter(|u| *u != auth.user_id)
        .collect();
    check_connected(&strangers(store, auth.user_id, &others).await?)?;
    match store.add_members(id, &others, ROOM_MEMBERS_MAX, now).await {
        Err(StoreError::Conflict(_)) => {
            let current = store.members(id).await?.len();
            return Err(room_full(current + others.len()));
        }
        other => other?,
    };
    details(store, auth.user_id, id).await
}

/// Removes a member (owner only), or the caller themselves (leaving).
///
/// # Errors
/// Not the owner; the user is not a member; a direct conversation.
pub async fn remove_member(
    store: &dyn Store,
    auth: Auth,
    id: ConversationId,
    user: UserId,
) -> Result<(), ServiceError> {
    if user == auth.user_id {
        // Outsiders learn nothing of the conversation, not even its kind.
        let member = store.member(id, user).await?;
        if member.is_none_or(|m| m.left_seq.is_some()) {
            return Err(not_member());
        }
        let record = store.conversation(id).await?.ok_or_else(not_member)?;
        if record.kind == ConversationKind::Direct {
            return Err(ServiceError::Invalid(
                "you cannot leave a direct conversation; remove the connection instead".into(),
            ));
        }
    } else {
        owned_room(store, auth, id).await?;
    }
    if !store.remove_member(id, user).await? {
        return Err(ServiceError::NotFound("this user is not a member"));
    }
    Ok(())
}

/// A conversation the caller is a member of, with its members.
///
/// # Errors
/// Not a current member.
pub async fn details(
    store: &dyn Store,
    user: UserId,
    id: ConversationId,
) -> Result<ConversationDetails, ServiceError> {
    let summary = store
        .conversation_of(user, id)
        .await?
        .ok_or_else(not_member)?;
    let members = store
        .members(id)
        .await?
        .into_iter()
        .map(|m| Member {
            user_id: m.user_id,
            role: m.role,
        })
        .collect();
    Ok(ConversationDetails { summary, members })
}

/// A page of history, oldest first: after `after` (forward) or before `before` (backward,
/// the default: the newest messages).
///
/// # Errors
/// Never a member.
pub async fn history(
    store: &dyn Store,
    user: UserId,
    id: ConversationId,
    after: Option<i64>,
    before: Option<i64>,
    limit: Option<usize>,
) -> Result<Vec<Message>, ServiceError> {
    if store.member(id, user).await?.is_none() {
        return Err(not_member());
    }
    let limit = page_limit(limit)?;
    Ok(match (after, before) {
        (Some(after), before) => {
            store
                .messages_after(
                    id,
                    user,
                    after,
                    before.map_or(i64::MAX, |b| b.saturating_sub(1)),
                    limit,
                )
                .await?
        }
        (None, before) => {
            let mut page = store
                .messages_before(id, user, before.unwrap_or(i64::MAX), limit)
                .await?;
            page.reverse();
            page
        }
    })
}

/// How far one message got.
///
/// # Errors
/// Never a member; no such message (or not visible to the caller).
pub async fn receipts(
    store: &dyn Store,
    user: UserId,
    id: ConversationId,
    seq: i64,
) -> Result<MessageReceipts, ServiceError> {
    let (after, before) = (seq.saturating_sub(1), seq.saturating_add(1));
    let visible = history(store, user, id, Some(after), Some(before), Some(1)).await?;
    if visible.is_empty() {
        return Err(ServiceError::NotFound("no such message"));
    }
    store
        .receipts(id, seq)
        .await?
        .ok_or(ServiceError::NotFound("no such message"))
}

/// A page size asked for: `limit` if it is 1 to [`PAGE_MAX`], 100 if absent.
///
/// # Errors
/// `limit` is out of that range.
pub fn page_limit(limit: Option<usize>) -> Result<usize, ServiceError> {
    match limit.unwrap_or(100) {
        limit @ 1..=PAGE_MAX => Ok(limit),
        limit => Err(ServiceError::Invalid(format!(
            "limit must be 1 to {PAGE_MAX}; it is {limit}"
        ))),
    }
}

/// Where a page of [`undelivered`] messages ended: everything up to `seq` in `conversation`,
/// and in every conversation whose id sorts before it, was listed. Written
/// `<conversation id>.<seq>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UndeliveredCursor {
    /// The conversation the page ended in.
    pub conversation: ConversationId,
    /// The last seq looked at there.
    pub seq: i64,
}

impl std::fmt::Display for UndeliveredCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.conversation, self.seq)
    }
}

impl std::str::FromStr for UndeliveredCursor {
    type Err = ServiceError;

    fn from_str(text: &str) -> Result<Self, ServiceError> {
        let invalid =
            || ServiceError::Invalid(format!("not a cursor from a previous page: {text}"));
        let (conversation, seq) = text.split_once('.').ok_or_else(invalid)?;
        Ok(Self {
            conversation: conversation.parse().map_err(|_| invalid())?,
            seq: seq.parse().map_err(|_| invalid())?,
        })
    }
}

/// What a sync would send this device, a page at a time: the messages past its delivered
/// cursors in every conversation, except those it sent itself, by conversation id and oldest
/// first in each, at most `limit` (default 100), after `after` (a previous page's cursor).
/// Returns the page, and where the next one starts if there may be more.
///
/// # Errors
/// The store fails.
pub async fn undelivered(
    store: &dyn Store,
    auth: Auth,
    after: Option<UndeliveredCursor>,
    limit: Option<usize>,
) -> Result<(Vec<Message>, Option<UndeliveredCursor>), ServiceError> {
    let limit = page_limit(limit)?;
    let mut starts = store.cursor_starts(auth.device_id, auth.user_id).await?;
    starts.sort_by_key(|start| start.conversation_id);
    let mut messages = Vec::new();
    for start in starts {
        let conversation = start.conversation_id;
        let mut seen = match after {
            Some(after) if conversation < after.conversation => continue,
            Some(after) if conversation == after.conversation => start.delivered_seq.max(after.seq),
            _ => start.delivered_seq,
        };
        // The device's own messages are skipped (its ack was its copy), so pages are read
        // whole until `limit` others are found.
        while seen < start.last_seq {
            let page = store
                .messages_after(conversation, auth.user_id, seen, start.last_seq, PAGE_MAX)
                .await?;
            let whole = page.len() == PAGE_MAX;
            for message in page {
                seen = message.seq;
                if message.sender_device_id != auth.device_id {
                    messages.push(message);
                    if messages.len() == limit {
                        let next = UndeliveredCursor {
                            conversation,
                            seq: seen,
                        };
                        return Ok((messages, Some(next)));
                    }
                }
            }
            if !whole {
                break;
            }
        }
    }
    Ok((messages, None))
}
