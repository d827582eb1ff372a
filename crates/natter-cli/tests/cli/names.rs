//! People show by display name, even members one is not connected to, and names of rooms
//! cannot send a message somewhere it was not meant to go.

use std::path::PathBuf;

use super::{
    capture, chat_command, eventually, has_tmux, json_lines, natter, ok, server, tmux, tmux_on,
};

/// A server and alice, bob and carol (display names given), alice connected to both and bob
/// and carol strangers to each other.
async fn three(dir: &std::path::Path) -> (String, PathBuf, PathBuf, PathBuf) {
    let url = server(dir).await;
    let homes: Vec<PathBuf> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| dir.join(n))
        .collect();
    for (home, name, shown) in [
        (&homes[0], "alice", "Alice Liddell"),
        (&homes[1], "bob", "Bob Builder"),
        (&homes[2], "carol", "Carol Danvers"),
    ] {
        ok(&url, home, &["register", name, "--display-name", shown]).await;
        ok(&url, home, &["login", name]).await;
    }
    for (home, name) in [(&homes[1], "bob"), (&homes[2], "carol")] {
        ok(&url, &homes[0], &["connections", "request", name]).await;
        ok(&url, home, &["connections", "accept", "alice"]).await;
    }
    let [alice, bob, carol] = <[PathBuf; 3]>::try_from(homes).unwrap();
    (url, alice, bob, carol)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_show_by_display_name_in_a_room_of_strangers() {
    let dir = tempfile::tempdir().unwrap();
    let (url, alice, bob, carol) = three(dir.path()).await;
    ok(&url, &alice, &["rooms", "create", "team", "bob", "carol"]).await;
    ok(&url, &carol, &["send", "team", "hello team"]).await;

    let history = ok(&url, &bob, &["history", "team"]).await;
    assert!(history.contains("Carol Danvers: hello team"), "{history}");
    let shown = json_lines(&ok(&url, &bob, &["--json", "history", "team"]).await);
    assert_eq!(shown[0]["sender"], "carol");
    assert_eq!(shown[0]["sender_name"], "Carol Danvers");

    // A new display name shows at once.
    ok(
        &url,
        &carol,
        &["profile", "--display-name", "Captain Marvel"],
    )
    .await;
    let history = ok(&url, &bob, &["history", "team"]).await;
    assert!(history.contains("Captain Marvel: hello team"), "{history}");
    let rooms = json_lines(&ok(&url, &bob, &["--json", "rooms", "list"]).await);
    let team = rooms.iter().find(|r| r["title"] == "team").unwrap();
    let members: Vec<&str> = team["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    for name in ["Alice Liddell", "Bob Builder", "Captain Marvel"] {
        assert!(members.contains(&name), "{members:?}");
    }

    // And on the chat screen: in the log and in the member list.
    if !has_tmux() {
        return;
    }
    let session = tmux("names", &chat_command(&url, &bob, "team"));
    tmux_on(
        &session.0,
        &["resize-window", "-t", &session.0, "-x", "130", "-y", "24"],
    );
    eventually("names on the chat screen", async || {
        let screen = capture(&session.0);
        screen.contains("Captain Marvel: hello team")
            && screen.contains("3 members")
            && screen.contains("Alice Liddell")
            && screen.contains("Bob Builder (you)")
    })
    .await;
    let screen = capture(&session.0);
    assert!(!screen.contains("user "), "nobody shows as an id: {screen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_room_name_is_refused_and_an_id_prefix_names_a_room() {
    let dir = tempfile::tempdir().unwrap();
    let (url, alice, bob, carol) = three(dir.path()).await;
    let create = async |members: &[&str]| {
        let mut args = vec!["--json", "rooms", "create", "team"];
        args.extend(members);
        json_lines(&ok(&url, &alice, &args).await)[0]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let with_bob = create(&["bob"]).await;
    let with_carol = create(&["carol"]).await;

    let refused = natter(&url, &alice, &["send", "team", "meant for one of them"]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    for expected in [
        "'team' names 2 conversations",
        &with_bob,
        &with_carol,
        "Bob Builder",
        "Carol Danvers",
    ] {
        assert!(stderr.contains(expected), "{expected} missing: {stderr}");
    }
    for home in [&bob, &carol] {
        assert!(
            !ok(&url, home, &["history", "team"])
                .await
                .contains("meant for")
        );
    }
    let refused = natter(
        &url,
        &alice,
        &["--json", "send", "team", "meant for one of them"],
    )
    .await;
    assert_eq!(refused.status.code(), Some(6));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let error: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap();
    assert_eq!(error["error"]["code"], "ambiguous", "{stderr}");
    let candidates = error["error"]["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 2);
    assert!(candidates.iter().any(|c| {
        c["id"] == with_carol.as_str()
            && c["members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m == "Carol Danvers")
    }));

    // The shortest prefix that tells carol's room from every other conversation names it.
    let all: Vec<String> = json_lines(&ok(&url, &alice, &["--json", "rooms", "list"]).await)
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    let unique = (4..with_carol.len())
        .map(|n| &with_carol[..n])
        .find(|p| all.iter().filter(|id| id.starts_with(p)).count() == 1)
        .unwrap();
    ok(&url, &alice, &["send", unique, "for carol's team"]).await;
    assert!(
        ok(&url, &carol, &["history", "team"])
            .await
            .contains("for carol's team")
    );
    assert!(
        !ok(&url, &bob, &["history", "team"])
            .await
            .contains("for carol's team")
    );
    // A prefix every conversation shares is refused the same way.
    let shared = natter(&url, &alice, &["send", &with_carol[..4], "nowhere"]).await;
    assert!(!shared.status.success());
    assert!(String::from_utf8_lossy(&shared.stderr).contains("conversations; name one by its id"));
}
