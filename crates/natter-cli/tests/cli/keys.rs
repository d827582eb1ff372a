//! Taking keys back and changing locks, through the real `natter` binary: removing an approved
//! device asks for the recovery key, a reset starts the identity anew with a new key, and the
//! local store's passphrase can be changed.

use crate::{PASSPHRASE, json_lines, natter, natter_unlocked_with, natter_with_env, ok, server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_approved_device_takes_the_recovery_key_and_a_reset_starts_anew() {
    let dir = tempfile::tempdir().unwrap();
    let url = server(dir.path()).await;
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    ok(&url, &alice, &["register", "alice"]).await;
    let login = json_lines(&ok(&url, &alice, &["--json", "login", "alice"]).await);
    let recovery_key = login[0]["recovery_key"].as_str().unwrap().to_owned();
    let laptop_id = login[0]["device_id"].as_str().unwrap().to_owned();
    ok(&url, &bob, &["register", "bob"]).await;
    ok(&url, &bob, &["login", "bob"]).await;
    ok(&url, &alice, &["connections", "request", "bob"]).await;
    ok(&url, &bob, &["connections", "accept", "alice"]).await;

    let tablet = dir.path().join("alice-tablet");
    let tablet_login = json_lines(
        &ok(
            &url,
            &tablet,
            &["--json", "login", "alice", "--device-name", "tablet"],
        )
        .await,
    );
    let tablet_id = tablet_login[0]["device_id"].as_str().unwrap().to_owned();
    let key = [("NATTER_RECOVERY_KEY", recovery_key.as_str())];
    let recovered = natter_with_env(&url, &tablet, &["recover"], &key).await;
    assert!(recovered.status.success());

    // Without the recovery key (no terminal to ask on), nothing is removed.
    let refused = natter(&url, &alice, &["devices", "--remove", &tablet_id]).await;
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("recovery key"), "{said}");
    assert!(ok(&url, &alice, &["devices"]).await.contains(&tablet_id));

    let removed = natter_with_env(
        &url,
        &alice,
        &["--json", "devices", "--remove", &tablet_id],
        &key,
    )
    .await;
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    let removed = json_lines(&String::from_utf8_lossy(&removed.stdout));
    assert_eq!(removed[0]["was_approved"], true);
    assert_eq!(removed[0]["kept"], serde_json::json!([laptop_id]));
    let devices = ok(&url, &alice, &["devices"]).await;
    assert!(!devices.contains(&tablet_id), "{devices}");
    assert!(devices.contains("signed"), "{devices}");
    // Bob's safety number with alice did not change.
    let before = json_lines(&ok(&url, &bob, &["--json", "verify", "alice"]).await);
    ok(&url, &alice, &["send", "bob", "after the removal"]).await;
    assert!(
        ok(&url, &bob, &["history", "alice"])
            .await
            .contains("after the removal")
    );

    // A reset needs --yes, then shows a new recovery key; bob is told the number changed.
    let unconfirmed = natter(&url, &alice, &["reset-identity"]).await;
    assert!(!unconfirmed.status.success());
    assert!(String::from_utf8_lossy(&unconfirmed.stderr).contains("--yes"));
    let reset = json_lines(&ok(&url, &alice, &["--json", "reset-identity", "--yes"]).await);
    let new_key = reset[0]["recovery_key"].as_str().unwrap();
    assert_ne!(new_key, recovery_key);
    let after = json_lines(&ok(&url, &bob, &["--json", "verify", "alice"]).await);
    assert_ne!(before[0]["safety_number"], after[0]["safety_number"]);
    let told = natter(&url, &bob, &["sync"]).await;
    assert!(
        String::from_utf8_lossy(&told.stderr).contains("safety number changed"),
        "{}",
        String::from_utf8_lossy(&told.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_stores_passphrase_changes() {
    let dir = tempfile::tempdir().unwrap();
    let url = server(dir.path()).await;
    let alice = dir.path().join("alice");
    ok(&url, &alice, &["register", "alice"]).await;
    ok(&url, &alice, &["login", "alice"]).await;

    let changed = natter_with_env(
        &url,
        &alice,
        &["passphrase"],
        &[("NATTER_NEW_PASSPHRASE", "a new passphrase")],
    )
    .await;
    assert!(
        changed.status.success(),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );
    let old = natter_unlocked_with(&url, &alice, &["whoami"], Some(PASSPHRASE)).await;
    assert!(!old.status.success());
    assert!(String::from_utf8_lossy(&old.stderr).contains("wrong passphrase"));
    let new = natter_unlocked_with(&url, &alice, &["whoami"], Some("a new passphrase")).await;
    assert!(new.status.success());
    assert!(String::from_utf8_lossy(&new.stdout).starts_with("alice"));
}
