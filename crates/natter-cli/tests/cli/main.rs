//! The `natter` binary against a real in-process server: two people register, connect,
//! talk, search, verify each other and make a room, each with their own data directory.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use natter_server::config::{Config, DatabaseUrl};
use natter_server::ratelimit::{Limits, Rate};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

mod chat_screen;
mod conventions;
mod keys;
mod names;
mod offline;

/// Starts a server on a fresh database; it stops with the test's runtime.
async fn server(dir: &Path) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let mut config = Config::new(address, DatabaseUrl::Sqlite(dir.join("natter.db")));
    // The cheapest argon2 settings, and no rate limits: tests are faster than people.
    config.argon2_memory_kib = 8;
    config.argon2_iterations = 1;
    config.limits = Limits::all(Rate::new(1e9, 1e9));
    tokio::spawn(natter_server::run(
        config,
        listener,
        None,
        std::future::pending(),
    ));
    let url = format!("http://{address}");
    for _ in 0..600 {
        if reqwest::get(format!("{url}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return url;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not start");
}

/// The passphrase of everyone's local store in these tests.
const PASSPHRASE: &str = "correct horse battery";

/// Runs `natter` as one person (their own data directory) and returns its output.
async fn natter(server: &str, home: &Path, args: &[&str]) -> Output {
    natter_unlocked_with(server, home, args, Some(PASSPHRASE)).await
}

/// [`natter`] with another `NATTER_PASSPHRASE`, or none; standard input is never a terminal.
async fn natter_unlocked_with(
    server: &str,
    home: &Path,
    args: &[&str],
    passphrase: Option<&str>,
) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_natter"));
    command
        .args(args)
        .env("NATTER_SERVER", server)
        .env("NATTER_HOME", home)
        .env("NATTER_PASSWORD", "password123")
        .env_remove("NATTER_PASSPHRASE");
    if let Some(passphrase) = passphrase {
        command.env("NATTER_PASSPHRASE", passphrase);
    }
    tokio::task::spawn_blocking(move || command.output().expect("running natter"))
        .await
        .unwrap()
}

/// Runs `natter` and expects success; returns standard output.
async fn ok(server: &str, home: &Path, args: &[&str]) -> String {
    let output = natter(server, home, args).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "natter {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A server, and the data directories of alice and bob, logged in and connected.
async fn alice_and_bob(dir: &Path) -> (String, PathBuf, PathBuf) {
    let url = server(dir).await;
    let (alice, bob) = alice_and_bob_at(dir, &url, &url).await;
    (url, alice, bob)
}

/// The data directories of alice and bob, logged in to one server at the addresses given
/// (the server itself, or a relay to it), and connected.
async fn alice_and_bob_at(dir: &Path, alice_server: &str, bob_server: &str) -> (PathBuf, PathBuf) {
    let (alice, bob) = (dir.join("alice"), dir.join("bob"));
    for (home, name, url) in [(&alice, "alice", alice_server), (&bob, "bob", bob_server)] {
        ok(url, home, &["register", name]).await;
        ok(url, home, &["login", name]).await;
    }
    ok(alice_server, &alice, &["connections", "request", "bob"]).await;
    ok(bob_server, &bob, &["connections", "accept", "alice"]).await;
    (alice, bob)
}

/// A TCP relay to a server that can be cut: while down it drops each connection at once, so
/// a device logged in through it finds its server unreachable.
struct Relay {
    url: String,
    up: Arc<AtomicBool>,
}

impl Relay {
    async fn start(server: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let target = server.trim_start_matches("http://").to_owned();
        let up = Arc::new(AtomicBool::new(true));
        let open = Arc::clone(&up);
        tokio::spawn(async move {
            loop {
                let (mut inbound, _) = listener.accept().await.unwrap();
                if !open.load(Ordering::SeqCst) {
                    continue;
                }
                let target = target.clone();
                tokio::spawn(async move {
                    let mut outbound = TcpStream::connect(target).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        Self { url, up }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_people_talk_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let url = server(dir.path()).await;
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));

    for (home, name) in [(&alice, "alice"), (&bob, "bob")] {
        ok(&url, home, &["register", name]).await;
        ok(&url, home, &["login", name, "--device-name", "laptop"]).await;
        assert!(ok(&url, home, &["whoami"]).await.starts_with(name));
    }
    ok(&url, &alice, &["connections", "request", "bob"]).await;
    assert!(
        ok(&url, &bob, &["connections", "list"])
            .await
            .contains("incoming  alice")
    );
    ok(&url, &bob, &["connections", "accept", "alice"]).await;

    assert_eq!(
        ok(
            &url,
            &alice,
            &["send", "bob", "hello", "from", "the", "cli"]
        )
        .await,
        "sent\n"
    );
    let history = json_lines(&ok(&url, &bob, &["--json", "history", "alice"]).await);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["text"], "hello from the cli");
    assert_eq!(history[0]["sender"], "alice");
    ok(&url, &bob, &["send", "alice", "hi alice"]).await;
    assert!(
        ok(&url, &alice, &["history", "bob"])
            .await
            .ends_with("bob: hi alice\n")
    );

    let found = ok(&url, &bob, &["search", "cli", "--from", "alice"]).await;
    assert!(found.contains("alice: hello from the cli"), "{found}");
    assert!(
        ok(&url, &bob, &["search", "cli", "--from", "bob"])
            .await
            .is_empty()
    );

    let number = |text: String| {
        json_lines(&text)[0]["safety_number"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        number(ok(&url, &alice, &["--json", "verify", "bob"]).await),
        number(ok(&url, &bob, &["--json", "verify", "alice"]).await)
    );
    assert_eq!(
        json_lines(&ok(&url, &alice, &["--json", "devices", "bob"]).await).len(),
        1
    );

    ok(&url, &alice, &["rooms", "create", "plans", "bob"]).await;
    ok(&url, &alice, &["send", "plans", "room hello"]).await;
    assert!(
        ok(&url, &bob, &["history", "plans"])
            .await
            .contains("alice: room hello")
    );
    assert!(ok(&url, &bob, &["rooms", "list"]).await.contains("plans"));

    // Clear errors, not panics.
    let long = "x".repeat(1001);
    let refused = natter(&url, &alice, &["send", "bob", &long]).await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("at most 1000 characters"));
    let chat = natter(&url, &alice, &["chat", "bob"]).await;
    assert_eq!(chat.status.code(), Some(1), "an error, not a panic");
    assert!(String::from_utf8_lossy(&chat.stderr).contains("needs a terminal"));
    let stranger = natter(&url, &dir.path().join("nobody"), &["whoami"]).await;
    assert!(String::from_utf8_lossy(&stranger.stderr).contains("natter login"));

    ok(&url, &bob, &["connections", "block", "alice"]).await;
    assert!(
        ok(&url, &bob, &["connections", "list"])
            .await
            .contains("blocked   alice")
    );
    ok(&url, &bob, &["logout"]).await;
    assert!(!natter(&url, &bob, &["whoami"]).await.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_the_server_refuses_for_good_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (url, alice, bob) = alice_and_bob(dir.path()).await;
    let room = json_lines(&ok(&url, &alice, &["--json", "rooms", "create", "brief", "bob"]).await)
        [0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(&url, &alice, &["rooms", "remove", "brief", "bob"]).await;

    // Bob is no longer a member: the message is refused, not "sent".
    let refused = natter(&url, &bob, &["send", &room, "am I still here?"]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("refused") && stderr.contains("not_found"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&refused.stdout).contains("sent"));
    // It left the queue: the next sync has nothing to refuse.
    assert_eq!(ok(&url, &bob, &["sync"]).await, "received 0, sent 0\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_earlier_queued_message_refused_does_not_fail_a_new_send() {
    let dir = tempfile::tempdir().unwrap();
    let url = server(dir.path()).await;
    let relay = Relay::start(&url).await;
    let (alice, bob) = alice_and_bob_at(dir.path(), &url, &relay.url).await;
    let room = json_lines(&ok(&url, &alice, &["--json", "rooms", "create", "brief", "bob"]).await)
        [0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Bob writes to the room while his server is out of reach: the message stays queued.
    relay.set_up(false);
    let queued = ok(&url, &bob, &["--json", "send", &room, "written offline"]).await;
    assert_eq!(json_lines(&queued)[0]["sent"], false, "{queued}");
    relay.set_up(true);
    // Removed before it goes out, so the server refuses it for good on the next sync.
    ok(&url, &alice, &["rooms", "remove", "brief", "bob"]).await;

    // The new message is sent, and said to be: the earlier refusal is only a warning.
    let output = natter(&url, &bob, &["--json", "send", "alice", "a new message"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let shown = json_lines(&String::from_utf8_lossy(&output.stdout));
    assert_eq!(shown[0]["sent"], true, "{shown:?}");
    assert!(
        stderr.contains("warning") && stderr.contains("refused") && stderr.contains("not_found"),
        "{stderr}"
    );
    assert!(
        ok(&url, &alice, &["history", "bob"])
            .await
            .ends_with("bob: a new message\n")
    );
    assert!(
        !ok(&url, &alice, &["history", "brief"])
            .await
            .contains("written offline")
    );
}

/// Runs a tmux command on `session`'s own tmux server and returns what it printed. Each
/// session has its own server (socket), so tests running at once cannot race one server's
/// start and exit.
fn tmux_on(session: &str, args: &[&str]) -> String {
    let output = std::process::Command::new("tmux")
        .args(["-L", session])
        .args(args)
        .output()
        .expect("running tmux");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The text tmux shows in a session's pane.
fn capture(session: &str) -> String {
    tmux_on(session, &["capture-pane", "-p", "-t", session])
}

/// Waits for `prompt` on a session's screen, then types `answer` and Enter.
async fn answer(session: &str, prompt: &str, answer: &str) {
    eventually(prompt, async || capture(session).contains(prompt)).await;
    send_keys(session, &[answer, "Enter"]);
}

/// `natter chat with` as the user of `home`, for tmux: UTF-8, times in UTC, the passphrase
/// in the environment.
fn chat_command(url: &str, home: &Path, with: &str) -> String {
    format!(
        "env LANG=C.UTF-8 TZ=UTC NATTER_PASSPHRASE='{PASSPHRASE}' NATTER_HOME={} \
         NATTER_SERVER={url} {} chat {with}",
        home.display(),
        env!("CARGO_BIN_EXE_natter")
    )
}

/// Polls until `condition` holds; a failure guard, not a timing assumption.
async fn eventually(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    for _ in 0..600 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("gave up waiting for {what}");
}

/// Types `keys` into a tmux session.
fn send_keys(session: &str, keys: &[&str]) {
    let mut args = vec!["send-keys", "-t", session];
    args.extend(keys);
    tmux_on(session, &args);
}

/// Whether tmux is here; CI must have it.
fn has_tmux() -> bool {
    if std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok()
    {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must have tmux for the terminal tests"
    );
    eprintln!("NOTICE: tmux is not installed; skipping a terminal test");
    false
}

/// Starts `command` (a shell command line) in a new detached tmux session, 100x24.
fn tmux(name: &str, command: &str) -> TmuxSession {
    let session = TmuxSession(format!("natter-{name}-{}", std::process::id()));
    let started = std::process::Command::new("tmux")
        .args(["-L", &session.0, "-f", "/dev/null"])
        .args([
            "new-session",
            "-d",
            "-s",
            &session.0,
            "-x",
            "100",
            "-y",
            "24",
            command,
        ])
        .output()
        .expect("starting tmux");
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    session
}

/// Kills the tmux session when the test ends, pass or fail.
struct TmuxSession(String);

impl Drop for TmuxSession {
    fn drop(&mut self) {
        tmux_on(&self.0, &["kill-server"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_renders_and_sends_in_a_real_terminal() {
    if !has_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (url, alice, bob) = alice_and_bob(dir.path()).await;
    ok(&url, &bob, &["send", "alice", "before the chat"]).await;

    let session = tmux(
        "chat-test",
        &format!(
            "env -u NATTER_PASSPHRASE NATTER_HOME={} NATTER_SERVER={url} {} chat bob",
            alice.display(),
            env!("CARGO_BIN_EXE_natter")
        ),
    );
    let keys = |keys: &[&str]| send_keys(&session.0, keys);

    // On a terminal the passphrase is asked for, and not shown as it is typed.
    eventually("the passphrase prompt", async || {
        capture(&session.0).contains("Passphrase for this device's local store:")
    })
    .await;
    keys(&[PASSPHRASE, "Enter"]);
    eventually("the chat to render and sync", async || {
        let screen = capture(&session.0);
        screen.contains("online") && screen.contains("bob: before the chat")
    })
    .await;
    keys(&["hello from tmux", "Enter"]);
    eventually("bob to receive the chat message", async || {
        ok(&url, &bob, &["history", "alice"])
            .await
            .contains("alice: hello from tmux")
    })
    .await;
    eventually("the sent and read marks", async || {
        capture(&session.0).contains("alice: hello from tmux ✓✓ read")
    })
    .await;
    ok(&url, &bob, &["send", "alice", "a live reply"]).await;
    eventually("the reply to show live", async || {
        capture(&session.0).contains("bob: a live reply")
    })
    .await;
    // Shown is read: the chat moves alice's read cursor, so the server counts nothing unread.
    eventually("the reply to be marked read", async || {
        json_lines(&ok(&url, &alice, &["--json", "rooms", "list"]).await)
            .iter()
            .all(|c| c["unread"] == 0)
    })
    .await;
    keys(&["Escape"]);
}

/// Every file below `dir`, read whole.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            let bytes = std::fs::read(&path).unwrap();
            found.push((path, bytes));
        }
    }
    found
}

fn holds(bytes: &[u8], text: &str) -> bool {
    bytes.windows(text.len()).any(|w| w == text.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directories_hold_no_marker_and_open_only_with_the_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let (url, alice, bob) = alice_and_bob(dir.path()).await;
    let markers = ["zebra-marker-4711", "밤하늘-ünïcödé-marker"];
    for marker in markers {
        ok(&url, &alice, &["send", "bob", "from alice", marker]).await;
        ok(&url, &bob, &["send", "alice", "from bob", marker]).await;
    }
    ok(&url, &alice, &["sync"]).await;
    for home in [&alice, &bob] {
        for marker in markers {
            let found = ok(&url, home, &["search", marker]).await;
            assert!(
                found.contains(&format!("alice: from alice {marker}"))
                    && found.contains(&format!("bob: from bob {marker}")),
                "{found}"
            );
        }
        let files = files(home);
        assert!(
            files.iter().any(|(path, bytes)| path.ends_with("device.db")
                && bytes.starts_with(b"SQLite format 3\0")),
            "the scan reads the store"
        );
        assert!(
            !files.iter().any(|(path, _)| path.ends_with("store.key")),
            "a passphrase login keeps no key file"
        );
        for (path, bytes) in &files {
            for secret in markers.iter().chain(&[PASSPHRASE, "127.0.0.1"]) {
                assert!(!holds(bytes, secret), "{} holds {secret}", path.display());
            }
        }
    }

    let wrong = natter_unlocked_with(&url, &alice, &["history", "bob"], Some("not it")).await;
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(!wrong.status.success());
    assert!(stderr.contains("wrong passphrase"), "{stderr}");
    assert!(wrong.stdout.is_empty());
    // No terminal and no passphrase: a clear error, not a hang or a panic.
    let locked = natter_unlocked_with(&url, &alice, &["history", "bob"], None).await;
    let stderr = String::from_utf8_lossy(&locked.stderr);
    assert_eq!(locked.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("NATTER_PASSPHRASE") && stderr.contains("--key-file"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_login_runs_unattended() {
    let dir = tempfile::tempdir().unwrap();
    let url = server(dir.path()).await;
    let carol = dir.path().join("carol");
    ok(&url, &carol, &["register", "carol"]).await;
    let login = natter_unlocked_with(&url, &carol, &["login", "carol", "--key-file"], None).await;
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let key = carol.join("store.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let whoami = natter_unlocked_with(&url, &carol, &["whoami"], None).await;
    assert!(String::from_utf8_lossy(&whoami.stdout).starts_with("carol"));
    // The key file is the key: another one opens nothing.
    std::fs::write(&key, "00".repeat(32)).unwrap();
    let wrong = natter_unlocked_with(&url, &carol, &["whoami"], None).await;
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong passphrase"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = server(dir.path()).await;
    let dave = dir.path().join("dave");
    ok(&url, &dave, &["register", "dave"]).await;
    for args in [&["login", "dave"][..], &["login", "dave", "--key-file"]] {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_natter"));
        command
            .args(args)
            .env("NATTER_SERVER", &url)
            .env("NATTER_HOME", &dave)
            .env("NATTER_PASSWORD", "not the password")
            .env("NATTER_PASSPHRASE", PASSPHRASE);
        let refused = tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap();
        assert!(!refused.status.success());
        assert!(String::from_utf8_lossy(&refused.stderr).contains("unauthorized"));
        assert!(
            !dave.exists() || files(&dave).is_empty(),
            "a refused login left {:?}",
            files(&dave).iter().map(|(p, _)| p).collect::<Vec<_>>()
        );
    }
    // The right password then logs in.
    ok(&url, &dave, &["login", "dave"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_on_a_terminal_asks_the_passphrase_twice_without_showing_it() {
    if !has_tmux() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let url = server(dir.path()).await;
    let erin = dir.path().join("erin");
    ok(&url, &erin, &["register", "erin"]).await;
    let login = |name: &str| {
        tmux(
            name,
            &format!(
                "env -u NATTER_PASSPHRASE NATTER_HOME={} NATTER_SERVER={url} \
                 NATTER_PASSWORD=password123 {} login erin; echo exit=$?; sleep 60",
                erin.display(),
                env!("CARGO_BIN_EXE_natter")
            ),
        )
    };
    let prompt = "Passphrase for this device's local store:";

    // Two passphrases that differ: refused, and nothing is left behind.
    let session = login("login-differ");
    answer(&session.0, prompt, "first try").await;
    answer(&session.0, "The same passphrase again:", "second try").await;
    eventually("the refusal", async || {
        capture(&session.0).contains("exit=1")
    })
    .await;
    let screen = capture(&session.0);
    assert!(screen.contains("the two passphrases differ"), "{screen}");
    assert!(!erin.exists());
    drop(session);

    let session = login("login-same");
    answer(&session.0, prompt, PASSPHRASE).await;
    answer(&session.0, "The same passphrase again:", PASSPHRASE).await;
    eventually("the login", async || capture(&session.0).contains("exit=0")).await;
    let screen = capture(&session.0);
    assert!(screen.contains("logged in as erin"), "{screen}");
    assert!(
        !screen.contains(PASSPHRASE),
        "the passphrase was shown: {screen}"
    );
    assert!(ok(&url, &erin, &["whoami"]).await.starts_with("erin"));
}

/// `natter` as [`natter`] does, with extra environment variables.
async fn natter_with_env(server: &str, home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_natter"));
    command
        .args(args)
        .env("NATTER_SERVER", server)
        .env("NATTER_HOME", home)
        .env("NATTER_PASSWORD", "password123")
        .env("NATTER_PASSPHRASE", PASSPHRASE)
        .envs(env.iter().copied());
    tokio::task::spawn_blocking(move || command.output().expect("running natter"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_are_verified_and_new_devices_approved_from_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let url = server(dir.path()).await;
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    ok(&url, &alice, &["register", "alice"]).await;
    let login = json_lines(&ok(&url, &alice, &["--json", "login", "alice"]).await);
    assert_eq!(login[0]["approved"], true);
    let recovery_key = login[0]["recovery_key"].as_str().unwrap().to_owned();
    ok(&url, &bob, &["register", "bob"]).await;
    ok(&url, &bob, &["login", "bob"]).await;
    ok(&url, &alice, &["connections", "request", "bob"]).await;
    ok(&url, &bob, &["connections", "accept", "alice"]).await;
    ok(&url, &alice, &["send", "bob", "before the phone"]).await;

    // Safety numbers match; confirming marks bob verified.
    let shown = ok(&url, &alice, &["verify", "bob"]).await;
    assert!(shown.contains("natter verify bob --confirm"), "{shown}");
    let confirmed = json_lines(&ok(&url, &alice, &["--json", "verify", "bob", "--confirm"]).await);
    assert_eq!(confirmed[0]["trust"], "verified");
    let theirs = json_lines(&ok(&url, &bob, &["--json", "verify", "alice"]).await);
    assert_eq!(confirmed[0]["safety_number"], theirs[0]["safety_number"]);

    // A second device of alice's is not approved: it cannot send, and alice's first device is
    // told about it as it next connects.
    let phone = dir.path().join("alice-phone");
    let login = ok(&url, &phone, &["login", "alice", "--device-name", "phone"]).await;
    assert!(login.contains("not approved"), "{login}");
    let refused = natter(&url, &phone, &["send", "bob", "not yet"]).await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not approved"));
    let told = natter(&url, &alice, &["sync"]).await;
    assert!(
        String::from_utf8_lossy(&told.stderr).contains("a new device 'phone'"),
        "{}",
        String::from_utf8_lossy(&told.stderr)
    );
    let devices = ok(&url, &alice, &["devices"]).await;
    assert!(devices.contains("phone  NOT SIGNED"), "{devices}");

    // Approved by comparing codes: `natter approve` on the laptop asks; on the phone it
    // answers. The phone starts only once the request is waiting in its inbox, so it arrives
    // during the phone's sync, not live. Both answer "yes" to the code question (from the
    // environment here).
    let phone_id = json_lines(&ok(&url, &phone, &["--json", "whoami"]).await)[0]["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let yes = [("NATTER_APPROVAL_CONFIRM", "yes")];
    let (approving, asked) = {
        let mut laptop = std::process::Command::new(env!("CARGO_BIN_EXE_natter"))
            .args(["approve", &phone_id])
            .env("NATTER_SERVER", &url)
            .env("NATTER_HOME", &alice)
            .env("NATTER_PASSPHRASE", PASSPHRASE)
            .envs(yes)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running natter");
        let stderr = laptop.stderr.take().unwrap();
        let (asked_tx, asked) = tokio::sync::oneshot::channel();
        let approving = tokio::task::spawn_blocking(move || {
            use std::io::BufRead;
            let (mut lines, mut asked_tx) = (String::new(), Some(asked_tx));
            for line in std::io::BufReader::new(stderr).lines() {
                let line = line.unwrap();
                if line.starts_with("waiting for the new device") {
                    asked_tx.take().map(|tx| tx.send(()));
                }
                lines.push_str(&line);
                lines.push('\n');
            }
            (laptop.wait().unwrap(), lines)
        });
        (approving, asked)
    };
    tokio::time::timeout(Duration::from_secs(60), asked)
        .await
        .expect("the laptop asks within a minute")
        .expect("the laptop asked");
    let waited = natter_with_env(&url, &phone, &["approve"], &yes).await;
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    let (status, approving) = approving.await.unwrap();
    assert!(status.success(), "{approving}");
    let code = |stderr: &str| {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix("code: ").map(str::to_owned))
            .expect("a code shown")
    };
    assert_eq!(
        code(&approving),
        code(&String::from_utf8_lossy(&waited.stderr))
    );
    assert!(
        ok(&url, &phone, &["history", "bob"])
            .await
            .contains("alice: before the phone")
    );
    ok(&url, &phone, &["send", "bob", "from the phone"]).await;

    // A device approved with the recovery key alone reads the history too.
    let tablet = dir.path().join("alice-tablet");
    ok(
        &url,
        &tablet,
        &["login", "alice", "--device-name", "tablet"],
    )
    .await;
    let wrong = natter_with_env(
        &url,
        &tablet,
        &["recover"],
        &[("NATTER_RECOVERY_KEY", "0000")],
    )
    .await;
    assert!(!wrong.status.success());
    let recovered = natter_with_env(
        &url,
        &tablet,
        &["recover"],
        &[("NATTER_RECOVERY_KEY", &recovery_key)],
    )
    .await;
    assert!(
        recovered.status.success(),
        "{}",
        String::from_utf8_lossy(&recovered.stderr)
    );
    let history = ok(&url, &tablet, &["history", "bob"]).await;
    assert!(history.contains("alice: before the phone"), "{history}");
    assert!(history.contains("alice: from the phone"), "{history}");
}
