//! Cluster mode: several nodes on one PostgreSQL and one Redis deliver to devices wherever
//! they are connected; without Redis, nodes still deliver locally and devices catch up from
//! the store.

use natter_client::ClientError;
use natter_proto::ws::{ClientFrame, ServerFrame};
use natter_server::config::{Config, Secret};
use natter_server::ratelimit::{Kind, Rate};

use natter_test_support::redis_url;

use crate::helpers::{
    Backend, Proxy, TestServer, cluster_name, eventually, gateway, same_device, sample, scrape,
    ws_url,
};
use crate::rooms::big_room;
use crate::ws::{
    closed, connect, marker, message, next, ping, receipt_of, refused, send, to_device,
    to_device_item, typing, until,
};

/// Two nodes on one fresh PostgreSQL database, both using `redis` (if given).
async fn two_nodes(redis: Option<String>) -> Option<(TestServer, TestServer)> {
    // Both nodes in one cluster of their own (other tests' clusters share this Redis).
    two_nodes_in(&cluster_name(), redis, |_| {}).await
}

/// Two nodes of `cluster` on one fresh PostgreSQL database, with settings changed by
/// `configure`.
async fn two_nodes_in(
    cluster: &str,
    redis: Option<String>,
    configure: impl Fn(&mut Config),
) -> Option<(TestServer, TestServer)> {
    let with_redis = |c: &mut Config| {
        c.redis_url = redis.clone().map(Secret);
        c.cluster_name = cluster.to_owned();
        configure(c);
    };
    let first = TestServer::start_with(Backend::Postgres, with_redis).await?;
    let second = first.join(with_redis).await;
    Some((first, second))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_suspensions_cross_nodes() {
    let Some(redis) = redis_url() else { return };
    let Some((a, b)) = two_nodes(Some(redis)).await else {
        return;
    };
    let (alice, bob, direct) = a.direct_pair("alice", "bob").await;
    let bob_on_b = same_device(&b.client, &bob);
    let bob_phone = b.login("bob", "phone").await;
    let (mut on_a, _) = connect(&alice).await;
    let (mut on_b, _) = connect(&bob_on_b).await;
    let (mut phone_on_b, _) = connect(&bob_phone).await;
    let mut seq = until_live(&mut on_a, &mut on_b, direct, "warmup").await;
    // From now on messages cross nodes live, to each device, in order, once.
    for i in 0..10 {
        let ack = send(&mut on_a, direct, &format!("m{i}"), "x").await;
        assert_eq!(message(&mut on_b).await.seq, ack.seq);
        seq = ack.seq;
    }
    // The phone synced before the first message, and node B's subscription is shared by its
    // devices: it has every message, the warm-ups that did not cross live filled from the
    // store ahead of the first that did.
    let mut phone_seqs = Vec::new();
    while phone_seqs.last() != Some(&seq) {
        phone_seqs.push(message(&mut phone_on_b).await.seq);
    }
    assert_eq!(phone_seqs, (1..=seq).collect::<Vec<_>>());
    // And back: Bob on node B to Alice on node A.
    let back = send(&mut on_b, direct, "reply", "x").await;
    assert_eq!(message(&mut on_a).await.seq, back.seq);
    // Node B measured how long each of the ten took to cross, and labelled their pushes to
    // Bob's two devices as remote (the recorder is the test process's: at least these).
    let metrics = scrape(&b.admin_url).await;
    for (series, at_least) in [
        ("natter_bus_lag_seconds_count", 10.0),
        (
            "natter_accept_to_push_seconds_count{locality=\"remote\"}",
            20.0,
        ),
    ] {
        let counted = sample(&metrics, series);
        assert!(counted >= at_least, "{series} is {counted}");
    }
    // Removing a device through one node closes its connection on the other, saying why.
    bob.delete_device(bob_phone.device_id()).await.unwrap();
    let (_, close) = closed(&mut phone_on_b).await;
    assert_eq!(
        (close.code, close.reason.as_str()),
        (Some(1008), natter_core::close::SIGNED_OUT)
    );
    // A suspension made through one node's admin listener closes connections on the other.
    let admin = reqwest::Client::new();
    let url = format!("{}/admin/users/{}/suspension", a.admin_url, bob.user_id());
    assert_eq!(admin.put(&url).send().await.unwrap().status(), 200);
    loop {
        match next(&mut on_b).await {
            Err(ClientError::Closed(closed)) => {
                assert_eq!(closed.code, Some(4003));
                break;
            }
            Err(other) => panic!("{other}"),
            Ok(_) => {}
        }
    }
}

/// Everything live crosses nodes, not only messages: a receipt, a typing notice, a key share,
/// and a device's own message to the user's other devices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_typing_and_key_shares_cross_nodes() {
    let Some(redis) = redis_url() else { return };
    let Some((a, b)) = two_nodes(Some(redis)).await else {
        return;
    };
    let (alice, bob, direct) = a.direct_pair("alice", "bob").await;
    let bob_on_b = same_device(&b.client, &bob);
    let alice_phone = b.login("alice", "phone").await;
    let (mut on_a, _) = connect(&alice).await;
    let (mut on_b, _) = connect(&bob_on_b).await;
    let (mut phone_on_b, _) = connect(&alice_phone).await;
    until_live(&mut on_a, &mut on_b, direct, "there").await;
    let seq = until_live(&mut on_b, &mut on_a, direct, "back").await;
    // Alice's phone on B has her laptop's messages as well as Bob's.
    while message(&mut phone_on_b).await.seq != seq {}
    on_b.send(&ClientFrame::Delivered {
        conversation_id: direct,
        seq,
    })
    .await
    .unwrap();
    assert_eq!(
        receipt_of(&mut on_a, bob.device_id()).await.delivered_seq,
        seq
    );
    typing(&mut on_b, direct, true).await;
    let typist = until(&mut on_a, |f| match f {
        ServerFrame::Typing { user_id, .. } => Some(*user_id),
        _ => None,
    })
    .await;
    assert_eq!(typist, bob.user_id());
    on_a.send(&to_device(&bob, "share")).await.unwrap();
    assert_eq!(to_device_item(&mut on_b).await.payload, "share");
}

/// Without Redis a node does not hear of a device removed through another; it finds out when
/// it next renews the device's token, and closes the connection then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_missed_a_removal_closes_the_device_at_its_renewal() {
    let ttl = std::time::Duration::from_secs(6);
    let Some((a, b)) = two_nodes_in(&cluster_name(), None, |c| c.token_ttl = ttl).await else {
        return;
    };
    let laptop = a.user("bob").await;
    let phone = b.login("bob", "phone").await;
    let (mut on_b, _) = connect(&phone).await;
    laptop.delete_device(phone.device_id()).await.unwrap();
    let (_, close) = closed(&mut on_b).await;
    assert_eq!(
        (close.code, close.reason.as_str()),
        (Some(1008), natter_core::close::SIGNED_OUT)
    );
}

/// Redis subscriptions are established asynchronously: sends from `from` until one arrives
/// live on `to`, and returns the seq of the last message sent, once `to` has read it (the
/// first to cross may be an earlier warm-up message, or the gap before it filled from the
/// store): the next message `to` reads is one sent after this returns.
async fn until_live(
    from: &mut natter_client::Connection,
    to: &mut natter_client::Connection,
    conversation: natter_proto::ConversationId,
    prefix: &str,
) -> i64 {
    for i in 0..100 {
        let seq = send(from, conversation, &format!("{prefix}{i}"), "x")
            .await
            .seq;
        let Ok(first) =
            tokio::time::timeout(std::time::Duration::from_millis(200), to.next()).await
        else {
            continue;
        };
        let mut frame = first.expect("connection open");
        loop {
            if let ServerFrame::Message(got) = &frame {
                assert!(got.seq <= seq, "{} was never sent", got.seq);
                if got.seq == seq {
                    return seq;
                }
            }
            frame = next(to).await.expect("connection open");
        }
    }
    panic!("nothing crossed nodes live");
}

/// Polls a node's readiness until it reports Redis as `status`.
async fn wait_for_redis(node: &TestServer, status: &str) {
    node.wait_for_readiness(&format!("redis {status}"), |_, body| {
        body["redis"] == status
    })
    .await;
}

/// A big room's member list held by one node is not used once another node has changed the
/// room: the members version it is checked against lives in the shared store, so no message
/// between the nodes is needed (this runs without Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_changed_through_another_node_is_followed_at_once() {
    let Some((a, b)) = two_nodes(None).await else {
        return;
    };
    let alice = a.user("alice").await;
    let (id, names) = big_room(&a, &alice).await;
    let size = names.len();
    let (carol, bob) = (
        a.login(&names[0], "phone").await,
        a.login(&names[1], "phone").await,
    );
    let erin = a.login(&names[size - 1], "phone").await;
    let (mut on_a, _) = connect(&alice).await;
    let (mut carol_on_a, _) = connect(&carol).await;
    let (mut bob_on_a, _) = connect(&bob).await;
    let (mut erin_on_a, _) = connect(&erin).await;
    // Node A reads the members for the first post and goes by its list for the second.
    for id_ in ["m1", "m2"] {
        let ack = send(&mut on_a, id, id_, "x").await;
        assert_eq!(message(&mut carol_on_a).await.seq, ack.seq);
        assert_eq!(message(&mut bob_on_a).await.seq, ack.seq);
    }
    // Through node B, Carol is removed and Erin added; node A's next post follows both.
    let alice_on_b = same_device(&b.client, &alice);
    alice_on_b.remove_member(id, carol.user_id()).await.unwrap();
    alice_on_b.add_members(id, &[erin.user_id()]).await.unwrap();
    let ack = send(&mut on_a, id, "m3", "x").await;
    assert_eq!(message(&mut bob_on_a).await.seq, ack.seq);
    assert_eq!(message(&mut erin_on_a).await.seq, ack.seq);
    marker(&mut on_a, &carol, &mut carol_on_a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_node_delivery_resumes_after_a_redis_outage() {
    let Some(redis) = redis_url() else { return };
    let (proxy, proxied) = Proxy::in_front_of(&redis).await;
    let Some((a, b)) = two_nodes(Some(proxied)).await else {
        return;
    };
    let (alice, bob, direct) = a.direct_pair("alice", "bob").await;
    let bob_on_b = same_device(&b.client, &bob);
    let (mut on_a, _) = connect(&alice).await;
    let (mut on_b, _) = connect(&bob_on_b).await;
    let before = until_live(&mut on_a, &mut on_b, direct, "before").await;

    proxy.cut();
    wait_for_redis(&a, "unreachable").await;
    // Node A keeps accepting: every send is acked while Redis is away.
    let mut last = before;
    for i in 0..3 {
        last = send(&mut on_a, direct, &format!("during{i}"), "x")
            .await
            .seq;
    }
    assert_eq!(last, before + 3);

    proxy.restore();
    wait_for_redis(&a, "ok").await;
    wait_for_redis(&b, "ok").await;
    // Send until Bob has everything: what was sent during the outage comes from the store,
    // ahead of the first message that crosses live again.
    let mut seqs: Vec<i64> = Vec::new();
    for i in 0..100 {
        last = send(&mut on_a, direct, &format!("after{i}"), "x").await.seq;
        while let Ok(frame) =
            tokio::time::timeout(std::time::Duration::from_millis(200), next(&mut on_b)).await
        {
            if let ServerFrame::Message(m) = frame.unwrap() {
                seqs.push(m.seq);
            }
        }
        if seqs.last() == Some(&last) {
            break;
        }
    }
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in order, none twice: {seqs:?}"
    );
    let missing: Vec<i64> = ((before + 1)..=last)
        .filter(|seq| !seqs.contains(seq))
        .collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
}

/// Reads `to` until the messages after `before` up to `last` arrived, the first within 10 s of
/// Redis returning and each next within 10 s, and asserts they came in order, once.
async fn arrive_after_the_outage(to: &mut natter_client::Connection, before: i64, last: i64) {
    let restored = std::time::Instant::now();
    let mut seqs = Vec::new();
    while seqs.last() != Some(&last) {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), next(to))
            .await
            .expect("what was accepted during the outage arrives within 10 s of Redis returning")
            .expect("the connection stays open");
        if let ServerFrame::Message(m) = frame {
            seqs.push(m.seq);
        }
    }
    assert!(restored.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(
        seqs,
        ((before + 1)..=last).collect::<Vec<_>>(),
        "in order, once"
    );
}

/// What crossed no node while Redis was away reaches a connected device once Redis is back,
/// within the ten-second promise, without another message to reveal the gap and without a
/// reconnect; and a device connected to the sending node loses nothing either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_redis_outage_dropped_arrives_when_it_returns_with_nothing_else_sent() {
    let Some(redis) = redis_url() else { return };
    let (proxy, proxied) = Proxy::in_front_of(&redis).await;
    let Some((a, b)) = two_nodes(Some(proxied)).await else {
        return;
    };
    let (alice, bob, direct) = a.direct_pair("alice", "bob").await;
    let bob_on_b = same_device(&b.client, &bob);
    let (mut on_a, _) = connect(&alice).await;
    let (mut on_b, _) = connect(&bob_on_b).await;
    let before = until_live(&mut on_a, &mut on_b, direct, "before").await;

    proxy.cut();
    wait_for_redis(&a, "unreachable").await;
    let mut last = before;
    for i in 0..3 {
        last = send(&mut on_a, direct, &format!("during{i}"), "x")
            .await
            .seq;
    }
    proxy.restore();
    arrive_after_the_outage(&mut on_b, before, last).await;
}

/// A node cut off from Redis (but not from its clients) while the others keep it: what it
/// accepted meanwhile reaches the others' devices once it is back, with nothing else sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_node_cut_off_from_redis_accepted_reaches_the_others_when_it_returns() {
    let Some(redis) = redis_url() else { return };
    let (proxy, proxied) = Proxy::in_front_of(&redis).await;
    let cluster = cluster_name();
    let configure = |url: &str| {
        let (url, cluster) = (url.to_owned(), cluster.clone());
        move |c: &mut Config| {
            c.redis_url = Some(Secret(url));
            c.cluster_name = cluster;
        }
    };
    let Some(a) = TestServer::start_with(Backend::Postgres, configure(&proxied)).await else {
        return;
    };
    let b = a.join(configure(&redis)).await;
    let (alice, bob, direct) = a.direct_pair("alice", "bob").await;
    let bob_on_b = same_device(&b.client, &bob);
    let (mut on_a, _) = connect(&alice).await;
    let (mut on_b, _) = connect(&bob_on_b).await;
    let before = until_live(&mut on_a, &mut on_b, direct, "before").await;

    proxy.cut();
    wait_for_redis(&a, "unreachable").await;
    let mut last = before;
    for i in 0..3 {
        last = send(&mut on_a, direct, &format!("during{i}"), "x")
            .await
            .seq;
    }
    // Node A gave up publishing them (they are not merely late).
    eventually("node A to drop what it could not publish", async || {
        let dropped = sample(
            &scrape(&a.admin_url).await,
            "natter_bus_dropped_total{bus=\"redis\"}",
        );
        if dropped >= 3.0 { Ok(()) } else { Err(dropped) }
    })
    .await;
    proxy.restore();
    arrive_after_the_outage(&mut on_b, before, last).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_nodes_deliver_locally_and_devices_catch_up() {
    // Nothing listens on port 1: both nodes run with Redis down the whole time.
    let Some((a, b)) = two_nodes(Some("redis://127.0.0.1:1".into())).await else {
        return;
    };
    let (alice, bob, direct) = a.direct_pair("alice", "bob").await;
    let alice_phone = a.login("alice", "phone").await;
    let bob_on_b = same_device(&b.client, &bob);
    let (mut on_a, _) = connect(&alice).await;
    let (mut phone_on_a, _) = connect(&alice_phone).await;
    let (mut on_b, _) = connect(&bob_on_b).await;
    let mut acked = Vec::new();
    for i in 0..5 {
        acked.push(send(&mut on_a, direct, &format!("m{i}"), "x").await.seq);
        // The sender's other device on the same node still gets every message live.
        assert_eq!(message(&mut phone_on_a).await.seq, acked[i]);
    }
    // Bob, on the other node, gets nothing live, but nothing is lost: a sync brings it all.
    ping(&mut on_b, 1).await;
    on_b.close().await;
    let (_, synced) = connect(&bob_on_b).await;
    assert_eq!(synced.iter().map(|m| m.seq).collect::<Vec<_>>(), acked);
    let (status, ready) = a.readiness().await;
    assert_eq!(
        (status, &ready["store"], &ready["redis"]),
        (200, &"ok".into(), &"unreachable".into()),
        "the node stays ready to accept messages, and says Redis is away"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_endpoint_assigns_the_least_loaded_node() {
    let Some(redis) = redis_url() else { return };
    let Some((a, b)) = two_nodes(Some(redis)).await else {
        return;
    };
    let alice = a.user("alice").await;
    // Load node B with three connections: both nodes send newcomers to A.
    let on_b = same_device(&b.client, &alice);
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect(&on_b).await.0);
    }
    wait_until_both_assign(&a, &b, &ws_url(&a.url)).await;
    // Now load A more: the assignment moves to B.
    for _ in 0..5 {
        held.push(connect(&alice).await.0);
    }
    wait_until_both_assign(&a, &b, &ws_url(&b.url)).await;
}

/// Polls both nodes' gateway endpoints until they name `expected` (heartbeats are periodic).
async fn wait_until_both_assign(a: &TestServer, b: &TestServer, expected: &str) {
    let waiting = format!("both nodes to assign {expected}");
    eventually(&waiting, async || {
        let assigned = [
            gateway(&a.url).await.map(|g| g.url),
            gateway(&b.url).await.map(|g| g.url),
        ];
        if assigned.iter().all(|url| url.as_deref() == Some(expected)) {
            Ok(())
        } else {
            Err(assigned)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_withdraws_from_the_gateway_and_closes_its_connections() {
    let Some(redis) = redis_url() else { return };
    let cluster = cluster_name();
    let drain = |c: &mut Config| c.gateway.drain = std::time::Duration::from_secs(2);
    let Some((a, b)) = two_nodes_in(&cluster, Some(redis.clone()), drain).await else {
        return;
    };
    let heartbeats = || async {
        let client = redis::Client::open(redis.as_str()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{cluster}:node:*"))
            .query_async(&mut connection)
            .await
            .unwrap();
        // The nodes' heartbeats, not their presence hashes.
        keys.iter().filter(|key| !key.ends_with(":users")).count()
    };
    eventually("both nodes to heartbeat", async || {
        match heartbeats().await {
            2 => Ok(()),
            other => Err(other),
        }
    })
    .await;
    let alice = a.user("alice").await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(connect(&alice).await.0);
    }
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(a.stop());
    // Each connection watched on its own, so each close is timed when it comes.
    let watchers: Vec<_> = held
        .into_iter()
        .map(|mut connection| {
            tokio::spawn(async move {
                match next(&mut connection).await {
                    Err(ClientError::Closed(closed)) => assert_eq!(closed.code, Some(1012)),
                    other => {
                        panic!("expected a close telling the client to reconnect, got {other:?}")
                    }
                }
                started.elapsed()
            })
        })
        .collect();
    let mut closed_at = Vec::new();
    for watcher in watchers {
        closed_at.push(watcher.await.unwrap());
    }
    stopping.await.unwrap();
    // Closed at random moments over the 2 s window, not all at once (eight draws all within
    // 200 ms of each other would be a one-in-ten-million chance).
    let spread = *closed_at.iter().max().unwrap() - *closed_at.iter().min().unwrap();
    assert!(
        spread >= std::time::Duration::from_millis(200),
        "closes bunched: {closed_at:?}"
    );
    // Gone from the assigner the moment it stopped, not when its heartbeat would expire.
    assert_eq!(heartbeats().await, 1);
    eventually("node B to hand out itself alone", async || {
        let listed = gateway(&b.url).await.map(|g| g.nodes);
        match listed {
            Some(nodes) if nodes == [ws_url(&b.url)] => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_adds_no_allowance() {
    let Some(redis) = redis_url() else { return };
    let cluster = cluster_name();
    let limited = |c: &mut Config| {
        c.limits.set(Kind::DeviceMessages, Rate::new(0.001, 4.0));
        c.limits.set(Kind::UserMessages, Rate::new(0.001, 4.0));
        c.limits.set(Kind::AccountLogins, Rate::new(0.001, 3.0));
    };
    let Some((a, b)) = two_nodes_in(&cluster, Some(redis), limited).await else {
        return;
    };
    let (alice, bob, direct) = a.direct_pair("alice", "bob").await;
    let alice_on_b = same_device(&b.client, &alice);
    // One device, connected to both nodes: each node alone would allow four sends.
    let (mut on_a, _) = connect(&alice).await;
    let (mut on_b, _) = connect(&alice_on_b).await;
    for i in 0..2 {
        send(&mut on_a, direct, &format!("a{i}"), "x").await;
        send(&mut on_b, direct, &format!("b{i}"), "x").await;
    }
    refused(&mut on_a, direct, "a2", "x", "rate_limited").await;
    let refusal = refused(&mut on_b, direct, "b2", "x", "rate_limited").await;
    assert!(refusal.retry_after_ms.is_some_and(|ms| ms > 1000));
    assert_eq!(
        bob.history(direct, None, None, None).await.unwrap().len(),
        4
    );
    // Logins too: Bob logged in once (connected_pair); two more fit, on either node.
    assert!(a.client.login("bob", "password123", "d2").await.is_ok());
    assert!(b.client.login("bob", "password123", "d3").await.is_ok());
    let refused = b
        .client
        .login("bob", "password123", "d4")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("rate_limited"));
    assert_eq!(
        a.client
            .login("bob", "password123", "d5")
            .await
            .unwrap_err()
            .code(),
        Some("rate_limited")
    );
}

/// One device sending the same messages through two nodes at once (a client that resent on a
/// new connection before the first answered): each is stored once, and both nodes ack it with
/// the same seq, whichever stored it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_racing_through_two_nodes_is_stored_once() {
    let Some((a, b)) = two_nodes(None).await else {
        return;
    };
    let (alice, bob, direct) = a.direct_pair("alice", "bob").await;
    let alice_on_b = same_device(&b.client, &alice);
    let (mut on_a, _) = connect(&alice).await;
    let (mut on_b, _) = connect(&alice_on_b).await;
    const SENDS: usize = 50;
    let ids: Vec<String> = (0..SENDS).map(|i| format!("m{i}")).collect();
    for id in &ids {
        on_a.send_message(direct, id, "x").await.unwrap();
        on_b.send_message(direct, id, "x").await.unwrap();
    }
    let mut acks = Vec::new();
    for connection in [&mut on_a, &mut on_b] {
        let mut seqs = std::collections::HashMap::new();
        while seqs.len() < SENDS {
            let ack = until(connection, |f| match f {
                ServerFrame::Ack(ack) => Some(ack.clone()),
                _ => None,
            })
            .await;
            seqs.insert(ack.client_msg_id, ack.seq);
        }
        acks.push(seqs);
    }
    assert_eq!(
        acks[0], acks[1],
        "both nodes ack each message with its one seq"
    );
    let history = bob.history(direct, None, None, Some(500)).await.unwrap();
    let stored: Vec<i64> = history.iter().map(|m| m.seq).collect();
    assert_eq!(
        stored,
        (1..=SENDS as i64).collect::<Vec<_>>(),
        "once each, no gap"
    );
}

/// A send charges its message and its bytes in Redis at once, or neither: one refused for its
/// bytes takes no message from the allowance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_charge_in_redis_takes_nothing() {
    let Some(redis) = redis_url() else { return };
    let limited = |c: &mut Config| {
        c.limits.set(Kind::DeviceMessages, Rate::new(0.001, 3.0));
        c.limits.set(Kind::UserMessages, Rate::new(0.001, 3.0));
        c.limits.set(Kind::UserBytes, Rate::new(0.001, 1_000.0));
    };
    let Some((a, b)) = two_nodes_in(&cluster_name(), Some(redis), limited).await else {
        return;
    };
    let (alice, _bob, direct) = a.direct_pair("alice", "bob").await;
    let alice_on_b = same_device(&b.client, &alice);
    let (mut on_a, _) = connect(&alice).await;
    let (mut on_b, _) = connect(&alice_on_b).await;
    let big = "x".repeat(600);
    send(&mut on_a, direct, "m1", &big).await;
    // 400 bytes and two messages left: too many bytes, on either node.
    refused(&mut on_b, direct, "m2", &big, "rate_limited").await;
    refused(&mut on_a, direct, "m3", &big, "rate_limited").await;
    // Both messages are still there, and then none.
    send(&mut on_b, direct, "m4", "x").await;
    send(&mut on_a, direct, "m5", "x").await;
    refused(&mut on_b, direct, "m6", "x", "rate_limited").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_each_node_still_enforces_the_limits() {
    // Nothing listens on port 1: the shared buckets are unreachable from the start.
    let Some(node) = TestServer::start_with(Backend::Postgres, |c| {
        c.redis_url = Some(Secret("redis://127.0.0.1:1".into()));
        c.limits.set(Kind::DeviceMessages, Rate::new(0.001, 2.0));
    })
    .await
    else {
        return;
    };
    let (alice, _bob, direct) = node.direct_pair("alice", "bob").await;
    let (mut live, _) = connect(&alice).await;
    send(&mut live, direct, "m0", "x").await;
    send(&mut live, direct, "m1", "x").await;
    refused(&mut live, direct, "m2", "x", "rate_limited").await;
    let fallbacks = sample(
        &scrape(&node.admin_url).await,
        "natter_rate_limit_fallbacks_total",
    );
    assert!(fallbacks >= 1.0, "the fallback is counted: {fallbacks}");
}
