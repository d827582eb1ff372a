//! A real server on a fixed loopback address (so it can restart where devices expect it),
//! and devices with their own temporary stores.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use natter_client::{Client, Device, Event};
use natter_crypto::MasterKey;
use natter_server::config::{Config, DatabaseUrl};
use natter_server::ratelimit::{Limits, Rate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// A failure guard, never a timing assumption: every wait here ends as soon as its
/// condition holds.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A server with its SQLite database in a temporary directory, plus the devices' stores.
pub struct TestServer {
    pub url: String,
    address: SocketAddr,
    pub dir: tempfile::TempDir,
    database: Option<DatabaseUrl>,
    running: Option<(oneshot::Sender<()>, JoinHandle<anyhow::Result<()>>)>,
    /// Each user's recovery key, as written down at the first login.
    recovery_keys: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl TestServer {
    /// A server on a fresh SQLite database.
    pub async fn start() -> Self {
        Self::start_on(None).await
    }

    /// A server on `database` (a fresh SQLite file when `None`).
    pub async fn start_on(database: Option<DatabaseUrl>) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding an ephemeral port");
        let address = listener.local_addr().expect("listener address");
        let mut server = Self {
            url: format!("http://{address}"),
            address,
            dir,
            database,
            running: None,
            recovery_keys: std::sync::Mutex::default(),
        };
        server.serve(listener).await;
        server
    }

    /// Runs `sql` on the server's database directly, as its operator could, and returns the
    /// first column of the first row it selects (if any), as text.
    pub fn operator_sql(&self, sql: &str) -> Option<String> {
        match &self.database {
            Some(DatabaseUrl::Postgres(url)) => {
                let output = std::process::Command::new("psql")
                    .args([url.0.as_str(), "-v", "ON_ERROR_STOP=1", "-tA", "-c", sql])
                    .output()
                    .expect("running psql");
                assert!(output.status.success(), "psql failed: {sql}");
                let text = String::from_utf8(output.stdout).expect("psql prints text");
                text.lines().next().map(str::to_owned)
            }
            _ => {
                let db = rusqlite::Connection::open(self.dir.path().join("server/natter.db"))
                    .expect("opening the server's database");
                db.busy_timeout(Duration::from_secs(10))
                    .expect("a busy timeout");
                let mut statement = db.prepare(sql).expect("a valid statement");
                let mut rows = statement.query([]).expect("running the statement");
                rows.next()
                    .expect("reading a row")
                    .map(|row| row.get::<_, String>(0).expect("a text column"))
            }
        }
    }

    /// The server's database file and its journal files.
    pub fn database_files(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.dir.path().join("server"))
            .expect("the server directory")
            .map(|e| e.expect("a directory entry").path())
            .collect()
    }

    async fn serve(&mut self, listener: tokio::net::TcpListener) {
        std::fs::create_dir_all(self.dir.path().join("server")).expect("server directory");
        let mut config = Config::new(
            self.address,
            self.database
                .clone()
                .unwrap_or_else(|| DatabaseUrl::Sqlite(self.dir.path().join("server/natter.db"))),
        );
        // The cheapest argon2 settings, and no rate limits: tests are faster than people.
        config.argon2_memory_kib = 8;
        config.argon2_iterations = 1;
        config.limits = Limits::all(Rate::new(1e9, 1e9));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(natter_server::run(config, listener, None, async move {
            let _ = stopped.await;
        }));
        self.running = Some((stop, task));
        let http = reqwest::Client::new();
        wait_for("the server to be ready", async || {
            http.get(format!("{}/readyz", self.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
    }

    /// Stops the server: devices now find nothing at its address.
    pub async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            task.await.expect("server task").expect("clean exit");
        }
    }

    /// Starts the server again on the same address and database.
    pub async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.address)
            .await
            .expect("rebinding the server's address");
        self.serve(listener).await;
    }

    /// Registers `username` and logs in its first device, which creates the user's identity;
    /// keeps the recovery key it shows.
    pub async fn user(&self, username: &str) -> Device {
        Client::new(&self.url)
            .expect("a valid URL")
            .register(username, "password123", None)
            .await
            .expect("registering");
        let device = self.unapproved_device(username, "first").await;
        let key = device
            .take_recovery_key()
            .await
            .unwrap()
            .expect("the first device shows a recovery key");
        self.recovery_keys
            .lock()
            .unwrap()
            .insert(username.to_owned(), key);
        device
    }

    /// The recovery key `username`'s first device showed.
    pub fn recovery_key(&self, username: &str) -> String {
        self.recovery_keys.lock().unwrap()[username].clone()
    }

    /// Logs `username` in on a new device with its own store, approved with the recovery key.
    pub async fn device(&self, username: &str, name: &str) -> Device {
        let device = self.device_through(&self.url, username, name).await;
        device
            .recover(&self.recovery_key(username))
            .await
            .expect("approving the device with the recovery key");
        device
    }

    /// Logs `username` in on a new device that nothing approved (yet).
    pub async fn unapproved_device(&self, username: &str, name: &str) -> Device {
        self.device_through(&self.url, username, name).await
    }

    /// [`TestServer::device`], for a device that reaches this server at `url` (a relay).
    pub async fn device_through(&self, url: &str, username: &str, name: &str) -> Device {
        Device::login(
            url,
            username,
            "password123",
            name,
            &self.store_path(username, name),
            "store passphrase",
        )
        .await
        .expect("logging in a device")
    }

    /// Where a device's store lives.
    pub fn store_path(&self, username: &str, name: &str) -> PathBuf {
        self.dir
            .path()
            .join(format!("devices/{username}-{name}.db"))
    }

    /// Registers alice and bob, connects them, and opens their direct conversation: the
    /// start of most tests.
    pub async fn alice_and_bob(&self) -> (Device, Device, natter_proto::ConversationId) {
        let alice = self.user("alice").await;
        let bob = self.user("bob").await;
        let direct = self.connect(&alice, &bob).await;
        (alice, bob, direct)
    }

    /// Two users connected to each other, with their direct conversation.
    pub async fn connect(&self, a: &Device, b: &Device) -> natter_proto::ConversationId {
        a.session()
            .request_connection(b.user_id(), None)
            .await
            .expect("requesting");
        b.session()
            .answer_request(a.user_id(), true, None)
            .await
            .expect("accepting");
        a.session()
            .open_direct(b.user_id())
            .await
            .expect("opening the direct conversation")
            .summary
            .id
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            task.abort();
        }
    }
}

/// A TCP relay to a server that, while holding, holds back every request for a device's
/// own one-time keys (`/v1/devices/current/keys`, to count or publish them) until released:
/// a key top-up that has not finished. It also counts the requests for device lists.
pub struct Relay {
    pub url: String,
    held: watch::Sender<bool>,
    device_lists: Arc<AtomicUsize>,
}

impl Relay {
    /// A relay to `server` that holds nothing yet.
    pub async fn start(server: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding an ephemeral port");
        let url = format!("http://{}", listener.local_addr().expect("relay address"));
        let target = server.trim_start_matches("http://").to_owned();
        let (held, watching) = watch::channel(false);
        let device_lists = Arc::new(AtomicUsize::new(0));
        let counted = device_lists.clone();
        tokio::spawn(async move {
            loop {
                let (inbound, _) = listener.accept().await.expect("accepting");
                let Ok(outbound) = TcpStream::connect(&target).await else {
                    continue;
                };
                let ((mut from_client, mut to_client), (mut from_server, mut to_server)) =
                    (inbound.into_split(), outbound.into_split());
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                });
                let mut held = watching.clone();
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0; 64 * 1024];
                    while let Ok(n @ 1..) = from_client.read(&mut buffer).await {
                        let chunk = &buffer[..n];
                        let lists = DEVICE_LISTS
                            .iter()
                            .map(|what| chunk.windows(what.len()).filter(|w| w == what).count())
                            .sum::<usize>();
                        counted.fetch_add(lists, Ordering::SeqCst);
                        if chunk.windows(KEYS.len()).any(|w| w == KEYS) {
                            let _ = held.wait_for(|held| !held).await;
                        }
                        if to_server.write_all(chunk).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self {
            url,
            held,
            device_lists,
        }
    }

    /// Holds key requests from now on (true), or lets them (and those held) through.
    pub fn hold(&self, hold: bool) {
        self.held.send_replace(hold);
    }

    /// How many device-list requests (one user's, or a query for many) went through so far.
    pub fn device_list_requests(&self) -> usize {
        self.device_lists.load(Ordering::SeqCst)
    }
}

/// What [`Relay`] holds back.
const KEYS: &[u8] = b"/v1/devices/current/keys";
/// What [`Relay`] counts as device-list requests: one user's list, and a query for many.
const DEVICE_LISTS: [&[u8]; 2] = [b"/devices HTTP/1.1", b"POST /v1/devices/query"];

/// Polls `condition` until it holds; panics after [`PATIENCE`].
pub async fn wait_for(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The texts of a conversation as a device has them (unreadable ones as their reason).
pub async fn texts(device: &Device, conversation: natter_proto::ConversationId) -> Vec<String> {
    device
        .messages(conversation, 1000)
        .await
        .expect("reading the store")
        .into_iter()
        .map(|m| m.body.unwrap_or_else(|reason| reason.to_string()))
        .collect()
}

/// Runs a device live in the background; returns its events and a stopper.
pub fn live(device: &Device) -> (mpsc::Receiver<Event>, oneshot::Sender<()>, JoinHandle<()>) {
    let (events, received) = mpsc::channel(256);
    let (stop, task) = live_into(device, events);
    (received, stop, task)
}

/// Runs a device live in the background, reporting into `events`; returns a stopper.
pub fn live_into(
    device: &Device,
    events: mpsc::Sender<Event>,
) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let device = device.clone();
    let task = tokio::spawn(async move {
        device
            .run(events, async move {
                let _ = stopped.await;
            })
            .await
            .expect("the device runs until stopped");
    });
    (stop, task)
}

/// The first event matching `pick`, skipping others; panics after [`PATIENCE`].
pub async fn next_event<T>(
    events: &mut mpsc::Receiver<Event>,
    mut pick: impl FnMut(Event) -> Option<T>,
) -> T {
    let found = tokio::time::timeout(PATIENCE, async {
        while let Some(event) = events.recv().await {
            if let Some(found) = pick(event) {
                return Some(found);
            }
        }
        None
    });
    found
        .await
        .expect("gave up waiting for an event")
        .expect("the device stopped")
}

/// How many to-device payloads a fresh connection of `device` is given before it is synced.
pub async fn to_device_waiting(device: &Device) -> u64 {
    let mut raw = device.session().connect().await.unwrap();
    let waiting = loop {
        if let natter_proto::ws::ServerFrame::Synced { to_device, .. } = raw.next().await.unwrap() {
            break to_device;
        }
    };
    raw.close().await;
    waiting
}

/// The operator logs a device in to `username`'s account without its password: it swaps the
/// password hash for one it knows (a throwaway account's), logs in, and puts the hash back.
pub async fn operator_logs_in(server: &TestServer, username: &str, name: &str) -> Device {
    natter_client::Client::new(&server.url)
        .unwrap()
        .register("operator", "operator-password", None)
        .await
        .unwrap();
    let hash = |user: &str| {
        server
            .operator_sql(&format!(
                "SELECT password_hash FROM users WHERE username = '{user}'"
            ))
            .expect("the user's password hash")
    };
    let (real, known) = (hash(username), hash("operator"));
    let set = |value: &str| {
        server.operator_sql(&format!(
            "UPDATE users SET password_hash = '{value}' WHERE username = '{username}'"
        ))
    };
    set(&known);
    let ghost = Device::login(
        &server.url,
        username,
        "operator-password",
        name,
        &server.store_path(username, name),
        "ghost passphrase",
    )
    .await
    .expect("the operator's login");
    set(&real);
    ghost
}

/// The identity keys `device` of `user` published, as `viewer` is shown them.
pub async fn published_keys(
    viewer: &Device,
    user: natter_proto::UserId,
    device: natter_proto::DeviceId,
) -> natter_proto::keys::IdentityKeys {
    viewer
        .session()
        .devices(user)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.device_id == device)
        .and_then(|d| d.identity_keys)
        .expect("the device published keys")
        .keys
}

/// The operator replaces `victim`'s identity with one of its own and signs `ghost` with it.
pub async fn operator_replaces_identity(server: &TestServer, victim: &Device, ghost: &Device) {
    let user = victim.user_id();
    let secrets = MasterKey::generate().new_self_signing(user);
    let public = secrets.public();
    let keys = published_keys(victim, user, ghost.device_id()).await;
    let signature = secrets.sign_device(user, ghost.device_id(), &keys);
    server.operator_sql(&format!(
        "UPDATE identities SET master_key = '{}', self_signing_key = '{}', signature = '{}' \
         WHERE user_id = '{user}'",
        public.master_key, public.self_signing_key, public.signature
    ));
    server.operator_sql(&format!(
        "UPDATE devices SET cross_signature = '{signature}' WHERE id = '{}'",
        ghost.device_id()
    ));
}

/// Runs an operator test on SQLite and, where PostgreSQL is configured, on PostgreSQL.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(crate::helpers::TestServer::start().await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let Some(database) = natter_test_support::ScratchPostgres::create().await else {
                        return;
                    };
                    let url = natter_server::config::DatabaseUrl::Postgres(
                        natter_server::config::Secret(database.url.clone()),
                    );
                    super::$name(crate::helpers::TestServer::start_on(Some(url)).await).await;
                }
            }
        )*
    };
}
pub(crate) use on_both_backends;
