//! Rooms: membership rules, history windows, the 1,000-member limit and a full-size room.

use std::sync::Arc;

use futures_util::future::join_all;
use natter_client::Session;
use natter_proto::conversations::Role;
use natter_proto::limits::ROOM_MEMBERS_MAX;
use natter_proto::ws::ServerFrame;
use natter_proto::{ConversationId, UserId};

use crate::helpers::{
    Backend, TestServer, assert_problem, assert_sees_nothing_of, backend_tests, connect_users,
    presence, server,
};
use crate::ws::{
    connect, connect_with_inbox, drained, error, marker, message, next, refused, send, to_device,
};

backend_tests!(
    owners_manage_members_and_members_leave,
    members_see_history_from_joining_until_leaving,
    a_room_holds_a_thousand_members_and_no_more,
    room_members_reach_each_others_keys,
    concurrent_senders_reach_every_member_once_in_seq_order,
    a_blocked_member_loses_sight_of_the_blocker,
    a_big_room_follows_membership_and_blocks_at_once,
    leaving_tells_an_outsider_nothing_of_the_conversation,
);

async fn leaving_tells_an_outsider_nothing_of_the_conversation(backend: Backend) {
    let server = server!(backend);
    let (alice, bob, direct) = server.direct_pair("alice", "bob").await;
    let room = alice
        .create_room("room", &[bob.user_id()])
        .await
        .unwrap()
        .summary
        .id;
    let mallory = server.user("mallory").await;
    let mut answers = Vec::new();
    for id in [direct, room, ConversationId::new()] {
        let refused = mallory
            .remove_member(id, mallory.user_id())
            .await
            .unwrap_err();
        answers.push((refused.status(), refused.code().map(str::to_owned)));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert_eq!(answers[0].0, Some(404), "{answers:?}");
    // A member is still told why not.
    let refused = bob.remove_member(direct, bob.user_id()).await.unwrap_err();
    assert_eq!(refused.status(), Some(400));
}

/// `owner` connected to each of `names` (registered without devices unless logged in later).
async fn connections_of(server: &TestServer, owner: &Session, names: &[String]) -> Vec<UserId> {
    let mut ids = Vec::new();
    for chunk in names.chunks(50) {
        let batch = chunk.iter().map(|name| async move {
            let id = server
                .client
                .register(name, "password123", None)
                .await
                .unwrap();
            owner.request_connection(id, None).await.unwrap();
            let peer = server.login(name, "device").await;
            peer.answer_request(owner.user_id(), true, None)
                .await
                .unwrap();
            peer.logout().await.unwrap();
            id
        });
        ids.extend(join_all(batch).await);
    }
    ids
}

async fn owners_manage_members_and_members_leave(backend: Backend) {
    let server = server!(backend);
    let alice = server.user("alice").await;
    let names: Vec<String> = ["bob", "carol", "dave"].map(String::from).to_vec();
    let ids = connections_of(&server, &alice, &names).await;
    let (bob, carol, dave) = (ids[0], ids[1], ids[2]);
    let stranger = server.user("mallory").await;
    assert_problem(alice.create_room("solo", &[]).await, 400, "invalid_request");
    assert_problem(alice.create_room("", &[bob]).await, 400, "invalid_request");
    assert_problem(
        alice.create_room("x", &[bob, stranger.user_id()]).await,
        403,
        "not_connected",
    );
    let room = alice.create_room("team", &[bob, carol]).await.unwrap();
    let id = room.summary.id;
    assert_eq!(
        room.members
            .iter()
            .find(|m| m.user_id == alice.user_id())
            .unwrap()
            .role,
        Role::Owner
    );
    let bob_session = server.login("bob", "laptop").await;
    // Members cannot add or remove; only the owner can.
    assert_problem(bob_session.add_members(id, &[dave]).await, 403, "not_owner");
    assert_problem(bob_session.remove_member(id, carol).await, 403, "not_owner");
    assert_problem(stranger.add_members(id, &[dave]).await, 404, "not_found");
    let added = alice.add_members(id, &[dave]).await.unwrap();
    assert_eq!(added.members.len(), 4);
    alice.remove_member(id, carol).await.unwrap();
    assert_problem(alice.remove_member(id, carol).await, 404, "not_found");
    // Bob leaves by removing himself.
    bob_session.remove_member(id, bob).await.unwrap();
    assert_problem(bob_session.conversation(id).await, 404, "not_found");
    // The owner leaves: the longest-standing member (Dave) inherits the room.
    alice.remove_member(id, alice.user_id()).await.unwrap();
    let dave_session = server.login("dave", "laptop").await;
    let after = dave_session.conversation(id).await.unwrap();
    assert_eq!(after.members.len(), 1);
    assert_eq!(after.members[0].role, Role::Owner);
    // A direct conversation is not a room.
    let direct = alice.open_direct(bob).await.unwrap().summary.id;
    assert_problem(
        alice.add_members(direct, &[carol]).await,
        400,
        "invalid_request",
    );
    assert_problem(
        alice.remove_member(direct, alice.user_id()).await,
        400,
        "invalid_request",
    );
}

async fn members_see_history_from_joining_until_leaving(backend: Backend) {
    let server = server!(backend);
    let alice = server.user("alice").await;
    let ids = connections_of(&server, &alice, &["bob".into(), "carol".into()]).await;
    let (bob, carol) = (ids[0], ids[1]);
    let id = alice
        .create_room("history", &[bob])
        .await
        .unwrap()
        .summary
        .id;
    let (mut a, _) = connect(&alice).await;
    for i in 1..=3 {
        send(&mut a, id, &format!("m{i}"), "x").await;
    }
    alice.add_members(id, &[carol]).await.unwrap();
    for i in 4..=6 {
        send(&mut a, id, &format!("m{i}"), "x").await;
    }
    alice.remove_member(id, bob).await.unwrap();
    send(&mut a, id, "m7", "x").await;
    let seqs = |messages: Vec<natter_proto::ws::Message>| {
        messages.iter().map(|m| m.seq).collect::<Vec<_>>()
    };
    let bob_session = server.login("bob", "laptop").await;
    let carol_session = server.login("carol", "laptop").await;
    assert_eq!(
        seqs(bob_session.history(id, None, None, None).await.unwrap()),
        [1, 2, 3, 4, 5, 6]
    );
    assert_eq!(
        seqs(carol_session.history(id, None, None, None).await.unwrap()),
        [4, 5, 6, 7]
    );
    assert_eq!(
        seqs(alice.history(id, None, None, Some(2)).await.unwrap()),
        [6, 7],
        "the newest page"
    );
    assert_eq!(
        seqs(alice.history(id, None, Some(6), Some(2)).await.unwrap()),
        [4, 5],
        "paging back"
    );
    assert_eq!(
        seqs(alice.history(id, Some(2), None, Some(3)).await.unwrap()),
        [3, 4, 5],
        "paging forward"
    );
    // A member's new device syncs what the member may see; a past member's stops where they left.
    let (_, carol_synced) = connect(&carol_session).await;
    assert_eq!(seqs(carol_synced), [4, 5, 6, 7]);
    let (_, bob_synced) = connect(&bob_session).await;
    assert_eq!(seqs(bob_synced), [1, 2, 3, 4, 5, 6]);
    assert!(
        bob_session.conversations().await.unwrap().is_empty(),
        "a past member no longer lists it"
    );
}

async fn a_room_holds_a_thousand_members_and_no_more(backend: Backend) {
    let server = server!(backend);
    let owner = server.user("owner").await;
    let names: Vec<String> = (0..ROOM_MEMBERS_MAX)
        .map(|i| format!("member{i:04}"))
        .collect();
    let ids = connections_of(&server, &owner, &names).await;
    // 1,001 in one go is refused; 1,000 (the owner and 999 others) is a room.
    assert_problem(owner.create_room("too big", &ids).await, 403, "room_full");
    let room = owner
        .create_room("all hands", &ids[..ROOM_MEMBERS_MAX - 1])
        .await
        .unwrap();
    assert_eq!(room.members.len(), ROOM_MEMBERS_MAX);
    let id = room.summary.id;
    // The 1,001st member is refused with a clear error.
    let refused = owner
        .add_members(id, &ids[ROOM_MEMBERS_MAX - 1..])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("room_full"));
    assert!(refused.to_string().contains("1000"), "{refused}");
    // Twenty members are online (one with two devices); the rest get it when they connect.
    let mut online = Vec::new();
    for name in &names[..20] {
        online.push(connect(&server.login(name, "phone").await).await.0);
    }
    online.push(connect(&server.login(&names[0], "laptop").await).await.0);
    let (mut o, _) = connect(&owner).await;
    let ack = send(&mut o, id, "hello-all", "to everyone").await;
    for connection in &mut online {
        assert_eq!(message(connection).await.seq, ack.seq);
    }
    let late = server.login(&names[500], "phone").await;
    let (_, synced) = connect(&late).await;
    assert_eq!(synced.len(), 1);
    assert_eq!(synced[0].client_msg_id, "hello-all");
}

async fn room_members_reach_each_others_keys(backend: Backend) {
    let server = server!(backend);
    let owner = server.user("owner").await;
    let ids = connections_of(&server, &owner, &["bob".into(), "carol".into()]).await;
    let (bob, carol) = (
        server.login("bob", "laptop").await,
        server.login("carol", "laptop").await,
    );
    let key = natter_proto::keys::OneTimeKey {
        key_id: "k1".into(),
        key: "A".repeat(42) + "A",
    };
    let upload = natter_proto::keys::UploadKeysRequest {
        one_time_keys: vec![key],
        ..Default::default()
    };
    carol.upload_keys(&upload).await.unwrap();
    // Bob and Carol are not connected: strangers until they share a room.
    assert_problem(bob.devices(ids[1]).await, 404, "not_found");
    let room = owner.create_room("shared", &ids).await.unwrap().summary.id;
    let devices = bob.devices(carol.user_id()).await.unwrap();
    assert_eq!(devices[0].device_id, carol.device_id());
    assert_eq!(
        bob.claim_key(carol.user_id(), carol.device_id())
            .await
            .unwrap()
            .key_id,
        "k1"
    );
    assert_eq!(
        bob.profile(carol.user_id()).await.unwrap().username,
        "carol"
    );
    // Once Carol leaves, they are strangers again.
    carol.remove_member(room, carol.user_id()).await.unwrap();
    assert_problem(bob.devices(carol.user_id()).await, 404, "not_found");
}

async fn concurrent_senders_reach_every_member_once_in_seq_order(backend: Backend) {
    const MEMBERS: usize = 8;
    const EACH: usize = 25;
    let total = (MEMBERS * EACH) as i64;
    let server = server!(backend);
    let owner = server.user("member0").await;
    let mut others = Vec::new();
    for i in 1..MEMBERS {
        let member = server.user(&format!("member{i}")).await;
        connect_users(&owner, &member).await;
        others.push(member);
    }
    let ids: Vec<UserId> = others.iter().map(Session::user_id).collect();
    let room = owner.create_room("busy", &ids).await.unwrap().summary.id;
    let mut connections = vec![(connect(&owner).await.0, owner.clone())];
    for member in &others {
        connections.push((connect(member).await.0, member.clone()));
    }
    // Every member pipelines its sends (no waiting for acks) at the same moment, so the
    // server commits them in shared batches and fans out from many senders at once.
    let start = Arc::new(tokio::sync::Barrier::new(MEMBERS));
    let members = connections
        .into_iter()
        .enumerate()
        .map(|(member, (mut live, me))| {
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                for i in 0..EACH {
                    live.send_message(room, &format!("{member}-{i}"), "x")
                        .await
                        .unwrap();
                }
                let (mut acks, mut received) = (Vec::new(), Vec::new());
                while acks.len() < EACH || received.len() < MEMBERS * EACH - EACH {
                    match next(&mut live).await.unwrap() {
                        ServerFrame::Ack(ack) => acks.push((ack.client_msg_id, ack.seq)),
                        ServerFrame::Message(got) => received.push(got.seq),
                        other => panic!("member {member}: unexpected {other:?}"),
                    }
                }
                // Nothing more comes: no message twice.
                drained(&mut live, &me).await;
                (acks, received)
            })
        });
    for (member, outcome) in join_all(members).await.into_iter().enumerate() {
        let (acks, received) = outcome.unwrap();
        assert!(
            received.windows(2).all(|w| w[0] < w[1]),
            "member {member} got others' messages out of seq order: {received:?}"
        );
        let ids: Vec<String> = acks.iter().map(|(id, _)| id.clone()).collect();
        let sent: Vec<String> = (0..EACH).map(|i| format!("{member}-{i}")).collect();
        assert_eq!(ids, sent, "member {member}'s acks, in sending order");
        let own: Vec<i64> = acks.iter().map(|(_, seq)| *seq).collect();
        assert!(
            own.windows(2).all(|w| w[0] < w[1]),
            "member {member}'s messages were stored out of order: {own:?}"
        );
        let mut all = [own, received].concat();
        all.sort_unstable();
        assert_eq!(
            all,
            (1..=total).collect::<Vec<_>>(),
            "member {member}: its own acks and what it received are every seq once"
        );
    }
}

async fn a_blocked_member_loses_sight_of_the_blocker(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    alice.create_room("shared", &[bob.user_id()]).await.unwrap();
    let keys: Vec<_> = ["k1", "k2"]
        .map(|id| natter_proto::keys::OneTimeKey {
            key_id: id.into(),
            key: "A".repeat(43),
        })
        .into();
    let upload = natter_proto::keys::UploadKeysRequest {
        one_time_keys: keys,
        ..Default::default()
    };
    alice.upload_keys(&upload).await.unwrap();
    // Before the block Bob sees Alice like any connection does.
    bob.profile(alice.user_id()).await.unwrap();
    bob.claim_key(alice.user_id(), alice.device_id())
        .await
        .unwrap();

    // Alice blocks Bob: they still share the room, yet Bob sees nothing of her.
    alice.block(bob.user_id(), true, None).await.unwrap();
    assert_sees_nothing_of(&server, &bob, &alice).await;
    assert_problem(
        bob.claim_key(alice.user_id(), alice.device_id()).await,
        404,
        "not_found",
    );
    let (mut b, _) = connect(&bob).await;
    b.send(&to_device(&alice, "key share")).await.unwrap();
    assert_eq!(error(&mut b).await.code, "not_found");
    let (_, _, inbox) = connect_with_inbox(&alice).await;
    assert!(inbox.is_empty(), "{inbox:?}");
    // Alice, who blocks, still sees the member she blocked.
    let devices = alice.devices(bob.user_id()).await.unwrap();
    assert_eq!(devices[0].device_id, bob.device_id());
    assert_eq!(
        presence(&server.url, &alice, &bob.user_id().to_string())
            .await
            .0,
        200
    );
}

/// A room of `owner`'s big enough for a member list in memory (natter_core::member_lists),
/// and the names of `owner`'s connections: all but the last are members.
pub async fn big_room(server: &TestServer, owner: &Session) -> (ConversationId, Vec<String>) {
    let size = natter_core::member_lists::LISTED_FROM + 8;
    let names: Vec<String> = (0..size).map(|i| format!("member{i:02}")).collect();
    let ids = connections_of(server, owner, &names).await;
    let room = owner.create_room("big", &ids[..size - 1]).await.unwrap();
    (room.summary.id, names)
}

/// A room big enough to keep its member list in memory (natter_core::member_lists) follows
/// removals, additions and blocks from the very next post.
async fn a_big_room_follows_membership_and_blocks_at_once(backend: Backend) {
    let server = server!(backend);
    let alice = server.user("alice").await;
    let (id, names) = big_room(&server, &alice).await;
    let size = names.len();
    let [bob, carol, dave] = [0, 1, 2].map(|i| server.login(&names[i], "phone"));
    let (bob, carol, dave) = (bob.await, carol.await, dave.await);
    let erin = server.login(&names[size - 1], "phone").await;
    let (mut a, _) = connect(&alice).await;
    let (mut b, _) = connect(&bob).await;
    let (mut c, _) = connect(&carol).await;
    let (mut d, _) = connect(&dave).await;
    let (mut e, _) = connect(&erin).await;

    // The first post reads the members; the second goes by the list.
    for id_ in ["m1", "m2"] {
        let ack = send(&mut a, id, id_, "x").await;
        for connection in [&mut b, &mut c, &mut d] {
            assert_eq!(message(connection).await.seq, ack.seq);
        }
    }
    // Carol is removed, Dave blocks Alice, Erin is added: the next post follows all three.
    alice.remove_member(id, carol.user_id()).await.unwrap();
    dave.block(alice.user_id(), true, None).await.unwrap();
    alice.add_members(id, &[erin.user_id()]).await.unwrap();
    let ack = send(&mut a, id, "m3", "x").await;
    assert_eq!(message(&mut b).await.seq, ack.seq);
    assert_eq!(message(&mut e).await.seq, ack.seq);
    marker(&mut a, &carol, &mut c).await;
    marker(&mut b, &dave, &mut d).await;
    // Carol, removed, may not post from the room's list either.
    refused(&mut c, id, "late", "x", "not_member").await;
    // Dave unblocks: Alice's next post reaches him again, and still not Carol.
    dave.block(alice.user_id(), false, None).await.unwrap();
    let ack = send(&mut a, id, "m4", "x").await;
    // (His connection fills the gap before it from the store first: what he may see of the
    // log is read at delivery.)
    let mut seqs = vec![message(&mut d).await.seq];
    while *seqs.last().unwrap() < ack.seq {
        seqs.push(message(&mut d).await.seq);
    }
    assert!(
        seqs[0] > 2 && seqs.windows(2).all(|w| w[0] < w[1]),
        "{seqs:?}"
    );
    assert_eq!(message(&mut b).await.seq, ack.seq);
    marker(&mut a, &carol, &mut c).await;
}
