//! Presence: whether a user has a device connected, to this node or to any node of a cluster;
//! only for those allowed to see the user, and gone soon after a node dies.

use natter_client::Session;
use natter_proto::UserId;

use crate::helpers::{
    Backend, TestDatabase, backend_tests, cluster_name, connect_users, eventually, presence,
    register, server,
};
use crate::process::Natterd;
use crate::ws::connect;

backend_tests!(presence_follows_connections_and_is_only_for_contacts);

/// Polls until `viewer` sees `user` as `online` through `base` (presence crosses nodes through
/// Redis, and a closed connection is unregistered when its session ends).
async fn wait_for(base: &str, viewer: &Session, user: UserId, online: bool) {
    let waiting = format!("{user} to show online={online} at {base}");
    eventually(&waiting, async || {
        match presence(base, viewer, &user.to_string()).await {
            (200, Some(seen)) if seen == online => Ok(()),
            other => Err(other),
        }
    })
    .await;
}

async fn presence_follows_connections_and_is_only_for_contacts(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let carol = server.user("carol").await;
    let url = server.url.as_str();
    let bob_id = bob.user_id().to_string();
    assert_eq!(presence(url, &alice, &bob_id).await, (200, Some(false)));
    let (live, _) = connect(&bob).await;
    assert_eq!(presence(url, &alice, &bob_id).await, (200, Some(true)));
    // A user sees their own presence; a stranger learns nothing, not even that Bob exists.
    assert_eq!(presence(url, &bob, &bob_id).await, (200, Some(true)));
    assert_eq!(presence(url, &carol, &bob_id).await, (404, None));
    let nobody = UserId::new().to_string();
    assert_eq!(presence(url, &alice, &nobody).await, (404, None));
    assert_eq!(presence(url, &alice, "not-a-user-id").await, (400, None));
    let anonymous = server
        .raw(
            reqwest::Method::GET,
            &format!("/v1/users/{bob_id}/presence"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    live.close().await;
    wait_for(url, &alice, bob.user_id(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_crosses_nodes_and_expires_with_a_dead_node() {
    let Some(redis) = natter_test_support::redis_url() else {
        return;
    };
    let Some(database) = TestDatabase::create(Backend::Postgres).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster_name();
    let args = [
        "--redis-url",
        redis.as_str(),
        "--cluster-name",
        cluster.as_str(),
    ];
    let url = database.url_text();
    let a = Natterd::start(dir.path(), Some(&url), &args).await;
    let mut b = Natterd::start(dir.path(), Some(&url), &args).await;
    let alice = register(&a.client, "alice").await;
    let bob = register(&a.client, "bob").await;
    connect_users(&alice, &bob).await;
    let carol_on_b = crate::helpers::same_device(&b.client, &register(&a.client, "carol").await);

    // Bob connects to node B; Alice asks node A.
    let bob_on_b = crate::helpers::same_device(&b.client, &bob);
    let (live, _) = connect(&bob_on_b).await;
    wait_for(&a.url, &alice, bob.user_id(), true).await;
    live.close().await;
    wait_for(&a.url, &alice, bob.user_id(), false).await;

    // Node B dies with Bob connected: it cannot say he left, yet he goes offline once B's
    // heartbeat lapses (10 s), not never.
    let (_held, _) = connect(&bob_on_b).await;
    wait_for(&a.url, &alice, bob.user_id(), true).await;
    // Redis loses the presence hashes (as when it restarts empty), and Carol connects to B
    // right after, which makes B's hash again with her alone in it: B still finds out at its
    // next heartbeat and writes all its users again.
    forget_presence(&redis, &cluster).await;
    let (_carol_live, _) = connect(&carol_on_b).await;
    wait_for(&a.url, &alice, bob.user_id(), true).await;
    b.signal("KILL").await;
    wait_for(&a.url, &alice, bob.user_id(), false).await;
}

/// Deletes every node's presence hash of `cluster`.
async fn forget_presence(redis: &str, cluster: &str) {
    let mut connection = redis::Client::open(redis)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{cluster}:node:*:users"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "no presence hash to forget");
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut connection)
        .await
        .unwrap();
}
