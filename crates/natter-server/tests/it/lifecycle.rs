//! The real `natterd` at the edges of its life: what it refuses to start on (a SQLite file
//! another natterd serves, a read-only store, a cluster node with no address to hand out),
//! what its readiness says when the store stops taking writes, and how it names itself when
//! listening on every interface. (How it stops, and its data files' modes: `process.rs`.)

use std::path::Path;

use crate::helpers::{Backend, TestDatabase, TestServer, backend_tests, cluster_name};
use crate::process::{Natterd, free_port};

backend_tests!(a_read_only_store_is_refused_at_start);

#[tokio::test]
async fn a_second_natterd_on_the_same_sqlite_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Natterd::start(dir.path(), None, &[]).await;
    let (status, log) = Natterd::refused(dir.path(), None, &[]).await;
    assert!(!status.success(), "{status:?}");
    assert!(
        log.contains("in use by another natterd"),
        "the refusal says why: {log}"
    );
    // The first one is untouched, and once it stops the file is free again.
    first
        .client
        .register("alice", "password123", None)
        .await
        .unwrap();
    first.signal("TERM").await;
    let again = Natterd::start(dir.path(), None, &[]).await;
    again
        .client
        .login("alice", "password123", "laptop")
        .await
        .unwrap();
}

/// Marks a file immutable (even root cannot write it) until dropped.
struct Immutable<'a>(&'a Path);

impl<'a> Immutable<'a> {
    fn set(path: &'a Path) -> Self {
        let status = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status();
        assert!(
            status.is_ok_and(|s| s.success()),
            "chattr +i {} failed: this test needs root on a file system with immutable files",
            path.display()
        );
        Self(path)
    }
}

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(self.0)
            .status();
    }
}

async fn a_read_only_store_is_refused_at_start(backend: Backend) {
    let Some(database) = TestDatabase::create(backend).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = database.url_text();
    // A first run creates and migrates the database.
    let mut natterd = Natterd::start(dir.path(), Some(&url), &[]).await;
    natterd.signal("TERM").await;
    let _immutable = match &database.url {
        natter_server::config::DatabaseUrl::Sqlite(path) => Some(Immutable::set(path)),
        natter_server::config::DatabaseUrl::Postgres(_) => {
            set_read_only(&url, true).await;
            None
        }
    };
    let (status, log) = Natterd::refused(dir.path(), Some(&url), &[]).await;
    assert!(!status.success(), "{status:?}");
    assert!(log.contains("read-only"), "the refusal says why: {log}");
}

/// Makes the PostgreSQL database at `url` read-only for new sessions (or writable again), and
/// ends its other sessions so that pools reconnect under the new default.
async fn set_read_only(url: &str, read_only: bool) {
    use sqlx::Connection;
    let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    let setting = if read_only { "on" } else { "off" };
    // This session may have started read-only itself: its next transaction is writable.
    sqlx::raw_sql("SET default_transaction_read_only = off")
        .execute(&mut connection)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER DATABASE {name} SET default_transaction_read_only = {setting}"
    )))
    .execute(&mut connection)
    .await
    .unwrap();
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .execute(&mut connection)
    .await
    .unwrap();
}

/// Readiness asks the store for a write: a database that turns read-only under a running node
/// makes it unready, and ready again when it takes writes. (PostgreSQL: an open SQLite file
/// cannot be made read-only under its process.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_says_whether_the_store_takes_writes() {
    let Some(server) = TestServer::start(Backend::Postgres).await else {
        return;
    };
    let url = server.database.url_text();
    set_read_only(&url, true).await;
    server
        .wait_for_readiness("the store is read-only", |status, body| {
            status == 503 && body["store"] == "read_only"
        })
        .await;
    set_read_only(&url, false).await;
    server
        .wait_for_readiness("ready again", |status, body| {
            status == 200 && body["store"] == "ok"
        })
        .await;
}

#[tokio::test]
async fn listening_on_every_interface_names_the_node_by_the_host_it_was_asked_by() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let natterd = Natterd::start_on(port, dir.path(), None, &["--listen", &listen]).await;
    let gateway = |host: &str| {
        reqwest::Client::new()
            .get(format!("{}/v1/gateway", natterd.url))
            .header("host", host)
            .send()
    };
    for host in [format!("127.0.0.1:{port}"), "chat.example.com:8443".into()] {
        let answer: natter_proto::gateway::GatewayResponse =
            gateway(&host).await.unwrap().json().await.unwrap();
        let expected = format!("ws://{host}/v1/ws");
        assert_eq!(answer.url, expected);
        assert_eq!(answer.nodes, [expected]);
    }
    // Never the unspecified address; a Host that names no server is a 400 problem.
    let refused = gateway("user@evil.example").await.unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(
        refused.headers()["content-type"],
        natter_proto::problem::CONTENT_TYPE
    );
    // A cluster node's URL is handed out by the other nodes: it must be told it.
    let cluster = cluster_name();
    let (status, log) = Natterd::refused(
        dir.path(),
        None,
        &[
            "--listen",
            "0.0.0.0:0",
            "--redis-url",
            "redis://127.0.0.1:6379",
            "--cluster-name",
            &cluster,
        ],
    )
    .await;
    assert!(!status.success(), "{status:?}");
    assert!(
        log.contains("--public-url"),
        "the refusal says what to set: {log}"
    );
}
