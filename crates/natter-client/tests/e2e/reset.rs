//! Stale keys: a reset device reads nothing until approved and says why; once approved it
//! reads what was backed up and what follows.

use natter_client::UnableToDecrypt;

use crate::helpers::{TestServer, texts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_device_reads_nothing_until_approved_then_what_was_backed_up() {
    let server = TestServer::start().await;
    let (alice, bob, direct) = server.alice_and_bob().await;
    alice.send_text(direct, "before the reset").await.unwrap();
    alice.sync().await.unwrap();
    bob.sync().await.unwrap();
    assert_eq!(texts(&bob, direct).await, ["before the reset"]);

    // Bob's device is wiped: he logs out and logs in afresh with a new store and keys. Until
    // he approves the new device, it is given no keys and reads nothing.
    bob.logout().await.unwrap();
    let bob_again = server.unapproved_device("bob", "reinstalled").await;
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
        [reason.to_string(), reason.to_string()]
    );

    // Approved with the recovery key, it reads the first message (bob's first device backed
    // its key up); the second was given to no device of bob's, so it stays unreadable, and
    // what alice sends next reaches the approved device.
    bob_again
        .recover(&server.recovery_key("bob"))
        .await
        .unwrap();
    assert_eq!(
        texts(&bob_again, direct).await,
        ["before the reset".to_owned(), reason.to_string()]
    );
    alice.send_text(direct, "after the approval").await.unwrap();
    alice.sync().await.unwrap();
    bob_again.sync().await.unwrap();
    assert_eq!(texts(&bob_again, direct).await[2..], ["after the approval"]);

    // A damaged ciphertext is reported as such, never a crash.
    let mut message = alice
        .session()
        .history(direct, None, None, None)
        .await
        .unwrap()[2]
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
    // self-signed ones of another account: bob's identity never signed them, so alice shares
    // nothing more with that device and is told. The safety number (over identities) stays.
    let impostor = natter_crypto::DeviceAccount::new();
    let swapped = natter_proto::keys::UploadKeysRequest {
        identity_keys: Some(impostor.identity_keys(bob.user_id(), bob.device_id())),
        ..Default::default()
    };
    bob.session().upload_keys(&swapped).await.unwrap();
    assert_eq!(alice.safety_number(bob.user_id()).await.unwrap(), number);
    alice.send_text(direct, "second").await.unwrap();
    alice.sync().await.unwrap();
    assert!(
        alice
            .notices()
            .await
            .unwrap()
            .contains(&natter_client::Notice::DevicesSkipped {
                user_id: bob.user_id(),
                devices: vec![bob.device_id()],
            })
    );
    bob.sync().await.unwrap();
    assert_eq!(
        texts(&bob, direct).await,
        ["first", &UnableToDecrypt::MissingKey.to_string()]
    );
}
