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
    /// What `sender` posting to `conversation` involves (see [`ConversationStore::send_plan`](crate::store::ConversationStore::send_plan)), from the
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

    /// The cached lists, by room.
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

/// Checks of the member lists over a real store, which this crate does not have: natter-store's
/// tests run each on both backends.
#[cfg(feature = "store-checks")]
pub mod checks {
    use super::*;
    use crate::store::testing;

    /// `n` new users in `store`.
    async fn users(store: &dyn Store, n: usize) -> Vec<UserId> {
        testing::users(store, (0..n).map(|i| format!("user{i}-{}", UserId::new()))).await
    }

    /// A room owned by `members[0]` with the rest as members.
    async fn room(store: &dyn Store, members: &[UserId]) -> ConversationId {
        let id = ConversationId::new();
        store
            .create_room(id, "room", members[0], &members[1..], 0)
            .await
            .unwrap();
        id
    }

    /// The list held for `conversation`, if any.
    fn listed(lists: &MemberLists, conversation: ConversationId) -> Option<Arc<Listed>> {
        lists.rooms().get(&conversation).cloned()
    }

    /// The recipients of `sender`'s plan for `conversation`.
    async fn recipients(
        lists: &MemberLists,
        store: &dyn Store,
        conversation: ConversationId,
        sender: UserId,
    ) -> HashSet<UserId> {
        let plan = lists.plan(store, conversation, sender).await.unwrap();
        plan.unwrap().recipients.into_iter().collect()
    }

    /// Whether a room of `size` members is listed after a plan by a member (or an outsider).
    async fn listed_after(store: &dyn Store, size: usize, by_member: bool) -> bool {
        let users = users(store, size + 1).await;
        let conversation = room(store, &users[..size]).await;
        let sender = if by_member { users[0] } else { users[size] };
        let lists = MemberLists::default();
        let plan = lists.plan(store, conversation, sender).await.unwrap();
        assert_eq!(plan.unwrap().is_member, by_member);
        let listed = listed(&lists, conversation).is_some();
        assert_eq!(lists.rooms().len(), usize::from(listed));
        listed
    }

    /// Checks that a list serves plans until the members change.
    pub async fn a_list_serves_plans_until_the_members_change(store: Arc<dyn Store>) {
        let store = store.as_ref();
        let users = users(store, LISTED_FROM + 1).await;
        let (members, newcomer) = (&users[..LISTED_FROM], users[LISTED_FROM]);
        let conversation = room(store, members).await;
        let lists = MemberLists::default();
        let sender = members[0];
        let set = |users: &[UserId]| users.iter().copied().collect::<HashSet<_>>();

        assert_eq!(
            recipients(&lists, store, conversation, sender).await,
            set(members)
        );
        let first = listed(&lists, conversation).expect("a big room is listed");
        // Same members version: the plan comes from the same list.
        assert_eq!(
            recipients(&lists, store, conversation, sender).await,
            set(members)
        );
        assert!(Arc::ptr_eq(&first, &listed(&lists, conversation).unwrap()));

        // Each membership change bumps the version, so the next plan reads the room again.
        store
            .add_members(conversation, &[newcomer], 1000, 0)
            .await
            .unwrap();
        assert_eq!(
            recipients(&lists, store, conversation, sender).await,
            set(&users)
        );
        assert!(store.remove_member(conversation, members[1]).await.unwrap());
        let mut remaining = users.clone();
        remaining.remove(1);
        assert_eq!(
            recipients(&lists, store, conversation, sender).await,
            set(&remaining)
        );
    }

    /// Checks that only a members plan lists a room.
    pub async fn only_a_members_plan_lists_a_room(store: Arc<dyn Store>) {
        assert!(!listed_after(store.as_ref(), LISTED_FROM, false).await);
        assert!(listed_after(store.as_ref(), LISTED_FROM, true).await);
    }

    /// Checks that a listed room still refuses outsiders and removed members.
    pub async fn a_listed_room_still_refuses_outsiders_and_removed_members(store: Arc<dyn Store>) {
        let store = store.as_ref();
        let users = users(store, LISTED_FROM + 1).await;
        let (members, outsider) = (&users[..LISTED_FROM], users[LISTED_FROM]);
        let conversation = room(store, members).await;
        let lists = MemberLists::default();
        lists.plan(store, conversation, members[0]).await.unwrap();
        let first = listed(&lists, conversation).expect("listed");
        let plan = lists.plan(store, conversation, outsider).await.unwrap();
        assert!(!plan.expect("the room exists").is_member);
        assert!(
            Arc::ptr_eq(&first, &listed(&lists, conversation).unwrap()),
            "an outsider's refusal leaves the list as it was"
        );
        assert!(store.remove_member(conversation, members[1]).await.unwrap());
        let plan = lists.plan(store, conversation, members[1]).await.unwrap();
        assert!(!plan.expect("the room exists").is_member);
    }

    /// Checks that a room under listed from is not listed.
    pub async fn a_room_under_listed_from_is_not_listed(store: Arc<dyn Store>) {
        assert!(!listed_after(store.as_ref(), LISTED_FROM - 1, true).await);
    }

    /// Checks that listing past rooms max drops another room.
    pub async fn listing_past_rooms_max_drops_another_room(store: Arc<dyn Store>) {
        let store = store.as_ref();
        let users = users(store, LISTED_FROM).await;
        let conversation = room(store, &users).await;
        let lists = MemberLists::default();
        let synthetic = || {
            let listed = Listed {
                version: 0,
                members: Vec::new(),
            };
            (ConversationId::new(), Arc::new(listed))
        };
        lists.rooms().extend((0..ROOMS_MAX).map(|_| synthetic()));

        lists.plan(store, conversation, users[0]).await.unwrap();
        let rooms = lists.rooms();
        assert_eq!(rooms.len(), ROOMS_MAX);
        assert!(rooms.contains_key(&conversation));
    }
}
