//! The server never holds plaintext: after a conversation, its database files do not
//! contain the text (while the devices' own stores do, which shows the search would find it).

use crate::helpers::{TestServer, texts};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_database_never_holds_the_plaintext() {
    const SENTINEL: &str = "sentinel-plaintext-7f3c2a9e-natter";
    let mut server = TestServer::start().await;
    let alice = server.user("alice").await;
    let bob = server.user("bob").await;
    let direct = server.connect(&alice, &bob).await;
    let room = alice
        .session()
        .create_room("private", &[bob.user_id()])
        .await
        .unwrap()
        .summary
        .id;
    for conversation in [direct, room] {
        alice.send_text(conversation, SENTINEL).await.unwrap();
    }
    alice.sync().await.unwrap();
    bob.sync().await.unwrap();
    assert_eq!(texts(&bob, direct).await, [SENTINEL]);
    assert_eq!(texts(&bob, room).await, [SENTINEL]);

    // Stop the server so everything it wrote is in its files.
    server.stop().await;
    let files = server.database_files();
    assert!(!files.is_empty());
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !contains(&bytes, SENTINEL.as_bytes()),
            "{} holds the plaintext",
            file.display()
        );
    }
    let bob_store = std::fs::read_dir(server.dir.path().join("devices"))
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .any(|bytes| contains(&bytes, SENTINEL.as_bytes()));
    assert!(
        bob_store,
        "the search method finds the text where it is stored"
    );
}
