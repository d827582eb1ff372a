//! The member lists of big rooms, kept in memory so a post does not read every member.
//!
//! A post needs the room's current members minus those who block the sender. Read from the
//! store that is a thousand rows per post in a 1,000-member room (docs/benchmarks.md). Here a
//! room of at least [`LISTED_FROM`] members keeps its list together with the room's members
//! version, which every membership change bumps in the same transaction; a post then reads one
//! small row set ([`RoomCheck`]: the version, the sender's membership and suspension, who blocks
//! the sender) and uses the list while the version matches. The version lives in the store, so
//! this holds across cluster nodes without any invalidation message.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use natter_proto::conversations::ConversationKind;
use natter_proto::{ConversationId, UserId};

use crate::store::{RoomCheck, SendPlan, Store, StoreError};

/// Rooms with at least this many members keep their list here; smaller ones read it per post.
pub const LISTED_FROM: usize = 32;

/// The most rooms listed at once; past it, listing one more drops another (whichever the map
/// yields first) to be read again at its next post.
const ROOMS_MAX: usize = 4096;

/// A room's current members as of a members version.
struct Listed {
    version: i64,
    members: Vec<UserId>,
}

/// Member lists of big rooms on this node.
#[derive(Default)]
pub struct MemberLists {
    rooms: Mutex<HashMap<ConversationId, Arc<Listed>>>,
}

impl MemberLists {
    /// What `sender` posting to `conversation` involves (see [`Store::send_plan`]), from the
    /// room's list when it is current.
    ///
    /// # Errors
    /// The store failed.
    pub async fn plan(
        &self,
        store: &dyn Store,
        conversation: ConversationId,
        sender: UserId,
    ) -> Result<Option<SendPlan>, StoreError> {
        let listed = self.rooms().get(&conversation).cloned();
        if let Some(listed) = listed {
            match store.room_check(conversation, sender).await? {
                Some(check) if check.members_version == listed.version => {
                    return Ok(Some(from_list(&listed, check)));
                }
                // Members changed (or the room is gone): read it again.
                _ => {
                    self.rooms().remove(&conversation);
                }
            }
        }
        let plan = store.send_plan(conversation, sender).await?;
        // Only a member's post lists a room: others are refused and must not fill the map.
        if let Some(plan) = &plan
            && plan.kind == ConversationKind::Room
            && plan.is_member
            && plan.members() >= LISTED_FROM
        {
            let members = plan.recipients.iter().chain(&plan.blockers).copied();
            let listed = Listed {
                version: plan.members_version,
                members: members.collect(),
            };
            let mut rooms = self.rooms();
            if rooms.len() >= ROOMS_MAX
                && let Some(evicted) = rooms.keys().next().copied()
            {
                rooms.remove(&evicted);
            }
            rooms.insert(conversation, Arc::new(listed));
        }
        Ok(plan)
    }

    fn rooms(&self) -> std::sync::MutexGuard<'_, HashMap<ConversationId, Arc<Listed>>> {
        self.rooms.lock().expect("member lists lock")
    }
}

/// A room's plan from its current list and the sender's check.
fn from_list(listed: &Listed, check: RoomCheck) -> SendPlan {
    let blocking: HashSet<UserId> = check.blockers.into_iter().collect();
    let (blockers, recipients) = listed
        .members
        .iter()
        .copied()
        .partition(|member| blocking.contains(member));
    SendPlan {
        kind: ConversationKind::Room,
        members_version: listed.version,
        is_member: check.is_member,
        sender_suspended: check.sender_suspended,
        // Only a direct conversation asks.
        connected: true,
        recipients,
        blockers,
    }
}
