//! The test server and its databases.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use natter_client::{Client, Session};
use natter_proto::ConversationId;
use natter_server::config::{Config, DatabaseUrl, Secret};
use natter_server::ratelimit::{Limits, Rate};
use natter_test_support::ScratchPostgres;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The store a test server runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A real server on 127.0.0.1 with its own fresh database, stopped (and its database removed)
/// when dropped.
pub struct TestServer {
    pub url: String,
    /// The admin listener (metrics, operator actions).
    pub admin_url: String,
    pub client: Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    pub database: TestDatabase,
}

/// A fresh database for one test: a SQLite file in a temporary directory, or a new
/// PostgreSQL database (dropped with this value).
pub struct TestDatabase {
    pub url: DatabaseUrl,
    _dir: Option<tempfile::TempDir>,
    _postgres: Option<ScratchPostgres>,
}

impl TestDatabase {
    /// Creates one, or returns `None` when PostgreSQL is not configured here.
    pub async fn create(backend: Backend) -> Option<Self> {
        Some(match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("creating a temporary directory");
                Self {
                    url: DatabaseUrl::Sqlite(dir.path().join("natter.db")),
                    _dir: Some(dir),
                    _postgres: None,
                }
            }
            Backend::Postgres => {
                let scratch = ScratchPostgres::create().await?;
                Self {
                    url: DatabaseUrl::Postgres(Secret(scratch.url.clone())),
                    _dir: None,
                    _postgres: Some(scratch),
                }
            }
        })
    }

    /// A placeholder owning nothing.
    fn none() -> Self {
        Self {
            url: DatabaseUrl::Sqlite("/nonexistent".into()),
            _dir: None,
            _postgres: None,
        }
    }

    /// The URL as `--database-url` takes it.
    pub fn url_text(&self) -> String {
        match &self.url {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => url.0.clone(),
        }
    }
}

impl TestServer {
    /// Starts a server on `backend`, or returns `None` when PostgreSQL is not configured here.
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts a server with settings changed by `configure` from the test defaults (generous
    /// send rates, so tests that send a lot are not rate limited unless they mean to be).
    pub async fn start_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Option<Self> {
        let database = TestDatabase::create(backend).await?;
        Some(Self::start_on(database, configure).await)
    }

    async fn start_on(database: TestDatabase, configure: impl FnOnce(&mut Config)) -> Self {
        let url = database.url.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding an ephemeral port");
        let address = listener.local_addr().expect("listener address");
        let mut config = Config {
            token_ttl: Duration::from_secs(3600),
            // The cheapest argon2 settings: tests register thousands of users.
            argon2_memory_kib: 8,
            argon2_iterations: 1,
            // Each server is its own cluster, whatever else shares the Redis.
            cluster_name: cluster_name(),
            // Tests send and log in far faster than people: limits are off unless a test sets one.
            limits: Limits::all(Rate::new(1e9, 1e9)),
            ..Config::new(address, url)
        };
        // Stopping closes connections over a short window, not natterd's five seconds.
        config.gateway.drain = Duration::from_millis(200);
        configure(&mut config);
        let (shutdown, stop) = oneshot::channel::<()>();
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding an admin port");
        let admin_url = format!("http://{}", admin.local_addr().expect("admin address"));
        let task = tokio::spawn(natter_server::run(
            config,
            listener,
            Some(admin),
            async move {
                let _ = stop.await;
            },
        ));
        let url = format!("http://{address}");
        let client = Client::new(&url).expect("a valid URL");
        let server = Self {
            url,
            admin_url,
            client,
            shutdown: Some(shutdown),
            task: Some(task),
            database,
        };
        server.wait_ready().await;
        server
    }

    /// Waits until `/readyz` answers 200 (the store is open and migrated).
    async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        eventually("the server to be ready", async || {
            let answer = http.get(format!("{}/readyz", self.url)).send().await;
            assert!(
                !self.task.as_ref().is_some_and(JoinHandle::is_finished),
                "the server stopped while starting"
            );
            match answer {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(response.status().to_string()),
                Err(error) => Err(error.to_string()),
            }
        })
        .await;
    }

    /// What `/readyz` says: its status and body.
    pub async fn readiness(&self) -> (u16, serde_json::Value) {
        let response = reqwest::get(format!("{}/readyz", self.url))
            .await
            .expect("reaching /readyz");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.expect("a JSON readiness body"),
        )
    }

    /// Polls `/readyz` until `expected` holds of its status and body.
    pub async fn wait_for_readiness(
        &self,
        what: &str,
        expected: impl Fn(u16, &serde_json::Value) -> bool,
    ) {
        let waiting = format!("{}'s /readyz to say {what}", self.url);
        eventually(&waiting, async || {
            let (status, body) = self.readiness().await;
            if expected(status, &body) {
                Ok(())
            } else {
                Err((status, body))
            }
        })
        .await;
    }

    /// Registers `username` (password `password123`) and logs in one device.
    pub async fn user(&self, username: &str) -> Session {
        self.client
            .register(username, "password123", None)
            .await
            .expect("registering");
        self.login(username, "device-1").await
    }

    /// Logs `username` in on another device.
    pub async fn login(&self, username: &str, device: &str) -> Session {
        self.client
            .login(username, "password123", device)
            .await
            .expect("logging in")
    }

    /// Two users connected to each other.
    pub async fn connected_pair(&self, a: &str, b: &str) -> (Session, Session) {
        let (a, b) = (self.user(a).await, self.user(b).await);
        connect_users(&a, &b).await;
        (a, b)
    }

    /// Two users connected to each other, and their direct conversation.
    pub async fn direct_pair(&self, a: &str, b: &str) -> (Session, Session, ConversationId) {
        let (a, b) = self.connected_pair(a, b).await;
        let direct = a
            .open_direct(b.user_id())
            .await
            .expect("opening the direct conversation")
            .summary
            .id;
        (a, b, direct)
    }

    /// A raw HTTP request builder for malformed-input tests.
    pub fn raw(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        reqwest::Client::new().request(method, format!("{}{path}", self.url))
    }

    /// Starts another node on the same database (a cluster when both have a Redis URL); the
    /// database stays owned by `self`.
    pub async fn join(&self, configure: impl FnOnce(&mut Config)) -> TestServer {
        let shared = TestDatabase {
            url: self.database.url.clone(),
            _dir: None,
            _postgres: None,
        };
        Self::start_on(shared, configure).await
    }

    /// Starts a server on the database at `url` (a test database the caller keeps, reached
    /// through a proxy that can stage an outage).
    pub async fn start_via(url: DatabaseUrl) -> TestServer {
        let reached = TestDatabase {
            url,
            _dir: None,
            _postgres: None,
        };
        Self::start_on(reached, |_| {}).await
    }

    /// Stops the server and starts a new one on the same database (and a new port).
    pub async fn restart(mut self) -> Self {
        let database = std::mem::replace(&mut self.database, TestDatabase::none());
        self.stop().await;
        Self::start_on(database, |_| {}).await
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server exits cleanly");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The same device (token) as `session`, talking through `client`: to another node of the
/// cluster, or to a server restarted on the same database.
pub fn same_device(client: &Client, session: &Session) -> Session {
    Session::resume(
        client.clone(),
        session.token().into(),
        session.user_id(),
        session.device_id(),
    )
}

/// Registers `username` (password `password123`) through `client` and logs in a device.
pub async fn register(client: &Client, username: &str) -> Session {
    client
        .register(username, "password123", None)
        .await
        .expect("registering");
    client
        .login(username, "password123", "laptop")
        .await
        .expect("logging in")
}

/// A cluster name no other test uses (tests share one Redis).
pub fn cluster_name() -> String {
    format!("natter-test-{}", uuid::Uuid::new_v4().simple())
}

/// The WebSocket URL of the server at `base` (`http://host:port`), as the host assigner names
/// it.
pub fn ws_url(base: &str) -> String {
    format!("{}/v1/ws", base.replacen("http", "ws", 1))
}

/// The host assigner's answer from the server at `base`, or `None` if it cannot be had (the
/// node is down).
pub async fn gateway(base: &str) -> Option<natter_proto::gateway::GatewayResponse> {
    let response = reqwest::get(format!("{base}/v1/gateway")).await.ok()?;
    response.json().await.ok()
}

/// How long [`eventually`] waits: a failure guard, never a timing assumption (the machine can
/// be slow and busy); only a broken server waits this long.
pub const PATIENCE: Duration = Duration::from_secs(45);

/// Polls `probe` every 100 ms until it gives `Ok`; after [`PATIENCE`], fails the test with
/// `what` and the last `Err` (what was seen instead).
pub async fn eventually<T, E: std::fmt::Debug>(
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match probe().await {
            Ok(found) => return found,
            Err(last) => assert!(
                Instant::now() < deadline,
                "gave up waiting for {what}; last saw {last:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Connects two users: `a` requests, `b` accepts.
pub async fn connect_users(a: &Session, b: &Session) {
    a.request_connection(b.user_id(), None)
        .await
        .expect("requesting");
    b.answer_request(a.user_id(), true, None)
        .await
        .expect("accepting");
}

/// The text of a server's `/metrics`, from its admin listener at `admin_url`.
pub async fn scrape(admin_url: &str) -> String {
    reqwest::get(format!("{admin_url}/metrics"))
        .await
        .expect("reaching /metrics")
        .text()
        .await
        .expect("a metrics text")
}

/// The sum of the samples of `series` in a `/metrics` text: `name` alone adds up every line of
/// that metric, whatever its labels; `name{label="value",...}` only the lines that have those
/// labels (among others). 0 when there is no such line (a counter not yet incremented).
pub fn sample(text: &str, series: &str) -> f64 {
    let (name, wanted) = split_series(series);
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (metric, labels) = split_series(series);
            metric == name && wanted.iter().all(|label| labels.contains(label))
        })
        .map(|(series, value)| {
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("{series} has no number: {value}"))
        })
        .sum()
}

/// A series' metric name and its `label="value"` pairs.
fn split_series(series: &str) -> (&str, Vec<&str>) {
    match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, labels)) => {
            let labels = labels.strip_suffix('}').expect("labels end with }");
            let pairs = labels
                .split("\",")
                .map(|pair| pair.trim_end_matches('"'))
                .filter(|pair| !pair.is_empty())
                .collect();
            (name, pairs)
        }
    }
}

/// A TCP proxy in front of a service (PostgreSQL, Redis) that can cut every connection and
/// refuse new ones, to stage an outage.
pub struct Proxy {
    /// Where clients connect.
    pub address: std::net::SocketAddr,
    up: Arc<Mutex<bool>>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// A proxy in front of the service at `url` (`scheme://[user@]host:port[/path]`), and
    /// the same URL through the proxy.
    pub async fn in_front_of(url: &str) -> (Self, String) {
        let (_, rest) = url.split_once("://").expect("a URL with a scheme");
        let authority = rest.split('/').next().expect("an authority");
        let upstream = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let proxy = Self::start(upstream.to_owned()).await;
        let proxied = url.replacen(upstream, &proxy.address.to_string(), 1);
        (proxy, proxied)
    }

    /// Forwards connections to `upstream` (host:port).
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let up = Arc::new(Mutex::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (up, links) = (Arc::clone(&up), Arc::clone(&links));
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !*up.lock().unwrap() {
                        continue; // dropped: the database is "down"
                    }
                    let upstream = upstream.clone();
                    links.lock().unwrap().push(tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }));
                }
            }
        });
        Self {
            address,
            up,
            links,
            accept,
        }
    }

    /// Drops every open connection and every new one until [`Proxy::restore`].
    pub fn cut(&self) {
        *self.up.lock().unwrap() = false;
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        *self.up.lock().unwrap() = true;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Expands each listed `async fn name(backend: Backend)` into a test per backend:
/// `sqlite::name` and `postgres::name`.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await;
                }
            )*
        }
    };
}
pub(crate) use backend_tests;

/// Starts a server on the backend or returns from the test (PostgreSQL not configured here).
macro_rules! server {
    ($backend:expr) => {
        match $crate::helpers::TestServer::start($backend).await {
            Some(server) => server,
            None => return,
        }
    };
}
pub(crate) use server;

/// Asserts a client call failed with this HTTP status and problem code.
#[track_caller]
pub fn assert_problem<T: std::fmt::Debug>(
    result: Result<T, natter_client::ClientError>,
    status: u16,
    code: &str,
) {
    match result {
        Err(error) => {
            assert_eq!(error.status(), Some(status), "wrong status: {error}");
            assert_eq!(error.code(), Some(code), "wrong code: {error}");
        }
        Ok(value) => panic!("expected {status} {code}, got {value:?}"),
    }
}

/// `GET /v1/users/{user}/presence` through `base` as `viewer`: the HTTP status, and whether
/// the user is online when it is 200.
pub async fn presence(base: &str, viewer: &Session, user: &str) -> (u16, Option<bool>) {
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/users/{user}/presence"))
        .bearer_auth(viewer.token())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    (status, body["online"].as_bool())
}

/// Asserts that `viewer` sees nothing of `user`: no profile, no devices, no presence (404s).
pub async fn assert_sees_nothing_of(server: &TestServer, viewer: &Session, user: &Session) {
    assert_problem(viewer.profile(user.user_id()).await, 404, "not_found");
    assert_problem(viewer.devices(user.user_id()).await, 404, "not_found");
    let (status, _) = presence(&server.url, viewer, &user.user_id().to_string()).await;
    assert_eq!(status, 404, "presence");
}
