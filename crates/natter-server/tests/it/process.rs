//! The real `natterd` binary: one command starts it on the embedded default, and SIGTERM
//! stops it cleanly.

use std::process::{Command, Stdio};
use std::time::Duration;

#[tokio::test]
async fn natterd_starts_on_its_embedded_default_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let child = Command::new(env!("CARGO_BIN_EXE_natterd"))
        .current_dir(dir.path())
        .env_remove("NATTER_DATABASE_URL")
        .env("NATTER_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting natterd");
    let client = natter_client::Client::new(&format!("http://127.0.0.1:{port}")).unwrap();
    let mut registered = false;
    for _ in 0..300 {
        if client.register("alice", "password123", None).await.is_ok() {
            registered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(registered, "natterd did not come up");
    assert!(
        dir.path().join("natter-data/natter.db").exists(),
        "the embedded database lives in ./natter-data/"
    );
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        output.status.success(),
        "natterd exits 0 on SIGTERM: {:?}",
        output.status
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(
        !log.contains("password123"),
        "passwords never reach the log"
    );
}
