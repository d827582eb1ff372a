//! Taking keys back: removing an approved device rotates what it held, a stolen password alone
//! cannot replace the identity or touch the backup, and a reset starts the identity anew with
//! everyone told. The removed device's keys are played by the operator, who copies them from
//! the recovery item as it was when the device was approved.

use natter_client::{ClientError, Device, Notice, TrustLevel, UnableToDecrypt};
use natter_crypto::backup::{IDENTITY_ITEM, ROOM_PREFIX};
use natter_crypto::{MasterKey, RecoveryKey, Secrets};
use natter_proto::keys::BackupItem;
use natter_proto::{DeviceId, UserId};

use crate::helpers::{TestServer, on_both_backends, operator_logs_in, published_keys, texts};

on_both_backends!(
    removing_an_approved_device_rotates_the_keys_it_held,
    a_stolen_password_alone_cannot_replace_the_identity_or_touch_the_backup,
    a_reset_starts_the_identity_anew_and_everyone_is_told,
);

/// The secrets in `user`'s recovery item now, opened with the recovery key.
async fn recovery_item_secrets(device: &Device, recovery_key: &str) -> Secrets {
    let items = device.session().backup_items("").await.unwrap();
    let item = items
        .iter()
        .find(|item| item.name == IDENTITY_ITEM)
        .expect("the recovery item");
    let key = RecoveryKey::parse(recovery_key).unwrap();
    key.open_secrets(device.user_id(), item).unwrap().1
}

async fn room_items(device: &Device) -> Vec<BackupItem> {
    device.session().backup_items(ROOM_PREFIX).await.unwrap()
}

fn sorted(mut ids: Vec<DeviceId>) -> Vec<DeviceId> {
    ids.sort();
    ids
}

/// The device list `viewer` gets of `user`: (device, signed) pairs.
async fn signed_devices(viewer: &Device, user: UserId) -> Vec<(DeviceId, bool)> {
    let mut list: Vec<_> = viewer
        .device_list(user)
        .await
        .unwrap()
        .into_iter()
        .map(|d| (d.device_id, d.signed))
        .collect();
    list.sort();
    list
}

async fn removing_an_approved_device_rotates_the_keys_it_held(server: TestServer) {
    let (alice, bob, direct) = server.alice_and_bob().await;
    let me = alice.user_id();
    let recovery_key = server.recovery_key("alice");
    let phone = server.device("alice", "phone").await;
    let tablet = server.device("alice", "tablet").await;
    bob.send_text(direct, "before the removal").await.unwrap();
    bob.sync().await.unwrap();
    alice.sync().await.unwrap();
    phone.sync().await.unwrap();
    let number = bob.safety_number(me).await.unwrap();
    // What the tablet holds: the self-signing and backup keys of the recovery item.
    let tablets = recovery_item_secrets(&alice, &recovery_key).await;

    // An approved device is not removed without the recovery key.
    assert!(matches!(
        alice.remove_device(tablet.device_id(), None).await,
        Err(ClientError::RecoveryKeyNeeded)
    ));
    assert_eq!(signed_devices(&bob, me).await.len(), 3);

    let removal = alice
        .remove_device(tablet.device_id(), Some(&recovery_key))
        .await
        .unwrap();
    assert!(removal.was_approved);
    assert_eq!(
        sorted(removal.kept),
        sorted(vec![alice.device_id(), phone.device_id()])
    );
    // Contacts see the same identity (same safety number, nothing to tell) and the two devices
    // that stay, signed with the new self-signing key.
    assert_eq!(bob.safety_number(me).await.unwrap(), number);
    assert_eq!(
        signed_devices(&bob, me).await,
        sorted(vec![alice.device_id(), phone.device_id()])
            .into_iter()
            .map(|d| (d, true))
            .collect::<Vec<_>>()
    );
    let rotated = recovery_item_secrets(&alice, &recovery_key).await;
    assert_eq!(rotated.identity.master_key(), tablets.identity.master_key());
    assert_ne!(
        rotated.identity.public().self_signing_key,
        tablets.identity.public().self_signing_key
    );

    // The removed tablet's self-signing key vouches for nothing: a device the operator adds and
    // signs with it gets no keys, and bob is told it was left out.
    let ghost = operator_logs_in(&server, "alice", "ghost").await;
    let ghost_keys = published_keys(&bob, me, ghost.device_id()).await;
    let signature = tablets
        .identity
        .sign_device(me, ghost.device_id(), &ghost_keys);
    server.operator_sql(&format!(
        "UPDATE devices SET cross_signature = '{signature}' WHERE id = '{}'",
        ghost.device_id()
    ));
    bob.send_text(direct, "after the removal").await.unwrap();
    bob.sync().await.unwrap();
    assert!(
        bob.notices()
            .await
            .unwrap()
            .contains(&Notice::DevicesSkipped {
                user_id: me,
                devices: vec![ghost.device_id()],
            })
    );
    assert_eq!(bob.trust_level(me).await.unwrap(), TrustLevel::Pinned);
    ghost.sync().await.unwrap();
    let ghost_reads: Vec<_> = ghost
        .fetch_history(direct, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert!(
        ghost_reads
            .iter()
            .all(|m| *m == Err(UnableToDecrypt::MissingKey)),
        "{ghost_reads:?}"
    );

    // Alice's laptop hands the new secrets to the phone as it connects; the phone reads on and
    // backs up under the new backup key, which the tablet's keys do not open.
    alice.sync().await.unwrap();
    phone.sync().await.unwrap();
    let expected = ["before the removal", "after the removal"];
    assert_eq!(texts(&alice, direct).await, expected);
    assert_eq!(texts(&phone, direct).await, expected);
    let items = room_items(&alice).await;
    assert_eq!(items.len(), 2, "one room key per message session");
    assert!(
        items
            .iter()
            .all(|item| rotated.backup.open_room_key(me, item).is_ok()),
        "the rotated keys open what was backed up before and after"
    );
    let tablet_opens = items
        .iter()
        .filter(|item| tablets.backup.open_room_key(me, item).is_ok())
        .count();
    assert_eq!(
        tablet_opens, 1,
        "the tablet's keys open only the older item"
    );

    // A device approved later with the recovery key reads both.
    let later = server.device("alice", "later").await;
    later.sync().await.unwrap();
    assert_eq!(texts(&later, direct).await, expected);
}

async fn a_stolen_password_alone_cannot_replace_the_identity_or_touch_the_backup(
    server: TestServer,
) {
    let (alice, bob, _direct) = server.alice_and_bob().await;
    let me = alice.user_id();
    let number = bob.safety_number(me).await.unwrap();
    let backup_before = alice.session().backup_items("").await.unwrap();
    let thief = server.unapproved_device("alice", "thief").await;
    let session = thief.session();

    // Another master key is a reset, which the publishing endpoint refuses.
    let theirs = MasterKey::generate().new_self_signing(me);
    let refused = session.publish_identity(theirs.public()).await.unwrap_err();
    assert_eq!(refused.status(), Some(409), "{refused}");
    // The same master key with a self-signing key it did not certify is refused too.
    let mut forged = theirs.public().clone();
    forged.master_key = alice
        .session()
        .devices_and_identity(me)
        .await
        .unwrap()
        .identity
        .unwrap()
        .master_key;
    let refused = session.publish_identity(&forged).await.unwrap_err();
    assert_eq!(refused.code(), Some("bad_signature"), "{refused}");
    // Signing itself with a key of its own is refused.
    let keys = published_keys(&thief, me, thief.device_id()).await;
    let signature = theirs.sign_device(me, thief.device_id(), &keys);
    let refused = session
        .sign_device(thief.device_id(), &signature)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("bad_signature"), "{refused}");
    // The backup can be read (it is sealed) but not written or wiped.
    let planted = BackupItem {
        name: format!("{ROOM_PREFIX}planted"),
        data: "AAAA".into(),
    };
    for refused in [
        session.put_backup_item(&planted).await.unwrap_err(),
        session.delete_backup().await.unwrap_err(),
    ] {
        assert_eq!(refused.code(), Some("not_approved"), "{refused}");
    }

    assert_eq!(bob.safety_number(me).await.unwrap(), number);
    let backup_after = alice.session().backup_items("").await.unwrap();
    assert_eq!(backup_after, backup_before);
    assert!(
        !signed_devices(&bob, me)
            .await
            .contains(&(thief.device_id(), true))
    );
}

async fn a_reset_starts_the_identity_anew_and_everyone_is_told(server: TestServer) {
    let (alice, bob, direct) = server.alice_and_bob().await;
    let me = alice.user_id();
    let old_key = server.recovery_key("alice");
    bob.confirm_verified(me).await.unwrap();
    alice.send_text(direct, "before the reset").await.unwrap();
    alice.sync().await.unwrap();
    bob.sync().await.unwrap();

    // Alice lost her devices and her recovery key: a new device, and her password.
    let fresh = server.unapproved_device("alice", "fresh").await;
    let wrong = fresh.reset_identity("not the password").await.unwrap_err();
    assert_eq!(wrong.code(), Some("wrong_password"), "{wrong}");
    let new_key = fresh.reset_identity("password123").await.unwrap();
    assert!(fresh.is_approved().await);

    // Every device of hers is unsigned but the fresh one, and the old backup is gone: the old
    // recovery key opens nothing, the new one approves another device.
    assert_eq!(
        signed_devices(&bob, me).await,
        sorted(vec![alice.device_id(), fresh.device_id()])
            .into_iter()
            .map(|d| (d, d == fresh.device_id()))
            .collect::<Vec<_>>()
    );
    let another = server.unapproved_device("alice", "another").await;
    assert!(another.recover(&old_key).await.is_err());
    another.recover(&new_key).await.unwrap();
    assert!(
        room_items(&another).await.is_empty(),
        "the old backup went with the old identity"
    );

    // Bob had verified the old identity: he is told, and sends nothing until he verifies again.
    bob.send_text(direct, "held back").await.unwrap();
    let report = bob.sync().await.unwrap();
    assert_eq!(
        report
            .failed
            .iter()
            .map(|(_, code)| code.as_str())
            .collect::<Vec<_>>(),
        ["identity_changed"]
    );
    assert!(
        bob.notices()
            .await
            .unwrap()
            .contains(&Notice::SafetyNumberChanged {
                user_id: me,
                was_verified: true,
            })
    );
    bob.confirm_verified(me).await.unwrap();
    bob.send_text(direct, "after verifying again")
        .await
        .unwrap();
    bob.sync().await.unwrap();
    fresh.sync().await.unwrap();
    assert_eq!(
        texts(&fresh, direct).await.last().map(String::as_str),
        Some("after verifying again")
    );
}
