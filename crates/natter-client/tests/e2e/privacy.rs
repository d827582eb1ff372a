//! The server never holds plaintext: after a conversation, its database (SQLite files, or
//! every PostgreSQL table) and its logs do not contain the text, while the devices can read
//! and search it (their stores are encrypted at rest too: see `at_rest`).

use std::io::Write;
use std::sync::{Arc, Mutex};

use natter_client::Device;
use natter_server::config::{DatabaseUrl, Secret};

use crate::helpers::{TestServer, texts};

const SENTINEL: &str = "sentinel-plaintext-7f3c2a9e-natter";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What natterd logs, captured in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Alice sends the sentinel to bob in a direct conversation and a room; bob reads both.
async fn converse(server: &TestServer) -> (Device, Device) {
    let (alice, bob, direct) = server.alice_and_bob().await;
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
    (alice, bob)
}

/// The devices read the text (so it was there to leak): their search finds it.
async fn assert_devices_find_it((alice, bob): (Device, Device)) {
    for device in [alice, bob] {
        let found = device.search(SENTINEL, None, None, 10).await.unwrap();
        assert_eq!(
            found.len(),
            2,
            "the sentinel in the direct conversation and the room"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_database_and_logs_never_hold_the_plaintext() {
    // The only test in this binary that installs natterd's logger, at info as in production.
    let logs = Captured::default();
    let writer = logs.clone();
    natter_server::telemetry::init(true, false, move || writer.clone());

    let mut server = TestServer::start().await;
    let devices = converse(&server).await;
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
    let logs = logs.0.lock().unwrap().clone();
    assert!(!logs.is_empty(), "natterd's logs were captured");
    assert!(
        !contains(&logs, SENTINEL.as_bytes()),
        "natterd logged the plaintext"
    );
    assert_devices_find_it(devices).await;
}

fn psql(url: &str, sql: &str) {
    let status = std::process::Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .status()
        .expect("running psql");
    assert!(status.success(), "psql failed: {sql}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_postgres_table_holds_the_plaintext() {
    let Some(admin) = natter_test_support::postgres_url() else {
        return;
    };
    let name = format!("natter_client_privacy_{}", std::process::id());
    psql(&admin, &format!("DROP DATABASE IF EXISTS {name}"));
    psql(&admin, &format!("CREATE DATABASE {name}"));
    let url = natter_test_support::with_database(&admin, &name);
    let mut server = TestServer::start_on(Some(DatabaseUrl::Postgres(Secret(url.clone())))).await;
    let devices = converse(&server).await;
    server.stop().await;
    // Every row of every table, as text.
    let dump = std::process::Command::new("pg_dump")
        .args(["--data-only", &url])
        .output()
        .expect("running pg_dump");
    psql(&admin, &format!("DROP DATABASE {name} WITH (FORCE)"));
    assert!(dump.status.success(), "pg_dump failed");
    assert!(
        contains(&dump.stdout, b"COPY public.messages"),
        "the dump has the messages"
    );
    assert!(
        !contains(&dump.stdout, SENTINEL.as_bytes()),
        "a table holds the plaintext"
    );
    assert_devices_find_it(devices).await;
}
