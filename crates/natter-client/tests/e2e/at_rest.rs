//! At rest: nothing a device writes to its data directory tells a message, a contact or the
//! login to someone who copies it without the passphrase, while the device is open and after
//! it closed; the passphrase opens it again, search included, and a wrong one opens nothing.

use std::path::{Path, PathBuf};

use natter_client::{ClientError, Device};

use crate::helpers::{TestServer, texts};

/// The passphrase the helpers' devices are logged in with.
const PASSPHRASE: &str = "store passphrase";

const ASCII: &str = "zebra-marker-4711";
const NON_ASCII: &str = "밤하늘-ünïcödé-marker";

/// Every file below `dir`, read whole: the databases, their WAL and shared memory, anything.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the data directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            let bytes = std::fs::read(&path).expect("reading a file");
            found.push((path, bytes));
        }
    }
    found.sort();
    found
}

/// Asserts that no file below `dir` holds any of `secrets` (as UTF-8 bytes), and that the
/// scan read the devices' databases (so an empty scan cannot pass).
fn assert_nowhere(dir: &Path, secrets: &[String]) {
    let files = files(dir);
    let databases = files
        .iter()
        .filter(|(_, bytes)| bytes.starts_with(b"SQLite format 3\0"))
        .count();
    assert!(databases >= 2, "the scan read both devices' databases");
    for (path, bytes) in &files {
        for secret in secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds {secret:?}",
                path.display()
            );
        }
    }
}

/// Alice (`zoe_at_rest`) and bob (`yann_at_rest`, display name `Yannick Marker`), connected;
/// each sends both markers in their direct conversation and in a room, and each reads all.
/// Returns what must be in no file: markers, names, ids, tokens and recovery keys.
async fn converse(server: &TestServer) -> (Device, Device, Vec<String>) {
    let client = natter_client::Client::new(&server.url).unwrap();
    client
        .register("zoe_at_rest", "password123", Some("Zoe Marker"))
        .await
        .unwrap();
    client
        .register("yann_at_rest", "password123", Some("Yannick Marker"))
        .await
        .unwrap();
    // First devices: each makes its user's identity and shows a recovery key.
    let alice = server.unapproved_device("zoe_at_rest", "laptop").await;
    let bob = server.unapproved_device("yann_at_rest", "phone").await;
    let mut recovery_keys = Vec::new();
    for device in [&alice, &bob] {
        let key = device.take_recovery_key().await.unwrap();
        recovery_keys.push(key.expect("a first device shows a recovery key"));
    }
    let direct = server.connect(&alice, &bob).await;
    let room = alice
        .session()
        .create_room("marker room", &[bob.user_id()])
        .await
        .unwrap()
        .summary
        .id;
    let markers = |who: &str| [format!("{who} {ASCII}"), format!("{who} {NON_ASCII}")];
    for conversation in [direct, room] {
        for text in markers("from alice") {
            alice.send_text(conversation, &text).await.unwrap();
        }
        alice.sync().await.unwrap();
        bob.sync().await.unwrap();
        for text in markers("from bob") {
            bob.send_text(conversation, &text).await.unwrap();
        }
        bob.sync().await.unwrap();
        alice.sync().await.unwrap();
        let all = [markers("from alice"), markers("from bob")].concat();
        assert_eq!(texts(&alice, conversation).await, all);
        assert_eq!(texts(&bob, conversation).await, all);
    }
    // Searching builds the in-memory index; it must not reach the files either.
    assert_eq!(alice.search(ASCII, None, None, 10).await.unwrap().len(), 4);
    assert_eq!(
        bob.search(NON_ASCII, None, None, 10).await.unwrap().len(),
        4
    );
    let mut secrets = vec![
        ASCII.to_owned(),
        NON_ASCII.to_owned(),
        "밤하늘".to_owned(),
        "zoe_at_rest".to_owned(),
        "yann_at_rest".to_owned(),
        "Yannick Marker".to_owned(),
        "Zoe Marker".to_owned(),
        "marker room".to_owned(),
        direct.to_string(),
        room.to_string(),
        server.url.clone(),
    ];
    secrets.extend(recovery_keys);
    for device in [&alice, &bob] {
        secrets.push(device.session().token().to_owned());
        secrets.push(device.user_id().to_string());
        secrets.push(device.device_id().to_string());
    }
    (alice, bob, secrets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn markers_names_ids_and_tokens_are_in_no_file_open_or_closed() {
    let server = TestServer::start().await;
    let devices = server.dir.path().join("devices");
    let (alice, bob, secrets) = converse(&server).await;

    // While open: the write-ahead log holds the latest writes.
    assert!(
        files(&devices)
            .iter()
            .any(|(path, _)| path.to_string_lossy().ends_with("-wal")),
        "the scan covers an open store's WAL"
    );
    assert_nowhere(&devices, &secrets);

    drop((alice, bob));
    assert_nowhere(&devices, &secrets);

    // The passphrase opens the stores again: history and search work, for sent and received.
    for (username, name) in [("zoe_at_rest", "laptop"), ("yann_at_rest", "phone")] {
        let device = Device::open(&server.store_path(username, name), PASSPHRASE)
            .await
            .unwrap();
        for marker in [ASCII, NON_ASCII] {
            let found = device.search(marker, None, None, 10).await.unwrap();
            let mut bodies: Vec<String> = found.into_iter().map(|m| m.body.unwrap()).collect();
            bodies.sort();
            assert_eq!(
                bodies,
                [
                    format!("from alice {marker}"),
                    format!("from alice {marker}"),
                    format!("from bob {marker}"),
                    format!("from bob {marker}"),
                ]
            );
        }
        assert_eq!(device.username().await.unwrap(), username);
    }
    assert_nowhere(&devices, &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_passphrase_opens_nothing_and_says_so() {
    let server = TestServer::start().await;
    let alice = server.user("alice").await;
    let path = server.store_path("alice", "first");
    drop(alice);
    let before = files(path.parent().unwrap());

    let error = Device::open(&path, "store passphrasf").await.unwrap_err();
    assert!(matches!(error, ClientError::WrongPassphrase), "{error:?}");
    assert!(
        error.to_string().contains("wrong passphrase"),
        "a clear message: {error}"
    );
    // Trying changed nothing on disk.
    assert_eq!(files(path.parent().unwrap()), before);
    assert!(Device::open(&path, PASSPHRASE).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_passphrase_opens_the_store_and_the_old_one_no_more() {
    let server = TestServer::start().await;
    let (alice, bob, texts_sent) = converse(&server).await;
    let path = server.store_path("zoe_at_rest", "laptop");
    let readable = alice.search(&texts_sent[0], None, None, 10).await.unwrap();
    assert!(!readable.is_empty());

    let wrong = alice
        .change_passphrase("not the passphrase", "new passphrase")
        .await
        .unwrap_err();
    assert!(matches!(wrong, ClientError::WrongPassphrase), "{wrong:?}");
    alice
        .change_passphrase(PASSPHRASE, "new passphrase")
        .await
        .unwrap();
    drop(alice);
    drop(bob);

    let old = Device::open(&path, PASSPHRASE).await.unwrap_err();
    assert!(matches!(old, ClientError::WrongPassphrase), "{old:?}");
    let alice = Device::open(&path, "new passphrase").await.unwrap();
    let found = alice.search(&texts_sent[0], None, None, 10).await.unwrap();
    assert_eq!(found.len(), readable.len(), "the same messages, readable");
    alice.sync().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offline_queue_is_sealed_and_delivers_once_after_reopening() {
    let mut server = TestServer::start().await;
    let (alice, bob, direct) = server.alice_and_bob().await;
    let alice_path = server.store_path("alice", "first");

    server.stop().await;
    for marker in [ASCII, NON_ASCII] {
        alice.send_text(direct, marker).await.unwrap();
    }
    assert!(alice.sync().await.is_err(), "the server is down");
    let devices = server.dir.path().join("devices");
    let secrets = [ASCII.to_owned(), NON_ASCII.to_owned()];
    assert_nowhere(&devices, &secrets);
    drop(alice);
    assert_nowhere(&devices, &secrets);

    let alice = Device::open(&alice_path, PASSPHRASE).await.unwrap();
    assert_eq!(alice.queued().await.unwrap().len(), 2);
    server.restart().await;
    assert_eq!(alice.sync().await.unwrap().sent, 2);
    assert!(alice.queued().await.unwrap().is_empty());
    assert_eq!(alice.sync().await.unwrap().sent, 0);
    bob.sync().await.unwrap();
    assert_eq!(texts(&bob, direct).await, [ASCII, NON_ASCII]);
    assert_eq!(texts(&alice, direct).await, [ASCII, NON_ASCII]);
    assert_nowhere(&devices, &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_leaves_no_file() {
    let server = TestServer::start().await;
    natter_client::Client::new(&server.url)
        .unwrap()
        .register("alice", "password123", None)
        .await
        .unwrap();
    let path = server.store_path("alice", "laptop");
    let refused = Device::login(
        &server.url,
        "alice",
        "not the password",
        "laptop",
        &path,
        PASSPHRASE,
    )
    .await
    .unwrap_err();
    assert_eq!(refused.status(), Some(401), "{refused:?}");
    assert!(
        !path.parent().unwrap().exists(),
        "the refused login left {:?}",
        files(path.parent().unwrap())
    );
}
