//! The trust model tried as a hostile server operator would: devices and identities written
//! into the server's database directly. Keys go only to devices their user's identity signed,
//! a changed identity is told (and refused for a verified user), and a new device of one's own
//! reads nothing until approved with the recovery key, then reads the history.

use natter_client::{
    ApprovalEvent, ClientError, Device, Event, Notice, TrustLevel, UnableToDecrypt,
};
use natter_crypto::RecoveryKey;
use natter_proto::ConversationId;

use crate::helpers::{
    TestServer, live, next_event, on_both_backends, operator_logs_in, operator_replaces_identity,
    texts,
};

on_both_backends!(
    a_ghost_device_the_operator_adds_gets_no_keys_and_both_users_are_told,
    a_replaced_identity_is_told_and_for_a_verified_user_nothing_is_sent,
    an_unverified_users_replaced_identity_is_told,
);

/// Every message of a conversation the server has, as `device` can read it.
async fn readable(
    device: &Device,
    conversation: ConversationId,
) -> Vec<Result<String, UnableToDecrypt>> {
    device
        .fetch_history(conversation, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect()
}

async fn a_ghost_device_the_operator_adds_gets_no_keys_and_both_users_are_told(server: TestServer) {
    let (alice, bob, direct) = server.alice_and_bob().await;
    alice.send_text(direct, "before the ghost").await.unwrap();
    alice.sync().await.unwrap();

    let ghost = operator_logs_in(&server, "bob", "ghost").await;
    alice.send_text(direct, "after the ghost").await.unwrap();
    let report = alice.sync().await.unwrap();
    assert_eq!(report.sent, 1, "alice's message still goes to bob");
    assert!(
        alice
            .notices()
            .await
            .unwrap()
            .contains(&Notice::DevicesSkipped {
                user_id: bob.user_id(),
                devices: vec![ghost.device_id()],
            })
    );

    bob.sync().await.unwrap();
    assert_eq!(
        texts(&bob, direct).await,
        ["before the ghost", "after the ghost"]
    );
    ghost.sync().await.unwrap();
    let seen = readable(&ghost, direct).await;
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|m| *m == Err(UnableToDecrypt::MissingKey)),
        "{seen:?}"
    );
    assert!(matches!(
        ghost.send_text(direct, "from the ghost").await,
        Err(ClientError::NotApproved)
    ));

    // Bob's own client sees the device nobody approved as it connects, and names it.
    bob.sync().await.unwrap();
    assert!(bob.notices().await.unwrap().contains(&Notice::NewDevice {
        device_id: ghost.device_id(),
        name: "ghost".into(),
    }));
    assert_eq!(bob.take_new_notices().await.unwrap().len(), 1);
    assert!(bob.take_new_notices().await.unwrap().is_empty());
}

async fn a_replaced_identity_is_told_and_for_a_verified_user_nothing_is_sent(server: TestServer) {
    let (alice, bob, direct) = server.alice_and_bob().await;
    let number = alice.safety_number(bob.user_id()).await.unwrap();
    assert_eq!(number, bob.safety_number(alice.user_id()).await.unwrap());
    assert_eq!(alice.confirm_verified(bob.user_id()).await.unwrap(), number);
    alice.send_text(direct, "verified and sent").await.unwrap();
    alice.sync().await.unwrap();
    assert_eq!(
        alice.trust_level(bob.user_id()).await.unwrap(),
        TrustLevel::Verified
    );

    let ghost = operator_logs_in(&server, "bob", "ghost").await;
    operator_replaces_identity(&server, &bob, &ghost).await;
    assert_ne!(alice.safety_number(bob.user_id()).await.unwrap(), number);
    alice.send_text(direct, "must not leave").await.unwrap();
    let report = alice.sync().await.unwrap();
    assert_eq!(
        report
            .failed
            .iter()
            .map(|(_, code)| code.as_str())
            .collect::<Vec<_>>(),
        ["identity_changed"]
    );
    assert!(
        alice
            .notices()
            .await
            .unwrap()
            .contains(&Notice::SafetyNumberChanged {
                user_id: bob.user_id(),
                was_verified: true,
            })
    );
    assert_eq!(
        alice.trust_level(bob.user_id()).await.unwrap(),
        TrustLevel::Changed
    );
    // Still refused on the next try: the change is not forgotten once told, nor after the
    // server swaps the identity once more.
    alice
        .send_text(direct, "must not leave either")
        .await
        .unwrap();
    assert_eq!(alice.sync().await.unwrap().failed.len(), 1);
    operator_replaces_identity(&server, &bob, &ghost).await;
    alice
        .send_text(direct, "nor after a second swap")
        .await
        .unwrap();
    assert_eq!(alice.sync().await.unwrap().failed.len(), 1);
    assert_eq!(
        alice.trust_level(bob.user_id()).await.unwrap(),
        TrustLevel::Changed
    );
    ghost.sync().await.unwrap();
    assert_eq!(
        readable(&ghost, direct).await,
        [Err(UnableToDecrypt::MissingKey)]
    );

    // Verifying again is alice's decision; then sending works again.
    alice.confirm_verified(bob.user_id()).await.unwrap();
    alice
        .send_text(direct, "after verifying again")
        .await
        .unwrap();
    assert_eq!(alice.sync().await.unwrap().sent, 1);
}

async fn an_unverified_users_replaced_identity_is_told(server: TestServer) {
    let (alice, bob, direct) = server.alice_and_bob().await;
    alice.send_text(direct, "first").await.unwrap();
    alice.sync().await.unwrap();
    assert_eq!(
        alice.trust_level(bob.user_id()).await.unwrap(),
        TrustLevel::Pinned
    );
    alice.safety_number(bob.user_id()).await.unwrap();
    let ghost = operator_logs_in(&server, "bob", "ghost").await;
    operator_replaces_identity(&server, &bob, &ghost).await;
    // Confirming now would confirm an identity other than the one shown: refused.
    assert!(matches!(
        alice.confirm_verified(bob.user_id()).await,
        Err(ClientError::NumberChanged(_))
    ));
    assert_eq!(
        alice.trust_level(bob.user_id()).await.unwrap(),
        TrustLevel::Pinned
    );
    alice.send_text(direct, "second").await.unwrap();
    alice.sync().await.unwrap();
    let notices = alice.take_new_notices().await.unwrap();
    assert!(
        notices.contains(&Notice::SafetyNumberChanged {
            user_id: bob.user_id(),
            was_verified: false,
        }),
        "{notices:?}"
    );
    // The real bob's device is not signed by the identity the server now shows.
    assert!(notices.contains(&Notice::DevicesSkipped {
        user_id: bob.user_id(),
        devices: vec![bob.device_id()],
    }));
    bob.sync().await.unwrap();
    assert_eq!(
        texts(&bob, direct).await,
        ["first", &UnableToDecrypt::MissingKey.to_string()]
    );
    // Nor does alice take a new room key from that device any more, though she had it cached
    // as signed: what it sends now stays unreadable to her.
    bob.send_text(direct, "from a device alice no longer trusts")
        .await
        .unwrap();
    bob.sync().await.unwrap();
    alice.sync().await.unwrap();
    assert_eq!(
        texts(&alice, direct).await.last().map(String::as_str),
        Some(UnableToDecrypt::MissingKey.to_string().as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_device_reads_the_history_only_once_approved_with_the_recovery_key() {
    let server = TestServer::start().await;
    let (alice, bob, direct) = server.alice_and_bob().await;
    bob.send_text(direct, "from bob, before").await.unwrap();
    bob.sync().await.unwrap();
    alice.send_text(direct, "from alice, before").await.unwrap();
    alice.sync().await.unwrap();

    let phone = server.unapproved_device("alice", "phone").await;
    assert!(!phone.is_approved().await);
    assert!(phone.take_recovery_key().await.unwrap().is_none());
    bob.send_text(direct, "while the phone waits")
        .await
        .unwrap();
    bob.sync().await.unwrap();
    phone.sync().await.unwrap();
    let waiting = readable(&phone, direct).await;
    assert_eq!(waiting.len(), 3);
    assert!(
        waiting
            .iter()
            .all(|m| *m == Err(UnableToDecrypt::MissingKey))
    );
    assert!(matches!(
        phone.send_text(direct, "not yet").await,
        Err(ClientError::NotApproved)
    ));

    // A wrong key and a mistyped one approve nothing.
    let wrong = RecoveryKey::generate().to_display();
    assert!(matches!(
        phone.recover(&wrong).await,
        Err(ClientError::Crypto(_))
    ));
    assert!(phone.recover("not a recovery key").await.is_err());
    assert!(!phone.is_approved().await);

    // The first device keeps the keys it holds in the backup as it syncs.
    alice.sync().await.unwrap();
    let readable_now = phone.recover(&server.recovery_key("alice")).await.unwrap();
    assert_eq!(readable_now.len(), 3);
    assert!(phone.is_approved().await);
    assert_eq!(
        texts(&phone, direct).await,
        [
            "from bob, before",
            "from alice, before",
            "while the phone waits"
        ]
    );
    // Now it is a device like the others: given keys, and sending.
    bob.send_text(direct, "to both of alice's devices")
        .await
        .unwrap();
    bob.sync().await.unwrap();
    phone.send_text(direct, "from the phone").await.unwrap();
    phone.sync().await.unwrap();
    alice.sync().await.unwrap();
    assert_eq!(
        texts(&alice, direct).await.last().map(String::as_str),
        Some("from the phone")
    );
    assert_eq!(
        texts(&phone, direct).await[3..],
        ["to both of alice's devices", "from the phone"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recovery_key_alone_keeps_the_identity_and_the_history() {
    let server = TestServer::start().await;
    let (alice, bob, direct) = server.alice_and_bob().await;
    alice
        .send_text(direct, "kept across devices")
        .await
        .unwrap();
    alice.sync().await.unwrap();
    bob.sync().await.unwrap();
    let number = bob.safety_number(alice.user_id()).await.unwrap();
    bob.confirm_verified(alice.user_id()).await.unwrap();

    // Alice loses her only device; a new one and the recovery key are all she has.
    alice.logout().await.unwrap();
    let again = server.device("alice", "new laptop").await;
    assert_eq!(again.safety_number(bob.user_id()).await.unwrap(), number);
    assert_eq!(
        readable(&again, direct).await,
        [Ok("kept across devices".into())]
    );
    // Bob, who had verified alice, still sends to her: her identity did not change.
    bob.send_text(direct, "welcome back").await.unwrap();
    assert_eq!(bob.sync().await.unwrap().sent, 1);
    again.sync().await.unwrap();
    assert_eq!(
        texts(&again, direct).await,
        ["kept across devices", "welcome back"]
    );
    assert!(bob.notices().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verification_reaches_the_users_other_approved_devices() {
    let server = TestServer::start().await;
    let (alice, bob, _direct) = server.alice_and_bob().await;
    let phone = server.device("alice", "phone").await;
    assert_eq!(
        phone.trust_level(bob.user_id()).await.unwrap(),
        TrustLevel::Unknown
    );
    alice.confirm_verified(bob.user_id()).await.unwrap();
    phone.sync().await.unwrap();
    assert_eq!(
        phone.trust_level(bob.user_id()).await.unwrap(),
        TrustLevel::Verified
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_device_approves_a_new_one_when_both_screens_show_the_same_code() {
    let server = TestServer::start().await;
    let (alice, _bob, direct) = server.alice_and_bob().await;
    alice.send_text(direct, "before the phone").await.unwrap();
    alice.sync().await.unwrap();
    let phone = server.unapproved_device("alice", "phone").await;
    // An unapproved device cannot approve anyone.
    assert!(matches!(
        phone.approve_device(alice.device_id()).await,
        Err(ClientError::NotApproved)
    ));

    let (mut laptop_events, stop_laptop, laptop_task) = live(&alice);
    let (mut phone_events, stop_phone, phone_task) = live(&phone);
    for events in [&mut laptop_events, &mut phone_events] {
        next_event(events, |e| (e == Event::Synced).then_some(())).await;
    }
    let flow = alice.approve_device(phone.device_id()).await.unwrap();
    let requested = next_event(&mut phone_events, |e| match e {
        Event::Approval(ApprovalEvent::Requested { flow_id, device_id }) => {
            Some((flow_id, device_id))
        }
        _ => None,
    })
    .await;
    assert_eq!(requested, (flow.clone(), alice.device_id()));
    let code = |events| async move {
        next_event(events, |e| match e {
            Event::Approval(ApprovalEvent::Code { code, .. }) => Some(code),
            _ => None,
        })
        .await
    };
    let on_laptop = code(&mut laptop_events).await;
    let on_phone = code(&mut phone_events).await;
    assert_eq!(on_laptop, on_phone);
    assert!(
        !phone.is_approved().await,
        "nothing is approved before both confirm"
    );

    alice.confirm_approval(&flow).await.unwrap();
    phone.confirm_approval(&flow).await.unwrap();
    for events in [&mut laptop_events, &mut phone_events] {
        next_event(events, |e| {
            matches!(e, Event::Approval(ApprovalEvent::Done { .. })).then_some(())
        })
        .await;
    }
    assert!(phone.is_approved().await);
    assert!(
        alice
            .device_list(alice.user_id())
            .await
            .unwrap()
            .iter()
            .all(|d| d.signed)
    );
    assert_eq!(
        readable(&phone, direct).await,
        [Ok("before the phone".to_owned())]
    );
    for (stop, task) in [(stop_laptop, laptop_task), (stop_phone, phone_task)] {
        stop.send(()).unwrap();
        task.await.unwrap();
    }
}
