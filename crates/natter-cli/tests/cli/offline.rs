//! With the server away, people and rooms are still named: sends, blocks, history, search and
//! the chat work from the encrypted store, queued work shows as pending and goes out exactly
//! once; and read marks include reads made while a device was away.

use super::{Relay, capture, chat_command, eventually, has_tmux, json_lines, ok, server, tmux};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_name_while_the_server_is_away_then_delivered_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = server(dir.path()).await;
    let relay = Relay::start(&url).await;
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|n| dir.path().join(n));
    ok(&relay.url, &alice, &["register", "alice"]).await;
    ok(&relay.url, &alice, &["login", "alice"]).await;
    for (home, name) in [(&bob, "bob"), (&carol, "carol")] {
        ok(&url, home, &["register", name]).await;
        ok(&url, home, &["login", name]).await;
        ok(&relay.url, &alice, &["connections", "request", name]).await;
        ok(&url, home, &["connections", "accept", "alice"]).await;
    }
    ok(
        &relay.url,
        &alice,
        &["rooms", "create", "team", "bob", "carol"],
    )
    .await;
    ok(&url, &bob, &["send", "alice", "before the outage"]).await;
    ok(&relay.url, &alice, &["sync"]).await;

    relay.set_up(false);
    for (args, field) in [
        (&["send", "bob", "offline to bob"][..], "sent"),
        (&["send", "team", "offline to the team"], "sent"),
        (&["connections", "block", "carol"], "confirmed"),
    ] {
        let args: Vec<&str> = std::iter::once("--json")
            .chain(args.iter().copied())
            .collect();
        let shown = ok(&relay.url, &alice, &args).await;
        assert_eq!(json_lines(&shown)[0][field], false, "queued here: {shown}");
    }
    let history = ok(&relay.url, &alice, &["history", "bob"]).await;
    assert!(history.contains("bob: before the outage"), "{history}");
    assert!(
        history.contains("alice: offline to bob ◷ pending"),
        "{history}"
    );
    let found = ok(&relay.url, &alice, &["search", "outage", "--in", "bob"]).await;
    assert!(found.contains("bob: before the outage"), "{found}");
    if has_tmux() {
        let session = tmux("offline-chat", &chat_command(&relay.url, &alice, "bob"));
        eventually("the chat from the store", async || {
            let screen = capture(&session.0);
            screen.contains("offline")
                && screen.contains("bob: before the outage")
                && screen.contains("offline to bob ◷ pending")
        })
        .await;
    }

    relay.set_up(true);
    assert_eq!(
        ok(&relay.url, &alice, &["sync"]).await,
        "received 0, sent 2\n"
    );
    assert_eq!(
        ok(&relay.url, &alice, &["sync"]).await,
        "received 0, sent 0\n"
    );
    let count = |text: &str, what: &str| text.matches(what).count();
    let at_bob = ok(&url, &bob, &["history", "alice"]).await;
    assert_eq!(count(&at_bob, "offline to bob"), 1, "{at_bob}");
    let in_room = ok(&url, &bob, &["history", "team"]).await;
    assert_eq!(count(&in_room, "offline to the team"), 1, "{in_room}");
    let history = ok(&relay.url, &alice, &["history", "bob"]).await;
    assert_eq!(count(&history, "offline to bob"), 1, "{history}");
    assert!(!history.contains("pending"), "{history}");
    assert!(
        ok(&relay.url, &alice, &["connections", "list"])
            .await
            .contains("blocked   carol")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_marks_include_reads_made_while_away() {
    let dir = tempfile::tempdir().unwrap();
    let url = server(dir.path()).await;
    let relay = Relay::start(&url).await;
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|n| dir.path().join(n));
    for (home, name, at) in [
        (&alice, "alice", &url),
        (&bob, "bob", &relay.url),
        (&carol, "carol", &url),
    ] {
        ok(at, home, &["register", name]).await;
        ok(at, home, &["login", name]).await;
    }
    for (home, name, at) in [(&bob, "bob", &relay.url), (&carol, "carol", &url)] {
        ok(&url, &alice, &["connections", "request", name]).await;
        ok(at, home, &["connections", "accept", "alice"]).await;
    }
    ok(&url, &alice, &["rooms", "create", "team", "bob", "carol"]).await;
    ok(&url, &alice, &["send", "bob", "read me later"]).await;
    ok(&url, &alice, &["send", "team", "read us later"]).await;
    ok(&relay.url, &bob, &["sync"]).await;
    let mark = async |with: &str| {
        let shown = json_lines(&ok(&url, &alice, &["--json", "history", with]).await);
        shown.last().unwrap().clone()
    };
    assert_eq!(mark("bob").await["mark"], "✓✓");
    assert_eq!(mark("team").await["mark"], "✓✓ delivered to 1 of 2");

    // Bob reads with his server away; carol reads the room online while alice is not
    // connected; bob's reads reach the server later, again while alice is away.
    relay.set_up(false);
    ok(&relay.url, &bob, &["history", "alice"]).await;
    ok(&relay.url, &bob, &["history", "team"]).await;
    ok(&url, &carol, &["history", "team"]).await;
    relay.set_up(true);
    ok(&relay.url, &bob, &["sync"]).await;

    assert_eq!(mark("bob").await["mark"], "✓✓ read");
    let room = mark("team").await;
    assert_eq!(room["mark"], "✓✓ read by 2 of 2", "{room}");
    assert_eq!(room["read_by"].as_array().unwrap().len(), 2, "{room}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_with_someone_stays_readable_after_blocking_and_unblocking() {
    let dir = tempfile::tempdir().unwrap();
    let (url, alice, bob) = super::alice_and_bob(dir.path()).await;
    ok(&url, &alice, &["send", "bob", "before the block"]).await;
    ok(&url, &bob, &["history", "alice"]).await;
    ok(&url, &bob, &["connections", "block", "alice"]).await;
    ok(&url, &bob, &["connections", "unblock", "alice"]).await;
    let history = ok(&url, &bob, &["history", "alice"]).await;
    assert!(history.contains("alice: before the block"), "{history}");
    let found = ok(&url, &bob, &["search", "block", "--in", "alice"]).await;
    assert!(found.contains("alice: before the block"), "{found}");
}
