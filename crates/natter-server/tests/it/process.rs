//! The real `natterd` binary: one command starts it on the embedded default, SIGTERM stops it
//! cleanly, and `kill -9` under traffic loses no acknowledged message.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use natter_client::Client;
use natter_proto::ws::ServerFrame;

use crate::helpers::{Backend, TestDatabase, backend_tests, connect_users, same_device};
use crate::ws::{connect, next};

backend_tests!(acked_messages_survive_kill_9_under_traffic);

/// A port nothing listens on now (the OS's pick, released for the caller to bind).
pub(crate) fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// A natterd process, killed when dropped. Its stderr is read as it comes (a full pipe would
/// block the server).
pub(crate) struct Natterd {
    child: Child,
    log: Option<std::thread::JoinHandle<String>>,
    pub(crate) client: Client,
    /// The API's base URL (`http://127.0.0.1:PORT`).
    pub(crate) url: String,
    /// The admin listener's base URL (metrics).
    pub(crate) admin_url: String,
}

impl Natterd {
    /// Starts natterd (logging at debug level) with test-friendly settings and `extra`
    /// arguments, and waits until it answers.
    pub(crate) async fn start(
        dir: &std::path::Path,
        database_url: Option<&str>,
        extra: &[&str],
    ) -> Self {
        Self::start_on(free_port(), dir, database_url, extra).await
    }

    /// Like [`Natterd::start`], listening on `port` (to replace a node where clients know it).
    pub(crate) async fn start_on(
        port: u16,
        dir: &std::path::Path,
        database_url: Option<&str>,
        extra: &[&str],
    ) -> Self {
        let admin_port = free_port();
        let command = command(port, admin_port, dir, database_url, extra);
        Self::launch(command, port, admin_port).await
    }

    /// Like [`Natterd::start`], with `RUST_LOG` set to `level`.
    pub(crate) async fn start_logging(
        level: &str,
        dir: &std::path::Path,
        database_url: Option<&str>,
        extra: &[&str],
    ) -> Self {
        let (port, admin_port) = (free_port(), free_port());
        let mut command = command(port, admin_port, dir, database_url, extra);
        command.env("RUST_LOG", level);
        Self::launch(command, port, admin_port).await
    }

    /// Starts `command` (natterd on `port`, its admin listener on `admin_port`) and waits until
    /// it answers.
    async fn launch(mut command: Command, port: u16, admin_port: u16) -> Self {
        let mut child = command.spawn().expect("starting natterd");
        let log = read_output(&mut child);
        let url = format!("http://127.0.0.1:{port}");
        let client = Client::new(&url).unwrap();
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if http
                .get(format!("{url}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Self {
                    child,
                    log: Some(log),
                    client,
                    url,
                    admin_url: format!("http://127.0.0.1:{admin_port}"),
                };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "natterd exited ({status}) while starting:\n{}",
                    log.join().unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("natterd did not come up within 30 s");
    }

    /// Runs natterd (as [`Natterd::start`] would) where it must refuse to start: its exit
    /// status and its whole output.
    pub(crate) async fn refused(
        dir: &std::path::Path,
        database_url: Option<&str>,
        extra: &[&str],
    ) -> (std::process::ExitStatus, String) {
        let mut command = command(free_port(), free_port(), dir, database_url, extra);
        let mut child = command.spawn().expect("starting natterd");
        let log = read_output(&mut child);
        for _ in 0..300 {
            if let Some(status) = child.try_wait().unwrap() {
                return (status, log.join().unwrap());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        panic!(
            "natterd kept running where it must refuse to start:\n{}",
            log.join().unwrap()
        );
    }

    /// Sends a signal (`TERM`, `KILL`), waits for the exit, and returns it with the whole log.
    pub(crate) async fn signal(&mut self, signal: &str) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let log = self.log.take().expect("signalled once").join().unwrap();
        (status, log)
    }
}

/// The natterd command, run in `dir`, logging at debug level, listening on `port` (its admin
/// listener on `admin_port`), with test-friendly settings and `extra` arguments.
fn command(
    port: u16,
    admin_port: u16,
    dir: &std::path::Path,
    database_url: Option<&str>,
    extra: &[&str],
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_natterd"));
    command
        .current_dir(dir)
        .env_remove("NATTER_DATABASE_URL")
        .env("RUST_LOG", "debug")
        .env("NATTER_LISTEN", format!("127.0.0.1:{port}"))
        .env("NATTER_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}"))
        .args([
            "--argon2-memory-kib",
            "8",
            "--argon2-iterations",
            "1",
            "--send-rate",
            "10000",
            "--send-burst",
            "10000",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(url) = database_url {
        command.args(["--database-url", url]);
    }
    command
}

/// Reads a child's stderr and stdout as they come (a full pipe would block it): joined, the
/// thread gives both, stderr first.
fn read_output(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut stderr = child.stderr.take().expect("piped stderr");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text + &out.join().unwrap_or_default()
    })
}

impl Drop for Natterd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn natterd_starts_on_its_embedded_default_and_stops_on_sigterm() {
    starts_on_its_embedded_default_and_drains_on("TERM").await;
}

/// A hang-up (the terminal closing) drains and stops natterd like SIGTERM, not kills it.
#[tokio::test]
async fn natterd_drains_and_stops_on_sighup() {
    starts_on_its_embedded_default_and_drains_on("HUP").await;
}

/// natterd with no flags keeps a private database in ./natter-data/, and `signal` drains it
/// (connected clients are told to reconnect) and stops it cleanly.
async fn starts_on_its_embedded_default_and_drains_on(signal: &str) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let mut natterd = Natterd::start(dir.path(), None, &[]).await;
    natterd
        .client
        .register("alice", "password123", None)
        .await
        .unwrap();
    let alice = natterd
        .client
        .login("alice", "password123", "laptop")
        .await
        .unwrap();
    let (mut connection, _) = connect(&alice).await;
    let data = dir.path().join("natter-data");
    assert!(
        data.join("natter.db").exists(),
        "the embedded database lives in ./natter-data/"
    );
    // Private to natterd's user: the directory, the database, its WAL and shared memory.
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "natter-data/");
    for file in ["natter.db", "natter.db-wal", "natter.db-shm"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    let (status, log) = natterd.signal(signal).await;
    // Connected clients were told to reconnect elsewhere; the process exited cleanly.
    match next(&mut connection).await {
        Err(natter_client::ClientError::Closed(closed)) => assert_eq!(closed.code, Some(1012)),
        other => panic!("expected the draining close (1012), got {other:?}"),
    }
    assert!(
        status.success(),
        "natterd exits 0 on SIG{signal}: {status:?}"
    );
    assert!(
        log.contains(&format!("SIG{signal}: shutting down")),
        "{log}"
    );
    assert!(log.contains("drained"), "{log}");
    for secret in ["password123", alice.token()] {
        assert!(!log.contains(secret), "secrets never reach the log");
    }
}

async fn acked_messages_survive_kill_9_under_traffic(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = database.url_text();
    let mut natterd = Natterd::start(dir.path(), Some(&url), &[]).await;
    let client = natterd.client.clone();
    for name in ["alice", "bob"] {
        client.register(name, "password123", None).await.unwrap();
    }
    let alice = client
        .login("alice", "password123", "laptop")
        .await
        .unwrap();
    let bob = client.login("bob", "password123", "phone").await.unwrap();
    connect_users(&alice, &bob).await;
    let direct = alice.open_direct(bob.user_id()).await.unwrap().summary.id;

    // Alice sends as fast as acks come back; the process is killed mid-stream.
    let acked_count = Arc::new(AtomicI64::new(0));
    let (mut a, _) = connect(&alice).await;
    let counter = Arc::clone(&acked_count);
    let sender = tokio::spawn(async move {
        let mut acked: HashMap<String, i64> = HashMap::new();
        let mut attempted = 0;
        for i in 0.. {
            let id = format!("m{i}");
            if a.send_message(direct, &id, &format!("body {i}"))
                .await
                .is_err()
            {
                break;
            }
            attempted = i + 1;
            match next(&mut a).await {
                Ok(ServerFrame::Ack(ack)) => {
                    acked.insert(ack.client_msg_id, ack.seq);
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(_) => break,
            }
        }
        (acked, attempted)
    });
    while acked_count.load(Ordering::SeqCst) < 150 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    natterd.signal("KILL").await;
    let (acked, attempted) = sender.await.unwrap();
    assert!(acked.len() >= 150);

    // Restart on the same database: every acked message is there, at its acked seq.
    let natterd = Natterd::start(dir.path(), Some(&url), &[]).await;
    let alice = same_device(&natterd.client, &alice);
    let mut stored = HashMap::new();
    let mut after = 0;
    loop {
        let page = alice
            .history(direct, Some(after), None, Some(500))
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        for message in page {
            assert!(
                stored
                    .insert(message.client_msg_id.clone(), message.seq)
                    .is_none(),
                "stored twice"
            );
        }
    }
    for (id, seq) in &acked {
        assert_eq!(
            stored.get(id),
            Some(seq),
            "acked message {id} lost or moved"
        );
    }
    // A message in flight at the kill may or may not be stored; resending every attempted id
    // (what a client does for unacked sends) stores each exactly once.
    let (mut a, _) = connect(&alice).await;
    for i in 0..attempted {
        let id = format!("m{i}");
        a.send_message(direct, &id, &format!("body {i}"))
            .await
            .unwrap();
        match next(&mut a).await.unwrap() {
            ServerFrame::Ack(ack) => {
                if let Some(seq) = acked.get(&id) {
                    assert_eq!(ack.seq, *seq, "a resend is acked with the original seq");
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let total = alice.history(direct, None, None, Some(500)).await.unwrap();
    assert_eq!(
        total.len() as i64,
        attempted,
        "each attempted message is stored exactly once"
    );
}

/// A whole conversation at debug level: no password, token, key, ciphertext or to-device
/// payload may appear in what the server logs.
#[tokio::test]
async fn the_log_never_contains_secrets_or_content() {
    a_conversation_logs_no_secret("debug").await;
}

/// The same at trace level, where the WebSocket library would log whole frames if it could.
#[tokio::test]
async fn the_log_never_contains_secrets_or_content_at_trace() {
    a_conversation_logs_no_secret("trace").await;
}

/// A whole conversation, with natterd logging at `level` (`RUST_LOG`): no password, token,
/// key, ciphertext or to-device payload may appear in what it prints, as text or as the hex
/// some libraries print payloads in.
async fn a_conversation_logs_no_secret(level: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut natterd = Natterd::start_logging(level, dir.path(), None, &["--log-json"]).await;
    let client = natterd.client.clone();
    client
        .register("alice", "sentinel-password-a", None)
        .await
        .unwrap();
    client
        .register("bob", "sentinel-password-b", None)
        .await
        .unwrap();
    let _ = client.login("bob", "wrong-sentinel-guess", "x").await;
    let alice = client
        .login("alice", "sentinel-password-a", "laptop")
        .await
        .unwrap();
    let bob = client
        .login("bob", "sentinel-password-b", "phone")
        .await
        .unwrap();
    let key = "c2VudGluZWwta2V5LXNlbnRpbmVsLWtleS0zMmJ5dGU"; // 32 bytes
    let upload = natter_proto::keys::UploadKeysRequest {
        one_time_keys: vec![natter_proto::keys::OneTimeKey {
            key_id: "k1".into(),
            key: key.into(),
        }],
        ..Default::default()
    };
    alice.upload_keys(&upload).await.unwrap();
    connect_users(&alice, &bob).await;
    bob.claim_key(alice.user_id(), alice.device_id())
        .await
        .unwrap();
    let direct = alice.open_direct(bob.user_id()).await.unwrap().summary.id;
    let (mut a, _) = connect(&alice).await;
    let (mut b, _) = connect(&bob).await;
    crate::ws::send(&mut a, direct, "c1", "SENTINEL-CIPHERTEXT-1").await;
    assert_eq!(
        crate::ws::message(&mut b).await.ciphertext,
        "SENTINEL-CIPHERTEXT-1"
    );
    let share = crate::ws::to_device(&bob, "SENTINEL-ROOM-KEY");
    a.send(&share).await.unwrap();
    a.send_text("{\"type\":\"send\",\"ciphertext\":\"SENTINEL-IN-BAD-FRAME\"}".into())
        .await
        .unwrap();
    crate::ws::error(&mut a).await;
    crate::ws::ping(&mut a, 1).await;
    // A browser-style connection: the token goes in an `auth` frame.
    {
        use futures_util::{SinkExt, StreamExt};
        let ws_url = crate::helpers::ws_url(&natterd.url);
        let (mut socket, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
        let auth = serde_json::json!({"type": "auth", "token": bob.token()}).to_string();
        socket
            .send(tokio_tungstenite::tungstenite::Message::text(auth))
            .await
            .unwrap();
        let ready = socket.next().await.unwrap().unwrap();
        assert!(ready.to_text().unwrap().contains("ready"), "{ready:?}");
    }
    bob.clone().logout().await.unwrap();
    let (_, log) = natterd.signal("TERM").await;
    assert!(
        log.contains("connected"),
        "the log has the session events: {log}"
    );
    for secret in [
        "sentinel-password-a",
        "sentinel-password-b",
        "wrong-sentinel-guess",
        alice.token(),
        bob.token(),
        key,
        "SENTINEL-CIPHERTEXT-1",
        "SENTINEL-ROOM-KEY",
        "SENTINEL-IN-BAD-FRAME",
    ] {
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(!log.contains(secret), "{secret} appears in the {level} log");
        assert!(
            !log.contains(&hex),
            "{secret} appears in hex in the {level} log"
        );
    }
}
