//! Stale keys: a device that was reset cannot read old messages and says why; new ones work.

use natter_client::UnableToDecrypt;

use crate::helpers::{TestServer, texts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_device_cannot_read_old_messages_and_new_sessions_work() {
    let server = TestServer::start().await;
    let (alice, bob, direct) = server.alice_and_bob().await;
    alice.send_text(direct, "before the reset").await.unwrap();
    alice.sync().await.unwrap();
    bob.sync().await.unwrap();
    assert_eq!(texts(&bob, direct).await, ["before the reset"]);

    // Bob's device is wiped: he logs out and logs in afresh with a new store and keys.
    bob.logout().await.unwrap();
    let bob_again = server.device("bob", "reinstalled").await;
    let old = bob_again.fetch_history(direct, 0).await.unwrap();
    assert_eq!(old.len(), 1);
    let reason = old[0].body.clone().unwrap_err();
    assert_eq!(reason, UnableToDecrypt::MissingKey);
    assert_eq!(
        reason.to_string(),
        "unable to decrypt: this device was never given the key for this message"
    );

    alice.send_text(direct, "after the reset").await.unwrap();
    alice.sync().await.unwrap();
    bob_again.sync().await.unwrap();
    assert_eq!(
        texts(&bob_again, direct).await,
        [reason.to_string(), "after the reset".to_owned()]
    );

    // A damaged ciphertext is reported as such, never a crash.
    let mut message = alice
        .session()
        .history(direct, None, None, None)
        .await
        .unwrap()[1]
        .clone();
    let mut wire: serde_json::Value = serde_json::from_str(&message.ciphertext).unwrap();
    let body = wire["m"].as_str().unwrap().to_owned();
    let middle = body.len() / 2;
    let flipped = if &body[middle..=middle] == "A" {
        "B"
    } else {
        "A"
    };
    wire["m"] = format!("{}{flipped}{}", &body[..middle], &body[middle + 1..]).into();
    message.ciphertext = wire.to_string();
    assert!(matches!(
        bob_again.decrypt(&message).await.unwrap(),
        Err(UnableToDecrypt::Corrupt(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_keys_are_swapped_is_no_longer_given_keys() {
    let server = TestServer::start().await;
    let (alice, bob, direct) = server.alice_and_bob().await;
    alice.send_text(direct, "first").await.unwrap();
    alice.sync().await.unwrap();
    let number = alice.safety_number(bob.user_id()).await.unwrap();

    // The server (or whoever holds bob's token) replaces bob's device keys with validly
    // signed ones of another account: the safety number changes, and alice, who pinned the
    // first keys, shares nothing more with that device.
    let impostor = natter_crypto::DeviceAccount::new();
    let swapped = natter_proto::keys::UploadKeysRequest {
        identity_keys: Some(impostor.identity_keys(bob.user_id(), bob.device_id())),
        ..Default::default()
    };
    bob.session().upload_keys(&swapped).await.unwrap();
    assert_ne!(alice.safety_number(bob.user_id()).await.unwrap(), number);
    alice.send_text(direct, "second").await.unwrap();
    alice.sync().await.unwrap();
    bob.sync().await.unwrap();
    assert_eq!(
        texts(&bob, direct).await,
        ["first", &UnableToDecrypt::MissingKey.to_string()]
    );
}
