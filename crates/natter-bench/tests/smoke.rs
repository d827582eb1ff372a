//! Smoke runs of every natter-bench scenario at tiny sizes against the real `natterd` binary
//! (on an ephemeral port with a fresh SQLite database), asserting on the results: nothing
//! lost, nothing duplicated, every expected copy delivered.
//!
//! natterd must be built first (`cargo test --workspace` builds it; alone:
//! `cargo build -p natter-server`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The natterd binary next to this test's own target directory.
fn natterd_path() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let natterd = target.join("natterd");
    assert!(
        natterd.exists(),
        "{} is missing: build it first with `cargo build -p natter-server` \
         (`cargo test --workspace` does)",
        natterd.display()
    );
    natterd
}

/// Every rate limit of natterd raised out of the way (setup registers, logs in and connects
/// many accounts from one address); natterds without named limits ignore the variable.
const UNLIMITED: &str = "device_messages=100000:100000,user_messages=100000:100000,\
    user_bytes=1000000000:1000000000,connection_requests=100000:100000,\
    account_logins=100000:100000,address_logins=100000:100000,\
    address_registrations=100000:100000,address_connects=100000:100000";

/// Debian's libfaketime: a process's wall clock set off.
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// A natterd on a fresh database, killed when dropped.
struct Natterd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    /// Flags beyond the defaults (a cluster node's database and Redis).
    flags: Vec<String>,
    /// How far its wall clock is off (libfaketime's `+1h`, `-1h`...), if it is.
    clock: Option<String>,
}

impl Natterd {
    /// A natterd alone on a fresh SQLite database.
    fn start() -> Self {
        Self::start_with(Vec::new())
    }

    /// A natterd with `flags` added.
    fn start_with(flags: Vec<String>) -> Self {
        Self::start_with_clock(flags, None)
    }

    /// A natterd with `flags` added, its wall clock `clock` off (such as `+1h`) while its
    /// monotonic clock is right, as after a clock step: through Debian's libfaketime.
    fn start_with_clock(flags: Vec<String>, clock: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut natterd = Self {
            child: Command::new("true").spawn().unwrap(),
            port: free_port(),
            dir,
            flags,
            clock: clock.map(str::to_owned),
        };
        natterd.restart();
        natterd
    }

    /// One node of a cluster on `database` (PostgreSQL) and `redis`, named `cluster`.
    fn node(database: &str, redis: &str, cluster: &str) -> Self {
        Self::node_with_clock(database, redis, cluster, None)
    }

    /// [`Natterd::node`], its wall clock `clock` off (see [`Natterd::start_with_clock`]).
    fn node_with_clock(database: &str, redis: &str, cluster: &str, clock: Option<&str>) -> Self {
        Self::start_with_clock(
            [
                "--database-url",
                database,
                "--redis-url",
                redis,
                "--cluster-name",
                cluster,
            ]
            .map(String::from)
            .to_vec(),
            clock,
        )
    }

    /// Starts (again) on the same port and database, and waits until it answers.
    fn restart(&mut self) {
        let _ = self.child.wait();
        let log = std::fs::File::create(self.dir.path().join("natterd.log")).unwrap();
        self.child = Command::new(natterd_path())
            .current_dir(self.dir.path())
            .env_remove("NATTER_DATABASE_URL")
            // An environment variable, not a flag: natterds without an admin listener ignore it.
            .env("NATTER_ADMIN_LISTEN", format!("127.0.0.1:{}", free_port()))
            .env("NATTER_LIMITS", UNLIMITED)
            .env("RUST_LOG", "warn")
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--argon2-memory-kib", "8", "--argon2-iterations", "1"])
            .args(["--send-rate", "100000", "--send-burst", "100000"])
            .args(&self.flags)
            .envs(self.clock.iter().flat_map(|offset| {
                assert!(
                    Path::new(FAKETIME).exists(),
                    "{FAKETIME} is missing: install Debian's faketime"
                );
                [
                    ("LD_PRELOAD", FAKETIME),
                    ("FAKETIME", offset.as_str()),
                    ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
                ]
            }))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting natterd");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            let exited = self.child.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.path().join("natterd.log"));
                panic!(
                    "natterd did not come up ({exited:?}):\n{}",
                    log.unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs a natter-bench scenario against this server and returns its JSON result.
    fn bench(&self, args: &[&str]) -> Value {
        self.spawn_bench(args).wait()
    }

    fn spawn_bench(&self, args: &[&str]) -> Bench {
        let json = self.dir.path().join(format!("result-{}.json", args[0]));
        let child = Command::new(env!("CARGO_BIN_EXE_natter-bench"))
            .args(args)
            .args(["--server", &format!("http://127.0.0.1:{}", self.port)])
            .arg("--accounts")
            .arg(self.dir.path().join("accounts.json"))
            .arg("--json")
            .arg(&json)
            .args(["--workers", "2", "--source-addrs", "2"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting natter-bench");
        Bench { child, json }
    }
}

impl Drop for Natterd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A natter-bench run in progress.
struct Bench {
    child: Child,
    json: PathBuf,
}

impl Bench {
    fn wait(self) -> Value {
        let output = self.child.wait_with_output().unwrap();
        let table = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "natter-bench failed:\n{table}\n{stderr}"
        );
        println!("{table}");
        serde_json::from_slice(&std::fs::read(&self.json).unwrap()).unwrap()
    }
}

fn number(result: &Value, key: &str) -> u64 {
    result[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {result}"))
}

/// Every send was answered (acked, or refused with nothing stored, as natterd may while it
/// shuts down) and everything acked arrived exactly once at each of its `fanout` recipients.
fn assert_no_loss(result: &Value, fanout: u64) {
    assert!(number(result, "acked") > 0, "{result}");
    assert_eq!(number(result, "unacked"), 0, "{result}");
    assert_eq!(number(result, "lost"), 0, "{result}");
    assert_eq!(number(result, "duplicated"), 0, "{result}");
    assert_eq!(
        number(result, "delivered"),
        number(result, "acked") * fanout,
        "{result}"
    );
    assert_eq!(
        result["send_to_delivery"]["count"].as_u64(),
        Some(number(result, "delivered"))
    );
}

/// As [`assert_no_loss`], and natterd refused nothing.
fn assert_all_acked(result: &Value, fanout: u64) {
    assert_no_loss(result, fanout);
    assert_eq!(number(result, "acked"), number(result, "sent"), "{result}");
}

#[test]
fn idle_holds_every_connection() {
    let natterd = Natterd::start();
    let pid = natterd.pid().to_string();
    let args = ["idle", "-n", "20", "--hold-secs", "1", "--pid", &pid];
    let result = natterd.bench(&args);
    assert_eq!(number(&result, "open_at_end_of_hold"), 20, "{result}");
    assert!(result["natterd_kib_per_connection"].is_number(), "{result}");
    // A second run reuses the cached accounts; this time each device asks the host assigner
    // where to connect (a single node names itself).
    let mut again_args = args.to_vec();
    again_args.push("--gateway");
    let again = natterd.bench(&again_args);
    assert_eq!(number(&again, "open_at_end_of_hold"), 20, "{again}");
}

#[test]
fn offline_refuses_gateway_which_it_would_ignore() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_natter-bench"))
        .args(["offline", "--gateway", "--server", "http://127.0.0.1:9"])
        .arg("--accounts")
        .arg(dir.path().join("accounts.json"))
        .output()
        .expect("running natter-bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("does not take --gateway"), "{stderr}");
}

#[test]
fn direct_delivers_every_message_once() {
    let natterd = Natterd::start();
    let args = ["direct", "-n", "20", "--rate", "100", "--secs", "2"];
    let result = natterd.bench(&args);
    assert_all_acked(&result, 1);
    assert_eq!(number(&result, "sent"), 200, "{result}");
}

#[test]
fn overload_keeps_the_promise_when_the_excess_is_refused_with_a_retry_time() {
    // Each device may send 2 messages a second: most of the offered 5 a second are refused
    // at the door, waited out and sent again, and everything acked arrives in time.
    let limits = UNLIMITED.replace("device_messages=100000:100000", "device_messages=2:2");
    let natterd = Natterd::start_with(vec!["--limit".into(), limits]);
    let args = ["overload", "-n", "20", "--rate", "100", "--secs", "2"];
    let result = natterd.bench(&args);
    assert_all_acked(&result, 1);
    assert!(number(&result, "retried_after_wait") > 50, "{result}");
    assert_eq!(result["promise_kept"], Value::Bool(true), "{result}");
    // Delivery counts from the send natterd accepted, so the waits do not show there.
    assert!(
        result["send_to_delivery"]["max_ms"].as_f64().unwrap() < 10_000.0,
        "{result}"
    );
}

#[test]
fn overload_fails_when_a_delivery_is_slower_than_the_promise() {
    let natterd = Natterd::start();
    let args = [
        "overload",
        "-n",
        "4",
        "--rate",
        "20",
        "--secs",
        "1",
        "--promise-secs",
        "0.000001",
    ];
    let output = natterd.spawn_bench(&args).child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("promise was broken: the slowest delivery took"),
        "{stderr}"
    );
}

#[test]
fn room_delivers_every_copy() {
    let natterd = Natterd::start();
    let result = natterd.bench(&["room", "-k", "10", "--rate", "20", "--secs", "2"]);
    assert_all_acked(&result, 9);
}

#[test]
fn offline_device_gets_everything_queued() {
    let natterd = Natterd::start();
    for _ in 0..2 {
        let result = natterd.bench(&["offline", "-m", "300"]);
        assert_eq!(number(&result, "received"), 300, "{result}");
        assert_eq!(number(&result, "lost"), 0, "{result}");
        assert_eq!(number(&result, "duplicated"), 0, "{result}");
    }
}

#[test]
fn reconnect_after_a_cut_loses_nothing() {
    let natterd = Natterd::start();
    let args = ["reconnect", "-n", "20", "--rate", "30", "--secs", "3"];
    let result = natterd.bench(&args);
    assert_eq!(result["all_back"], Value::Bool(true), "{result}");
    assert_all_acked(&result, 1);
}

#[test]
fn reconnect_after_a_restart_loses_nothing() {
    let mut natterd = Natterd::start();
    let pid = natterd.pid().to_string();
    let args = [
        "reconnect",
        "-n",
        "20",
        "--rate",
        "30",
        "--secs",
        "3",
        "--restart-pid",
        &pid,
    ];
    let bench = natterd.spawn_bench(&args);
    // Act as the supervisor: start natterd again once it exited.
    let deadline = Instant::now() + Duration::from_secs(120);
    while natterd.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "natterd was not stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    natterd.restart();
    let result = bench.wait();
    assert_eq!(result["all_back"], Value::Bool(true), "{result}");
    assert_no_loss(&result, 1);
}

/// Waits until `node`'s host assigner lists `nodes` nodes (heartbeats are read every 2 s).
fn wait_until_listed(runtime: &tokio::runtime::Runtime, node: &Natterd, nodes: usize) {
    let client = natter_client::Client::new(&format!("http://127.0.0.1:{}", node.port)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while runtime
        .block_on(client.cluster_gateway())
        .unwrap()
        .is_none_or(|gateway| gateway.nodes.len() < nodes)
    {
        assert!(
            Instant::now() < deadline,
            "the nodes never listed each other"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `N` natterd nodes of one cluster on a scratch PostgreSQL database and Redis, each listing
/// every other, as a client that ran a while knows them.
struct Cluster<const N: usize> {
    nodes: [Natterd; N],
    database: natter_test_support::ScratchPostgres,
    runtime: tokio::runtime::Runtime,
}

impl<const N: usize> Cluster<N> {
    /// Starts node `i` with `start(database, redis, cluster, i)`, a cluster named after `name`;
    /// `None` where PostgreSQL or Redis is not configured.
    fn start(name: &str, start: impl Fn(&str, &str, &str, usize) -> Natterd) -> Option<Self> {
        let redis = natter_test_support::redis_url()?;
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let database = runtime.block_on(natter_test_support::ScratchPostgres::create())?;
        let cluster = format!("{name}{}", std::process::id());
        let nodes = std::array::from_fn(|i| start(&database.url, &redis, &cluster, i));
        for node in &nodes {
            wait_until_listed(&runtime, node, N);
        }
        Some(Self {
            nodes,
            database,
            runtime,
        })
    }
}

impl Cluster<2> {
    fn two_nodes(name: &str) -> Option<Self> {
        Self::start(name, |database, redis, cluster, _| {
            Natterd::node(database, redis, cluster)
        })
    }
}

#[test]
fn nodes_whose_clocks_are_an_hour_off_still_list_each_other() {
    let clocks = [None, Some("+1h"), Some("-1h")];
    // Bound whole: the scratch database lives as long as the cluster value.
    let Some(Cluster {
        nodes,
        runtime,
        database: _database,
    }) = Cluster::<3>::start("clocks", |database, redis, cluster, i| {
        Natterd::node_with_clock(database, redis, cluster, clocks[i])
    })
    else {
        return;
    };
    // And they stay listed, heartbeat after heartbeat (read every 2 s).
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(500));
        for node in &nodes {
            let client =
                natter_client::Client::new(&format!("http://127.0.0.1:{}", node.port)).unwrap();
            let gateway = runtime.block_on(client.cluster_gateway()).unwrap().unwrap();
            assert_eq!(
                gateway.nodes.len(),
                3,
                "node :{} lists {:?}",
                node.port,
                gateway.nodes
            );
        }
    }
}

#[test]
fn a_killed_nodes_devices_move_to_the_other_node_and_lose_nothing() {
    let Some(cluster) = Cluster::two_nodes("bench") else {
        return;
    };
    let [doomed, survivor] = &cluster.nodes;
    let pid = doomed.pid().to_string();
    let args = [
        "reconnect",
        "-n",
        "40",
        "--rate",
        "30",
        "--secs",
        "4",
        "--gateway",
        "--kill-pid",
        &pid,
    ];
    let result = doomed.bench(&args);
    assert_eq!(result["all_back"], Value::Bool(true), "{result}");
    assert_no_loss(&result, 1);
    assert!(number(&result, "dropped_connections") > 0, "{result}");
    assert_eq!(
        number(&result, "moved_to_another_node"),
        number(&result, "dropped_connections"),
        "every device of the dead node moved: {result}"
    );
    let at_end: Vec<&String> = result["devices_per_node_at_end"]
        .as_object()
        .expect("devices per node")
        .keys()
        .collect();
    assert_eq!(
        at_end,
        [&format!("ws://127.0.0.1:{}/v1/ws", survivor.port)],
        "everyone ends on the survivor: {result}"
    );
}

#[test]
fn soak_with_churn_loses_nothing_and_keeps_no_files_open() {
    let natterd = Natterd::start();
    let pid = natterd.pid().to_string();
    let args = [
        "soak",
        "-n",
        "20",
        "--rate",
        "20",
        "--secs",
        "10",
        "--churn-every-secs",
        "2",
        "--churn-fraction",
        "0.25",
        "--sample-every-secs",
        "1",
        "--pid",
        &pid,
    ];
    let result = natterd.bench(&args);
    assert_eq!(result["all_back_at_end"], Value::Bool(true), "{result}");
    assert!(number(&result, "churns") >= 3, "{result}");
    assert!(
        number(&result, "dropped_connections") == 0,
        "cuts are the client's: {result}"
    );
    assert_no_loss(&result, 1);
    let (first, last) = (
        number(&result, "natterd_open_files_first"),
        number(&result, "natterd_open_files_last"),
    );
    assert!(
        last <= first + 2,
        "every churned connection's socket was closed: {first} open files before, {last} after"
    );
    assert!(number(&result, "samples") >= 10, "{result}");
}

/// A tmpfs of its own for one test, unmounted when dropped: a disk that can be filled.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts `size` (such as `16m`) of tmpfs. Needs root, as CI runs; fails loudly otherwise.
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "natter-full-disk",
            ])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "the full-disk test mounts a small tmpfs, which needs root (CI runs as root)"
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills what is left of the disk with one file, and returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_disk_refuses_sends_until_there_is_room_and_loses_nothing() {
    let disk = SmallDisk::mount("64m");
    let database = format!("sqlite://{}/natter.db", disk.path().display());
    let natterd = Natterd::start_with(vec!["--database-url".into(), database]);
    // Accounts first (cached for the run that counts), so the disk fills during the traffic.
    natterd.bench(&["direct", "-n", "20", "--rate", "20", "--secs", "1"]);
    let args = [
        "direct",
        "-n",
        "20",
        "--rate",
        "40",
        "--secs",
        "8",
        "--drain-secs",
        "30",
    ];
    let bench = natterd.spawn_bench(&args);
    std::thread::sleep(Duration::from_secs(2));
    let filler = disk.fill();
    std::thread::sleep(Duration::from_secs(3));
    std::fs::remove_file(filler).unwrap();
    let result = bench.wait();
    assert_all_acked(&result, 1);
    assert!(
        number(&result, "retried_after_wait") > 0,
        "the full disk refused sends with a retry time: {result}"
    );
    let log = std::fs::read_to_string(natterd.dir.path().join("natterd.log")).unwrap();
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_paused_node_in_a_cluster_delivers_everything_once_when_it_resumes() {
    let Some(cluster) = Cluster::two_nodes("pause") else {
        return;
    };
    let [paused, other] = &cluster.nodes;
    let pid = paused.pid().to_string();
    let args = [
        "reconnect",
        "-n",
        "40",
        "--rate",
        "30",
        "--secs",
        "9",
        "--gateway",
        "--pause-pid",
        &pid,
        "--pause-secs",
        "4",
    ];
    let result = other.bench(&args);
    assert_eq!(result["all_back"], Value::Bool(true), "{result}");
    assert_no_loss(&result, 1);
}

/// Takes `database` away from everyone for `outage`, as a PostgreSQL restart does: new
/// connections are refused and every open one is ended; then lets them in again.
async fn postgres_outage(database: &str, outage: Duration) {
    use sqlx::Connection;
    let admin_url = natter_test_support::postgres_url().expect("configured");
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    let name = database.rsplit('/').next().unwrap();
    let statements = [
        format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
        format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"),
    ];
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    tokio::time::sleep(outage).await;
    let allow = format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true");
    sqlx::raw_sql(sqlx::AssertSqlSafe(allow))
        .execute(&mut admin)
        .await
        .unwrap();
}

/// Runs `direct` for 10 s (40 devices through the host assigner, 30 msg/s) from `node`, with
/// `fault` done once setup is over and traffic flows, and returns the result.
fn traffic_through(node: &Natterd, fault: impl FnOnce()) -> Value {
    let args = [
        "direct",
        "-n",
        "40",
        "--rate",
        "30",
        "--secs",
        "10",
        "--drain-secs",
        "30",
        "--gateway",
    ];
    let bench = node.spawn_bench(&args);
    // Setup (registering 40 accounts) first, then a few seconds of traffic.
    std::thread::sleep(Duration::from_secs(6));
    fault();
    bench.wait()
}

#[test]
fn a_postgres_outage_under_traffic_loses_and_doubles_nothing() {
    let Some(cluster) = Cluster::two_nodes("pg") else {
        return;
    };
    let [a, _] = &cluster.nodes;
    let result = traffic_through(a, || {
        cluster.runtime.block_on(postgres_outage(
            &cluster.database.url,
            Duration::from_secs(3),
        ));
    });
    assert_no_loss(&result, 1);
    assert!(
        number(&result, "retried_after_wait") > 0,
        "the outage was felt: {result}"
    );
    assert_eq!(
        number(&result, "refused"),
        0,
        "sends during the outage are made again: {result}"
    );
    assert_eq!(
        number(&result, "acked"),
        number(&result, "sent"),
        "{result}"
    );
}

/// A TCP relay to `target` that can stop passing bytes in both directions (as a partition
/// drops packets: nothing is closed, and what was sent arrives once it heals, as TCP's
/// retransmissions would bring it).
struct Partition {
    port: u16,
    healed: Arc<(Mutex<bool>, Condvar)>,
}

impl Partition {
    fn start(target: String) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let healed = Arc::new((Mutex::new(true), Condvar::new()));
        let gate = healed.clone();
        std::thread::spawn(move || {
            for inbound in listener.incoming() {
                let Ok(inbound) = inbound else { continue };
                let Ok(outbound) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (inbound.try_clone().unwrap(), outbound.try_clone().unwrap()),
                    (outbound, inbound),
                ] {
                    let gate = gate.clone();
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let mut buffer = vec![0; 64 * 1024];
                        while let Ok(n @ 1..) = from.read(&mut buffer) {
                            let (healed, changed) = &*gate;
                            drop(changed.wait_while(healed.lock().unwrap(), |h| !*h).unwrap());
                            if to.write_all(&buffer[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self { port, healed }
    }

    /// Stops (false) or resumes (true) passing bytes.
    fn set_healed(&self, healed: bool) {
        *self.healed.0.lock().unwrap() = healed;
        self.healed.1.notify_all();
    }
}

#[test]
fn a_node_cut_off_from_redis_but_not_from_its_clients_loses_and_doubles_nothing() {
    let Some(redis) = natter_test_support::redis_url() else {
        return;
    };
    let target = redis.trim_start_matches("redis://").split('/').next();
    let partition = Partition::start(target.unwrap().to_owned());
    let cut_off = format!("redis://127.0.0.1:{}", partition.port);
    // Node 0 reaches Redis through the partition, node 1 directly.
    let Some(Cluster {
        nodes,
        database: _database,
        runtime: _runtime,
    }) = Cluster::<2>::start("partition", |database, redis, cluster, i| {
        Natterd::node(database, if i == 0 { &cut_off } else { redis }, cluster)
    })
    else {
        return;
    };
    let result = traffic_through(&nodes[0], || {
        partition.set_healed(false);
        std::thread::sleep(Duration::from_secs(4));
        partition.set_healed(true);
    });
    assert_all_acked(&result, 1);
    let at_end = result["devices_per_node_at_end"]
        .as_object()
        .expect("devices per node");
    assert_eq!(at_end.len(), 2, "traffic crossed the nodes: {result}");
    let slowest = result["send_to_delivery"]["max_ms"].as_f64().unwrap();
    assert!(
        slowest < 10_000.0,
        "what crossed the partition arrived within the promise: {result}"
    );
}
