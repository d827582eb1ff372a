//! Device keys: upload, listing, one-time key claims (atomic under concurrency), fallback
//! keys, rotation and validation.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use natter_client::Session;
use natter_proto::UserId;
use natter_proto::keys::{IdentityKeys, OneTimeKey, UploadKeysRequest};
use natter_proto::ws::ServerFrame;

use crate::helpers::{Backend, assert_problem, backend_tests, server};

backend_tests!(
    identity_keys_are_published_to_connections,
    reuploading_identity_keys_rotates_them,
    each_one_time_key_is_claimed_once_under_concurrency,
    fallback_key_is_handed_out_when_one_time_keys_run_out,
    malformed_keys_are_refused,
    one_time_key_ids_cannot_be_reused_for_other_keys,
    claims_need_a_connection,
    many_device_lists_in_one_query_only_of_users_one_may_see,
    device_list_changes_are_pushed_to_whoever_may_see_them,
);

fn key(seed: u8) -> String {
    STANDARD_NO_PAD.encode([seed; 32])
}

fn identity(seed: u8) -> IdentityKeys {
    IdentityKeys {
        curve25519: key(seed),
        ed25519: key(seed.wrapping_add(1)),
        signature: STANDARD_NO_PAD.encode([seed; 64]),
    }
}

fn one_time_keys(range: std::ops::Range<u8>) -> Vec<OneTimeKey> {
    range
        .map(|i| OneTimeKey {
            key_id: format!("otk{i}"),
            key: key(i),
        })
        .collect()
}

async fn identity_keys_are_published_to_connections(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let upload = UploadKeysRequest {
        identity_keys: Some(identity(1)),
        ..Default::default()
    };
    alice.upload_keys(&upload).await.unwrap();
    let devices = bob.devices(alice.user_id()).await.unwrap();
    assert_eq!(devices.len(), 1);
    let published = devices[0].identity_keys.as_ref().expect("keys are listed");
    assert_eq!(published.keys, identity(1));
    assert!(published.created_at > 0);
    // The connection list carries the same devices and keys.
    let list = bob.connections().await.unwrap();
    assert_eq!(list.connections[0].devices, devices);
}

async fn reuploading_identity_keys_rotates_them(backend: Backend) {
    let server = server!(backend);
    let alice = server.user("alice").await;
    alice
        .upload_keys(&UploadKeysRequest {
            identity_keys: Some(identity(1)),
            ..Default::default()
        })
        .await
        .unwrap();
    let before = alice.devices(alice.user_id()).await.unwrap()[0]
        .identity_keys
        .clone()
        .unwrap();
    alice
        .upload_keys(&UploadKeysRequest {
            identity_keys: Some(identity(9)),
            ..Default::default()
        })
        .await
        .unwrap();
    let after = alice.devices(alice.user_id()).await.unwrap()[0]
        .identity_keys
        .clone()
        .unwrap();
    assert_eq!(after.keys, identity(9));
    assert!(after.created_at >= before.created_at);
}

async fn each_one_time_key_is_claimed_once_under_concurrency(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let counts = alice
        .upload_keys(&UploadKeysRequest {
            one_time_keys: one_time_keys(0..20),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (counts.one_time_key_count, counts.has_fallback_key),
        (20, false)
    );
    let bob_phone = server.login("bob", "phone").await;
    let claims = (0..40).map(|i| {
        let claimer = if i % 2 == 0 {
            bob.clone()
        } else {
            bob_phone.clone()
        };
        let (user, device) = (alice.user_id(), alice.device_id());
        tokio::spawn(async move { claimer.claim_key(user, device).await })
    });
    let mut claimed = HashSet::new();
    let mut exhausted = 0;
    for claim in futures_util::future::join_all(claims).await {
        match claim.unwrap() {
            Ok(key) => {
                assert!(!key.fallback);
                assert!(
                    claimed.insert(key.key_id.clone()),
                    "{} was handed out twice",
                    key.key_id
                );
            }
            Err(error) => {
                assert_eq!(error.code(), Some("not_found"), "{error}");
                exhausted += 1;
            }
        }
    }
    assert_eq!((claimed.len(), exhausted), (20, 20));
    assert_eq!(alice.key_counts().await.unwrap().one_time_key_count, 0);
}

async fn fallback_key_is_handed_out_when_one_time_keys_run_out(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let fallback = OneTimeKey {
        key_id: "fb1".into(),
        key: key(200),
    };
    let upload = UploadKeysRequest {
        one_time_keys: one_time_keys(0..1),
        fallback_key: Some(fallback.clone()),
        ..Default::default()
    };
    assert!(alice.upload_keys(&upload).await.unwrap().has_fallback_key);
    let first = bob
        .claim_key(alice.user_id(), alice.device_id())
        .await
        .unwrap();
    assert_eq!((first.key_id.as_str(), first.fallback), ("otk0", false));
    for _ in 0..2 {
        let next = bob
            .claim_key(alice.user_id(), alice.device_id())
            .await
            .unwrap();
        assert_eq!(
            (next.key_id.as_str(), next.key.as_str(), next.fallback),
            ("fb1", fallback.key.as_str(), true)
        );
    }
    // A new fallback key replaces the old one.
    let replacement = OneTimeKey {
        key_id: "fb2".into(),
        key: key(201),
    };
    alice
        .upload_keys(&UploadKeysRequest {
            fallback_key: Some(replacement),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        bob.claim_key(alice.user_id(), alice.device_id())
            .await
            .unwrap()
            .key_id,
        "fb2"
    );
}

async fn malformed_keys_are_refused(backend: Backend) {
    let server = server!(backend);
    let alice = server.user("alice").await;
    let padded = IdentityKeys {
        curve25519: format!("{}=", key(1)),
        ..identity(1)
    };
    let short = IdentityKeys {
        ed25519: STANDARD_NO_PAD.encode([1u8; 31]),
        ..identity(1)
    };
    let bad_signature = IdentityKeys {
        signature: key(1),
        ..identity(1)
    };
    let not_base64 = IdentityKeys {
        curve25519: "*".repeat(43),
        ..identity(1)
    };
    for keys in [padded, short, bad_signature, not_base64] {
        let upload = UploadKeysRequest {
            identity_keys: Some(keys),
            ..Default::default()
        };
        assert_problem(alice.upload_keys(&upload).await, 400, "invalid_request");
    }
    let bad_otks = [
        OneTimeKey {
            key_id: String::new(),
            key: key(1),
        },
        OneTimeKey {
            key_id: "x".repeat(65),
            key: key(1),
        },
        OneTimeKey {
            key_id: "with space".into(),
            key: key(1),
        },
        OneTimeKey {
            key_id: "ok".into(),
            key: "AAAA".into(),
        },
    ];
    for otk in bad_otks {
        let upload = UploadKeysRequest {
            one_time_keys: vec![otk],
            ..Default::default()
        };
        assert_problem(alice.upload_keys(&upload).await, 400, "invalid_request");
    }
    let too_many: Vec<_> = (0..101)
        .map(|i| OneTimeKey {
            key_id: format!("k{i}"),
            key: key(1),
        })
        .collect();
    let upload = UploadKeysRequest {
        one_time_keys: too_many,
        ..Default::default()
    };
    assert_problem(alice.upload_keys(&upload).await, 400, "invalid_request");
    // Nothing above was stored, even partly.
    let counts = alice.key_counts().await.unwrap();
    assert_eq!(
        (counts.one_time_key_count, counts.has_fallback_key),
        (0, false)
    );
    assert!(
        alice.devices(alice.user_id()).await.unwrap()[0]
            .identity_keys
            .is_none()
    );
}

async fn one_time_key_ids_cannot_be_reused_for_other_keys(backend: Backend) {
    let server = server!(backend);
    let alice = server.user("alice").await;
    let upload = UploadKeysRequest {
        one_time_keys: one_time_keys(0..5),
        ..Default::default()
    };
    alice.upload_keys(&upload).await.unwrap();
    // The same batch again (a retried upload) changes nothing.
    assert_eq!(
        alice.upload_keys(&upload).await.unwrap().one_time_key_count,
        5
    );
    let clash = UploadKeysRequest {
        one_time_keys: vec![
            OneTimeKey {
                key_id: "new".into(),
                key: key(50),
            },
            OneTimeKey {
                key_id: "otk1".into(),
                key: key(99),
            },
        ],
        ..Default::default()
    };
    assert_problem(alice.upload_keys(&clash).await, 409, "conflict");
    assert_eq!(
        alice.key_counts().await.unwrap().one_time_key_count,
        5,
        "the refused batch stored nothing"
    );
    // At most 200 unclaimed keys per device.
    for batch in 0..2u8 {
        let keys = (0..100)
            .map(|i| OneTimeKey {
                key_id: format!("b{batch}-{i}"),
                key: key(i),
            })
            .collect();
        let result = alice
            .upload_keys(&UploadKeysRequest {
                one_time_keys: keys,
                ..Default::default()
            })
            .await;
        if batch == 0 {
            assert_eq!(result.unwrap().one_time_key_count, 105);
        } else {
            assert_problem(result, 409, "conflict");
        }
    }
}

async fn claims_need_a_connection(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let stranger = server.user("mallory").await;
    alice
        .upload_keys(&UploadKeysRequest {
            one_time_keys: one_time_keys(0..3),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_problem(
        stranger.claim_key(alice.user_id(), alice.device_id()).await,
        404,
        "not_found",
    );
    // A device id that is not the named user's is not found either.
    assert_problem(
        bob.claim_key(alice.user_id(), stranger.device_id()).await,
        404,
        "not_found",
    );
    assert_eq!(
        alice.key_counts().await.unwrap().one_time_key_count,
        3,
        "refused claims took nothing"
    );
    // A user's own other devices may claim (to share keys between them).
    let phone = server.login("alice", "phone").await;
    assert!(
        !phone
            .claim_key(alice.user_id(), alice.device_id())
            .await
            .unwrap()
            .fallback
    );
    // After a block the blocked user can no longer claim.
    alice.block(bob.user_id(), true, None).await.unwrap();
    assert_problem(
        bob.claim_key(alice.user_id(), alice.device_id()).await,
        404,
        "not_found",
    );
}

/// The users a query by `viewer` for `users` answers, sorted.
async fn queried(viewer: &Session, users: &[UserId]) -> Vec<UserId> {
    let mut seen: Vec<UserId> = viewer
        .query_devices(users)
        .await
        .unwrap()
        .into_iter()
        .map(|entry| entry.user_id)
        .collect();
    seen.sort();
    seen
}

fn sorted(mut users: Vec<UserId>) -> Vec<UserId> {
    users.sort();
    users
}

async fn many_device_lists_in_one_query_only_of_users_one_may_see(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let carol = server.user("carol").await;
    let dave = server.user("dave").await;
    crate::helpers::connect_users(&bob, &carol).await;
    // Carol is a fellow member of a room bob made with both, not a connection of alice's.
    bob.create_room("trio", &[alice.user_id(), carol.user_id()])
        .await
        .unwrap();
    let all = [
        alice.user_id(),
        bob.user_id(),
        carol.user_id(),
        dave.user_id(),
    ];
    assert_eq!(
        queried(&alice, &all).await,
        sorted(vec![alice.user_id(), bob.user_id(), carol.user_id()]),
        "herself, a connection and a fellow member; not a stranger"
    );
    let answer = alice.query_devices(&[bob.user_id()]).await.unwrap();
    assert_eq!(
        answer[0].list.devices,
        alice.devices(bob.user_id()).await.unwrap(),
        "the same list as one user's request"
    );
    // A fellow member who blocked alice is left out, as for one user's request.
    carol.block(alice.user_id(), true, None).await.unwrap();
    assert_eq!(
        queried(&alice, &all).await,
        sorted(vec![alice.user_id(), bob.user_id()])
    );
    // 1 to 1,000 users.
    for count in [0, 1001] {
        let users = vec![bob.user_id(); count];
        let refused = alice.query_devices(&users).await.unwrap_err();
        assert_eq!(refused.status(), Some(400), "{count} users: {refused}");
    }
}

/// The next `device_list_changed` on `connection`: whose.
async fn next_change(connection: &mut natter_client::Connection) -> UserId {
    loop {
        if let ServerFrame::DeviceListChanged { user_id } = connection.next().await.unwrap() {
            return user_id;
        }
    }
}

async fn device_list_changes_are_pushed_to_whoever_may_see_them(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let dave = server.user("dave").await;
    let mut alices = alice.connect().await.unwrap();
    let mut bobs = bob.connect().await.unwrap();
    let mut daves = dave.connect().await.unwrap();
    for connection in [&mut alices, &mut bobs, &mut daves] {
        while !matches!(connection.next().await.unwrap(), ServerFrame::Synced { .. }) {}
    }

    // Bob logs in another device: his connection and alice's are told; dave, a stranger, is
    // not (his first change is about his own new device, made after bob's).
    let phone = server.login("bob", "phone").await;
    assert_eq!(next_change(&mut alices).await, bob.user_id());
    assert_eq!(next_change(&mut bobs).await, bob.user_id());
    server.login("dave", "tablet").await;
    assert_eq!(next_change(&mut daves).await, dave.user_id());

    // New identity keys and a removed device are told too.
    phone
        .upload_keys(&UploadKeysRequest {
            identity_keys: Some(identity(7)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(next_change(&mut alices).await, bob.user_id());
    phone.logout().await.unwrap();
    assert_eq!(next_change(&mut alices).await, bob.user_id());
}
