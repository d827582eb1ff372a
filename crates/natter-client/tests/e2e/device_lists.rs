//! Device lists kept between sends: a message to a room of 1,000 costs at most one device-list
//! request (none while the lists are kept; each member's list was one request before), and a
//! change the server pushes is seen at the next send.

use natter_client::{Device, Event, Notice};

use crate::helpers::{Relay, TestServer, live, next_event, texts, wait_for};

/// Members of the room besides its creator who use it (with devices of their own).
const MEMBERS: usize = 40;
/// The room's size: the rest are accounts the operator adds straight into its database (they
/// have no devices, which is enough to need their device lists).
const ROOM_SIZE: usize = 1000;

/// Waits until `device`'s message `id` is acked.
async fn sent(events: &mut tokio::sync::mpsc::Receiver<Event>, id: &str) {
    next_event(events, |e| match e {
        Event::Sent { client_msg_id, .. } if client_msg_id == id => Some(()),
        _ => None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_a_room_of_1000_costs_at_most_one_device_list_request() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let mut members = Vec::new();
    for n in 0..MEMBERS {
        let member = server.user(&format!("member{n}")).await;
        server.connect(&alice, &member).await;
        members.push(member);
    }
    let ids: Vec<_> = members.iter().map(Device::user_id).collect();
    let room = alice
        .session()
        .create_room("crowd", &ids)
        .await
        .unwrap()
        .summary
        .id;
    // The operator fills the room up to 1,000 members.
    let extra: Vec<String> = (0..ROOM_SIZE - MEMBERS - 1)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let users: Vec<String> = extra
        .iter()
        .enumerate()
        .map(|(n, id)| format!("('{id}', 'extra{n}', 'extra{n}', 'x', 'Extra {n}', 0)"))
        .collect();
    server.operator_sql(&format!(
        "INSERT INTO users (id, username, username_lower, password_hash, display_name, \
         created_at) VALUES {}",
        users.join(", ")
    ));
    let rows: Vec<String> = extra
        .iter()
        .map(|id| format!("('{room}', '{id}', 'member', 0, 0)"))
        .collect();
    server.operator_sql(&format!(
        "INSERT INTO members (conversation_id, user_id, role, joined_seq, joined_at) VALUES {}",
        rows.join(", ")
    ));
    server.operator_sql(&format!(
        "UPDATE conversations SET members_version = members_version + 1 WHERE id = '{room}'"
    ));
    let listed = alice.session().conversation(room).await.unwrap().members;
    assert_eq!(listed.len(), ROOM_SIZE);
    // Alice's laptop talks to the server through a relay that counts device-list requests.
    let relay = Relay::start(&server.url).await;
    let laptop = server.device_through(&relay.url, "alice", "laptop").await;
    laptop.recover(&server.recovery_key("alice")).await.unwrap();

    let (mut events, stop, task) = live(&laptop);
    next_event(&mut events, |e| (e == Event::Synced).then_some(())).await;
    let before = relay.device_list_requests();
    for n in 0..3 {
        let id = laptop.send_text(room, &format!("hello {n}")).await.unwrap();
        sent(&mut events, &id).await;
    }
    let requests = relay.device_list_requests() - before;
    assert_eq!(
        requests, 1,
        "one query for all {ROOM_SIZE} members' lists, then none while they are kept"
    );
    stop.send(()).unwrap();
    task.await.unwrap();

    members[0].sync().await.unwrap();
    assert_eq!(
        texts(&members[0], room).await,
        ["hello 0", "hello 1", "hello 2"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_added_while_lists_are_kept_is_seen_at_the_next_send() {
    let server = TestServer::start().await;
    let (alice, bob, direct) = server.alice_and_bob().await;
    let (mut events, stop, task) = live(&alice);
    next_event(&mut events, |e| (e == Event::Synced).then_some(())).await;
    let id = alice.send_text(direct, "before").await.unwrap();
    sent(&mut events, &id).await;

    // Bob logs in a device nobody approved; the server tells alice's live connection, so her
    // next send looks at bob's list again and names the device it left out.
    let newcomer = server.unapproved_device("bob", "newcomer").await;
    wait_for(
        "the server to tell alice and her next send to see it",
        async || {
            let id = alice.send_text(direct, "after").await.unwrap();
            sent(&mut events, &id).await;
            alice
                .notices()
                .await
                .unwrap()
                .contains(&Notice::DevicesSkipped {
                    user_id: bob.user_id(),
                    devices: vec![newcomer.device_id()],
                })
        },
    )
    .await;
    stop.send(()).unwrap();
    task.await.unwrap();
}
