//! Cross-signing identities, device signatures and the key backup: publishing, rotating and
//! resetting an identity, who may read it, the signatures the server checks, signing only one's
//! own devices, signatures lost with new device keys, which devices change the backup, and the
//! backup's names, sizes, order, paging, privacy, removal and bound.
//!
//! Identities and device signatures are made with natter-crypto's real keys: the server checks
//! them.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use natter_client::Session;
use natter_crypto::{DeviceAccount, IdentitySecrets, MasterKey};
use natter_proto::UserId;
use natter_proto::keys::{
    BackupItem, CrossSigningKeys, DeviceInfo, IdentityKeys, OneTimeKey, UploadKeysRequest,
};
use natter_proto::limits::{BACKUP_ITEM_MAX, BACKUP_ITEMS_MAX, BACKUP_NAME_MAX, PAGE_MAX};
use natter_proto::problem::{CONTENT_TYPE, Problem};
use natter_server::config::DatabaseUrl;
use natter_server::ratelimit::{Kind, Rate};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{Backend, TestServer, assert_problem, backend_tests, server};

backend_tests!(
    identity_is_published_to_its_user_and_connections,
    a_new_identity_replaces_the_old,
    another_master_key_is_refused,
    a_rotation_keeps_only_the_new_self_signing_keys_signatures,
    forged_identities_are_refused,
    malformed_identities_are_refused,
    only_its_user_signs_a_device,
    device_signatures_are_checked,
    new_identity_keys_clear_the_cross_signature,
    only_approved_devices_change_the_backup,
    a_reset_needs_the_password,
    resets_spend_the_login_allowance,
    a_reset_replaces_the_identity_and_clears_signatures_and_backup,
    backup_items_are_stored_replaced_and_listed_in_name_order,
    backup_is_paged_with_after_and_limit,
    bad_backup_names_and_oversized_data_are_refused,
    encoded_backup_names_round_trip,
    each_user_sees_only_their_own_backup,
    deleting_the_backup_removes_every_item,
    backup_holds_at_most_the_bound,
    openapi_lists_identity_and_backup_paths,
    concurrent_items_do_not_pass_the_bound,
    text_postgresql_cannot_store_is_refused,
);

/// The password [`TestServer::user`] registers every user with.
const PASSWORD: &str = "password123";

/// The identity `viewer` is shown for `owner`.
async fn identity_seen(viewer: &Session, owner: UserId) -> Option<CrossSigningKeys> {
    viewer
        .devices_and_identity(owner)
        .await
        .expect("the device list")
        .identity
}

/// Well-formed bytes that are no key (for one-time keys and malformed input).
fn key(seed: u8) -> String {
    STANDARD_NO_PAD.encode([seed; 32])
}

/// Well-formed bytes that are nobody's signature.
fn signature(seed: u8) -> String {
    STANDARD_NO_PAD.encode([seed; 64])
}

/// A new master key, and a self-signing key it certified for `who`'s user.
fn new_identity(who: &Session) -> (MasterKey, IdentitySecrets) {
    let master = MasterKey::generate();
    let secrets = master.new_self_signing(who.user_id());
    (master, secrets)
}

/// The public identity of `secrets`, as published and served.
fn public(secrets: &IdentitySecrets) -> CrossSigningKeys {
    secrets.public().clone()
}

fn body(keys: CrossSigningKeys) -> Value {
    serde_json::to_value(keys).unwrap()
}

/// The identity keys of a new Olm account, self-signed for `device`.
fn device_keys(device: &Session) -> IdentityKeys {
    DeviceAccount::new().identity_keys(device.user_id(), device.device_id())
}

async fn upload_identity_keys(device: &Session, keys: IdentityKeys) {
    device
        .upload_keys(&UploadKeysRequest {
            identity_keys: Some(keys),
            ..Default::default()
        })
        .await
        .expect("uploading identity keys");
}

/// Uploads new identity keys for `device`; returns them.
async fn new_device_keys(device: &Session) -> IdentityKeys {
    let keys = device_keys(device);
    upload_identity_keys(device, keys.clone()).await;
    keys
}

/// The signature of `secrets`' self-signing key over `device`'s identity `keys`.
fn vouch(secrets: &IdentitySecrets, device: &Session, keys: &IdentityKeys) -> String {
    secrets.sign_device(device.user_id(), device.device_id(), keys)
}

/// `signer` stores the signature of `secrets` over `device`'s `keys`; returns it.
async fn approve(
    signer: &Session,
    secrets: &IdentitySecrets,
    device: &Session,
    keys: &IdentityKeys,
) -> String {
    let signature = vouch(secrets, device, keys);
    signer
        .sign_device(device.device_id(), &signature)
        .await
        .expect("signing the device");
    signature
}

/// What a user's first device does: uploads its identity keys, publishes a new identity and
/// signs itself with it. Returns the identity and the device's keys.
async fn approve_first(who: &Session) -> (MasterKey, IdentitySecrets, IdentityKeys) {
    let keys = new_device_keys(who).await;
    let (master, secrets) = new_identity(who);
    who.publish_identity(secrets.public())
        .await
        .expect("publishing the identity");
    approve(who, &secrets, who, &keys).await;
    (master, secrets, keys)
}

/// Alice, connected to bob, with three devices (the laptop, the phone and the tablet), all
/// signed by her identity.
struct ThreeDevices {
    alice: Session,
    bob: Session,
    phone: Session,
    tablet: Session,
    master: MasterKey,
    identity: IdentitySecrets,
    laptop_keys: IdentityKeys,
    phone_keys: IdentityKeys,
    tablet_keys: IdentityKeys,
}

async fn three_approved_devices(server: &TestServer) -> ThreeDevices {
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let (phone, tablet) = (
        server.login("alice", "phone").await,
        server.login("alice", "tablet").await,
    );
    let (master, identity, laptop_keys) = approve_first(&alice).await;
    let phone_keys = new_device_keys(&phone).await;
    let tablet_keys = new_device_keys(&tablet).await;
    approve(&alice, &identity, &phone, &phone_keys).await;
    approve(&alice, &identity, &tablet, &tablet_keys).await;
    ThreeDevices {
        alice,
        bob,
        phone,
        tablet,
        master,
        identity,
        laptop_keys,
        phone_keys,
        tablet_keys,
    }
}

/// A new user whose one device is approved, so it may change the backup.
async fn approved_user(server: &TestServer, username: &str) -> Session {
    let who = server.user(username).await;
    approve_first(&who).await;
    who
}

/// A request from `who` (with its token) to `path` on `server`.
fn request(
    server: &TestServer,
    who: &Session,
    method: Method,
    path: &str,
) -> reqwest::RequestBuilder {
    server.raw(method, path).bearer_auth(who.token())
}

/// `PUT /v1/me/identity` with `keys`.
async fn put_identity(server: &TestServer, who: &Session, keys: &CrossSigningKeys) -> Response {
    request(server, who, Method::PUT, "/v1/me/identity")
        .json(keys)
        .send()
        .await
        .unwrap()
}

/// `POST /v1/me/identity/reset` with `identity` and `password`.
async fn reset(
    server: &TestServer,
    who: &Session,
    identity: &CrossSigningKeys,
    password: &str,
) -> Response {
    request(server, who, Method::POST, "/v1/me/identity/reset")
        .json(&json!({ "identity": identity, "password": password }))
        .send()
        .await
        .unwrap()
}

/// Asserts `response` is a problem+json with `status` and a non-empty detail; returns it.
async fn problem(response: Response, status: u16) -> Problem {
    let url = response.url().to_string();
    assert_eq!(response.status(), status, "{url}");
    let content_type = response
        .headers()
        .get("content-type")
        .map(|value| value.to_str().unwrap().to_owned());
    assert_eq!(content_type.as_deref(), Some(CONTENT_TYPE), "{url}");
    let problem: Problem = response.json().await.expect("a problem document");
    assert_eq!(problem.status, status, "{url}");
    assert!(
        problem.detail.as_deref().is_some_and(|d| !d.is_empty()),
        "{url}: a detail a person can act on"
    );
    problem
}

/// Asserts a 400 `invalid_request` whose detail mentions each of `words`.
async fn invalid(response: Response, words: &[&str]) {
    let problem = problem(response, 400).await;
    assert_eq!(problem.code, "invalid_request");
    let detail = problem.detail.unwrap();
    for word in words {
        assert!(detail.contains(word), "{detail:?} mentions {word:?}");
    }
}

/// Asserts a 422 `bad_signature` (well formed, made by the wrong key or over other keys) whose
/// detail mentions each of `words`.
async fn unverified(response: Response, words: &[&str]) {
    let problem = problem(response, 422).await;
    assert_eq!(problem.code, "bad_signature");
    let detail = problem.detail.unwrap();
    for word in words {
        assert!(detail.contains(word), "{detail:?} mentions {word:?}");
    }
}

/// Asserts a problem with `status` and `code` (`what` names the case).
async fn refused_with(response: Response, status: u16, code: &str, what: &str) {
    let problem = problem(response, status).await;
    assert_eq!(problem.code, code, "{what}: {problem:?}");
}

/// `GET /v1/users/{user}/devices` as raw JSON (to see fields that are null).
async fn devices_json(server: &TestServer, viewer: &Session, user: &Session) -> Value {
    let path = format!("/v1/users/{}/devices", user.user_id());
    let response = request(server, viewer, Method::GET, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// The cross-signature of `device` in the device list `viewer` gets of `owner`.
async fn cross_signature_of(viewer: &Session, owner: &Session, device: &Session) -> Option<String> {
    let devices: Vec<DeviceInfo> = viewer.devices(owner.user_id()).await.unwrap();
    devices
        .into_iter()
        .find(|d| d.device_id == device.device_id())
        .expect("the device is listed")
        .cross_signature
}

/// `PUT /v1/devices/{device}/signature` with a raw body.
async fn sign(server: &TestServer, who: &Session, device: &str, body: Value) -> Response {
    request(
        server,
        who,
        Method::PUT,
        &format!("/v1/devices/{device}/signature"),
    )
    .json(&body)
    .send()
    .await
    .unwrap()
}

/// `who` stores `signature` for `device` over HTTP: the raw answer.
async fn sign_with(
    server: &TestServer,
    who: &Session,
    device: &Session,
    signature: &str,
) -> Response {
    let id = device.device_id().to_string();
    sign(server, who, &id, json!({ "signature": signature })).await
}

/// `PUT /v1/me/backup/{encoded}` (the name exactly as it goes in the path).
async fn put_item(server: &TestServer, who: &Session, encoded: &str, data: &str) -> Response {
    request(
        server,
        who,
        Method::PUT,
        &format!("/v1/me/backup/{encoded}"),
    )
    .json(&json!({ "data": data }))
    .send()
    .await
    .unwrap()
}

/// Stores an item whose name needs no encoding, asserting 204.
async fn store_item(server: &TestServer, who: &Session, name: &str, data: &str) {
    let response = put_item(server, who, name, data).await;
    assert_eq!(response.status(), 204, "storing {name}");
}

/// One page of `who`'s backup: `GET /v1/me/backup?{query}`, asserting 200.
async fn page(server: &TestServer, who: &Session, query: &[(&str, &str)]) -> Vec<BackupItem> {
    let response = request(server, who, Method::GET, "/v1/me/backup")
        .query(query)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{query:?}");
    let body: Value = response.json().await.unwrap();
    serde_json::from_value(body["items"].clone()).expect("a list of items")
}

/// Every item of `who`'s backup, one default page (asserting there is only one).
async fn all_items(server: &TestServer, who: &Session) -> Vec<BackupItem> {
    let items = page(server, who, &[]).await;
    assert!(items.len() < PAGE_MAX, "the backup fits one page");
    items
}

fn names(items: &[BackupItem]) -> Vec<&str> {
    items.iter().map(|item| item.name.as_str()).collect()
}

fn item(name: &str, data: &str) -> BackupItem {
    BackupItem {
        name: name.to_owned(),
        data: data.to_owned(),
    }
}

async fn identity_is_published_to_its_user_and_connections(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let mallory = server.user("mallory").await;
    // Before: the list says so with an explicit null, and no device is signed.
    let before = devices_json(&server, &bob, &alice).await;
    assert_eq!(before["identity"], Value::Null, "{before}");
    assert!(
        before.as_object().unwrap().contains_key("identity"),
        "{before}"
    );
    let device = &before["devices"][0];
    assert!(
        device.as_object().unwrap().contains_key("cross_signature"),
        "{before}"
    );
    assert_eq!(device["cross_signature"], Value::Null, "{before}");

    let (_, identity) = new_identity(&alice);
    let published = put_identity(&server, &alice, identity.public()).await;
    assert_eq!(published.status(), 204);
    // Its user's own devices see it, including one logged in later.
    let own = alice.devices_and_identity(alice.user_id()).await.unwrap();
    assert_eq!(own.identity, Some(public(&identity)));
    assert_eq!(own.devices.len(), 1);
    let phone = server.login("alice", "phone").await;
    let from_phone = phone.devices_and_identity(alice.user_id()).await.unwrap();
    assert_eq!(from_phone.identity, Some(public(&identity)));
    assert_eq!(from_phone.devices.len(), 2);
    // A connection sees it.
    let seen = bob.devices_and_identity(alice.user_id()).await.unwrap();
    assert_eq!(seen.identity, Some(public(&identity)));
    assert_eq!(seen.devices, from_phone.devices);
    // Bob's own list has no identity: he published none.
    assert_eq!(identity_seen(&bob, bob.user_id()).await, None);
    // A stranger sees neither the devices nor the identity.
    let path = format!("/v1/users/{}/devices", alice.user_id());
    let refused = request(&server, &mallory, Method::GET, &path)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(refused, 404).await.code, "not_found");
    assert_problem(mallory.devices(alice.user_id()).await, 404, "not_found");
    // No token, no publishing.
    let (_, other) = new_identity(&alice);
    let anonymous = server
        .raw(Method::PUT, "/v1/me/identity")
        .json(other.public())
        .send()
        .await
        .unwrap();
    assert_eq!(problem(anonymous, 401).await.code, "unauthorized");
    assert_eq!(
        identity_seen(&bob, alice.user_id()).await,
        Some(public(&identity))
    );
}

async fn a_new_identity_replaces_the_old(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let (_, first) = new_identity(&alice);
    alice.publish_identity(first.public()).await.unwrap();
    assert_eq!(
        identity_seen(&bob, alice.user_id()).await,
        Some(public(&first))
    );
    // A reset with the password, from another of alice's devices.
    let phone = server.login("alice", "phone").await;
    let (_, second) = new_identity(&phone);
    phone
        .reset_identity(second.public(), PASSWORD)
        .await
        .expect("resetting through the client");
    for viewer in [&alice, &phone, &bob] {
        assert_eq!(
            identity_seen(viewer, alice.user_id()).await,
            Some(public(&second))
        );
    }
    // Publishing the same identity again changes nothing; the old one comes back only by
    // another reset, not by publishing it.
    alice.publish_identity(second.public()).await.unwrap();
    assert_problem(
        alice.publish_identity(first.public()).await,
        409,
        "conflict",
    );
    assert_eq!(
        identity_seen(&bob, alice.user_id()).await,
        Some(public(&second))
    );
    let restored = reset(&server, &alice, first.public(), PASSWORD).await;
    assert_eq!(restored.status(), 204);
    assert_eq!(
        identity_seen(&bob, alice.user_id()).await,
        Some(public(&first))
    );
    // Bob's identity is his own.
    assert_eq!(identity_seen(&bob, bob.user_id()).await, None);
}

async fn another_master_key_is_refused(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let (_, identity, _) = approve_first(&alice).await;
    let laptop_signature = cross_signature_of(&alice, &alice, &alice).await;
    assert!(laptop_signature.is_some());
    // A login with only the password (a new device nobody approved, or a thief) publishes an
    // identity of its own: refused, and so from any device.
    let phone = server.login("alice", "phone").await;
    let phone_keys = new_device_keys(&phone).await;
    let (_, takeover) = new_identity(&phone);
    for device in [&phone, &alice] {
        let answer = put_identity(&server, device, takeover.public()).await;
        let problem = problem(answer, 409).await;
        assert_eq!(problem.code, "conflict");
        assert!(problem.detail.unwrap().contains("reset"));
    }
    assert_problem(
        phone.publish_identity(takeover.public()).await,
        409,
        "conflict",
    );
    // The old identity is still served to her and her connections, the laptop keeps its
    // signature, and the other key signs nothing.
    for viewer in [&alice, &phone, &bob] {
        assert_eq!(
            identity_seen(viewer, alice.user_id()).await,
            Some(public(&identity))
        );
        assert_eq!(
            cross_signature_of(viewer, &alice, &alice).await,
            laptop_signature
        );
    }
    let own = vouch(&takeover, &phone, &phone_keys);
    unverified(
        sign_with(&server, &phone, &phone, &own).await,
        &["signature"],
    )
    .await;
    assert_eq!(cross_signature_of(&bob, &alice, &phone).await, None);
}

async fn a_rotation_keeps_only_the_new_self_signing_keys_signatures(backend: Backend) {
    let server = server!(backend);
    let ThreeDevices {
        alice,
        bob,
        phone,
        tablet,
        master,
        identity: first,
        laptop_keys,
        phone_keys,
        tablet_keys,
    } = three_approved_devices(&server).await;
    // A new self-signing key under the same master key (after a device was lost, say).
    let second = master.new_self_signing(alice.user_id());
    assert_ne!(
        second.public().self_signing_key,
        first.public().self_signing_key
    );
    let rotated = put_identity(&server, &alice, second.public()).await;
    assert_eq!(rotated.status(), 204);
    // The old key's signatures went with it.
    let devices = [&alice, &phone, &tablet];
    assert_unsigned_under(&[&alice, &phone, &bob], &devices, &second).await;
    // The old key signs nothing any more; the new one re-signs the laptop and the phone.
    let stale = vouch(&first, &tablet, &tablet_keys);
    unverified(
        sign_with(&server, &alice, &tablet, &stale).await,
        &["signature"],
    )
    .await;
    let laptop = approve(&alice, &second, &alice, &laptop_keys).await;
    let phone_signature = approve(&alice, &second, &phone, &phone_keys).await;
    // Publishing the same identity again (a retry) keeps what its key signed.
    alice.publish_identity(second.public()).await.unwrap();
    let signed = [
        (&alice, Some(laptop.as_str())),
        (&phone, Some(phone_signature.as_str())),
        (&tablet, None),
    ];
    assert_signatures(&[&alice, &bob], &alice, &signed).await;
    // Rotating back to the first key drops the second's signatures in turn.
    alice.publish_identity(first.public()).await.unwrap();
    for device in [&alice, &phone, &tablet] {
        assert_eq!(cross_signature_of(&bob, &alice, device).await, None);
    }
}

/// Asserts every one of `viewers` is shown `identity` for the owner of `devices`, and none of
/// them signed.
async fn assert_unsigned_under(
    viewers: &[&Session],
    devices: &[&Session],
    identity: &IdentitySecrets,
) {
    let owner = devices[0];
    for viewer in viewers {
        assert_eq!(
            identity_seen(viewer, owner.user_id()).await,
            Some(public(identity))
        );
    }
    let unsigned: Vec<_> = devices.iter().map(|device| (*device, None)).collect();
    assert_signatures(viewers, owner, &unsigned).await;
}

/// Asserts every one of `viewers` sees each listed device of `owner` with that signature.
async fn assert_signatures(
    viewers: &[&Session],
    owner: &Session,
    expected: &[(&Session, Option<&str>)],
) {
    for viewer in viewers {
        for (device, signature) in expected {
            let shown = cross_signature_of(viewer, owner, device).await;
            assert_eq!(shown.as_deref(), *signature, "{}", device.device_id());
        }
    }
}

/// A signature of a key that is not the master key, over the right message.
fn signed_by_another_key(user: UserId, keys: &CrossSigningKeys) -> String {
    let message =
        CrossSigningKeys::self_signing_message(user, &keys.master_key, &keys.self_signing_key);
    let impostor = SigningKey::from_bytes(&[7; 32]);
    STANDARD_NO_PAD.encode(impostor.sign(message.as_bytes()).to_bytes())
}

async fn forged_identities_are_refused(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let (master, genuine) = new_identity(&alice);
    let (_, other) = new_identity(&alice);
    let forgeries = [
        (
            "another key's signature",
            CrossSigningKeys {
                signature: signed_by_another_key(alice.user_id(), genuine.public()),
                ..public(&genuine)
            },
        ),
        (
            "another self-signing key than the master key signed",
            CrossSigningKeys {
                self_signing_key: other.public().self_signing_key.clone(),
                ..public(&genuine)
            },
        ),
        (
            "another master key's identity claiming hers",
            CrossSigningKeys {
                master_key: genuine.public().master_key.clone(),
                ..public(&other)
            },
        ),
        (
            "her master key's identity for another user",
            public(&master.new_self_signing(bob.user_id())),
        ),
    ];
    // Neither as a first identity...
    for (what, forged) in &forgeries {
        let answer = put_identity(&server, &alice, forged).await;
        refused_with(answer, 422, "bad_signature", what).await;
    }
    assert_eq!(identity_seen(&bob, alice.user_id()).await, None);
    // ...nor as a rotation of her real one (each uses her master key).
    alice.publish_identity(genuine.public()).await.unwrap();
    for (what, forged) in &forgeries {
        let answer = put_identity(&server, &alice, forged).await;
        let problem = problem(answer, 422).await;
        assert_eq!(problem.code, "bad_signature", "{what}");
        let detail = problem.detail.unwrap();
        assert!(detail.contains("signature"), "{what}: {detail}");
    }
    // Nor by a reset, though the password is right.
    for (what, forged) in &forgeries {
        let answer = reset(&server, &alice, forged, PASSWORD).await;
        refused_with(answer, 422, "bad_signature", what).await;
    }
    assert_eq!(
        identity_seen(&bob, alice.user_id()).await,
        Some(public(&genuine))
    );
    // Bob cannot take alice's identity as his: it was certified for her.
    let copied = put_identity(&server, &bob, genuine.public()).await;
    refused_with(copied, 422, "bad_signature", "alice's identity as bob's").await;
    assert_eq!(identity_seen(&alice, bob.user_id()).await, None);
}

async fn malformed_identities_are_refused(backend: Backend) {
    let server = server!(backend);
    let alice = server.user("alice").await;
    let (_, identity) = new_identity(&alice);
    alice.publish_identity(identity.public()).await.unwrap();
    // Each case is another identity spoiled in one field.
    let (_, other) = new_identity(&alice);
    let base = || public(&other);
    let not_a_point = (0..=u8::MAX)
        .map(|seed| [seed; 32])
        .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
        .expect("some 32 bytes are no curve point");
    let cases: Vec<(Value, &[&str])> = vec![
        (
            body(CrossSigningKeys {
                master_key: format!("{}=", base().master_key),
                ..base()
            }),
            &["master_key", "unpadded"],
        ),
        (
            body(CrossSigningKeys {
                master_key: STANDARD_NO_PAD.encode([2u8; 31]),
                ..base()
            }),
            &["master_key", "Ed25519 public key"],
        ),
        (
            body(CrossSigningKeys {
                self_signing_key: STANDARD_NO_PAD.encode([2u8; 33]),
                ..base()
            }),
            &["self_signing_key", "Ed25519 public key"],
        ),
        (
            body(CrossSigningKeys {
                self_signing_key: "*".repeat(43),
                ..base()
            }),
            &["self_signing_key", "base64"],
        ),
        (
            // URL-safe base64 is not standard base64.
            body(CrossSigningKeys {
                self_signing_key: STANDARD_NO_PAD
                    .encode([0xfb; 32])
                    .replace('+', "-")
                    .replace('/', "_"),
                ..base()
            }),
            &["self_signing_key", "standard base64"],
        ),
        (
            // A key where the signature goes.
            body(CrossSigningKeys {
                signature: key(2),
                ..base()
            }),
            &["signature", "master key"],
        ),
        (
            body(CrossSigningKeys {
                signature: String::new(),
                ..base()
            }),
            &["signature", "master key"],
        ),
        (
            json!({"master_key": base().master_key, "self_signing_key": base().self_signing_key}),
            &["signature"],
        ),
        (
            json!({"master_key": 5, "self_signing_key": key(3), "signature": signature(2)}),
            &["master_key"],
        ),
    ];
    for (body, words) in cases {
        let response = request(&server, &alice, Method::PUT, "/v1/me/identity")
            .json(&body)
            .send()
            .await
            .unwrap();
        invalid(response, words).await;
    }
    // 32 bytes that are no curve point are well formed, but no key: 422.
    let no_key = request(&server, &alice, Method::PUT, "/v1/me/identity")
        .json(&body(CrossSigningKeys {
            master_key: STANDARD_NO_PAD.encode(not_a_point),
            ..base()
        }))
        .send()
        .await
        .unwrap();
    unverified(no_key, &["master_key", "Ed25519 public key"]).await;
    // Not JSON at all.
    let garbage = request(&server, &alice, Method::PUT, "/v1/me/identity")
        .header("content-type", "application/json")
        .body("{master_key")
        .send()
        .await
        .unwrap();
    invalid(garbage, &[]).await;
    // Through the client too: a padded signature, even of her own master key.
    let padded = CrossSigningKeys {
        signature: format!("{}==", identity.public().signature),
        ..public(&identity)
    };
    assert_problem(
        alice.publish_identity(&padded).await,
        400,
        "invalid_request",
    );
    // None of it replaced the identity.
    assert_eq!(
        identity_seen(&alice, alice.user_id()).await,
        Some(public(&identity))
    );
}

async fn only_its_user_signs_a_device(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let phone = server.login("alice", "phone").await;
    let laptop_keys = new_device_keys(&alice).await;
    let phone_keys = new_device_keys(&phone).await;
    let (_, identity) = new_identity(&alice);
    alice.publish_identity(identity.public()).await.unwrap();
    // The laptop signs the phone.
    let phone_signature = vouch(&identity, &phone, &phone_keys);
    let signed = sign_with(&server, &alice, &phone, &phone_signature).await;
    assert_eq!(signed.status(), 204);
    for viewer in [&alice, &phone, &bob] {
        assert_eq!(
            cross_signature_of(viewer, &alice, &phone).await,
            Some(phone_signature.clone())
        );
        assert_eq!(cross_signature_of(viewer, &alice, &alice).await, None);
    }
    // The connection list carries the same devices.
    let list = bob.connections().await.unwrap();
    assert_eq!(
        list.connections[0].devices,
        bob.devices(alice.user_id()).await.unwrap()
    );
    // A device may sign itself (the first device, right after creating the identity), and
    // signing again (a retry) keeps the signature.
    let laptop_signature = approve(&alice, &identity, &alice, &laptop_keys).await;
    approve(&phone, &identity, &phone, &phone_keys).await;
    assert_eq!(
        cross_signature_of(&bob, &alice, &alice).await,
        Some(laptop_signature.clone())
    );
    assert_eq!(
        cross_signature_of(&bob, &alice, &phone).await,
        Some(phone_signature.clone())
    );

    // Bob cannot sign alice's devices, though he is connected to her and has an identity of
    // his own: 404, as for no device. Not even with a signature of hers he copied.
    let (_, bobs) = new_identity(&bob);
    bob.publish_identity(bobs.public()).await.unwrap();
    let his = vouch(&bobs, &phone, &phone_keys);
    let answer = sign_with(&server, &bob, &phone, &his).await;
    assert_eq!(problem(answer, 404).await.code, "not_found");
    assert_problem(
        bob.sign_device(alice.device_id(), &laptop_signature).await,
        404,
        "not_found",
    );
    // A stranger's attempt is the same 404 (with an identity), or says it has none.
    let mallory = server.user("mallory").await;
    assert_problem(
        mallory
            .sign_device(phone.device_id(), &phone_signature)
            .await,
        403,
        "no_identity",
    );
    let (_, mallorys) = new_identity(&mallory);
    mallory.publish_identity(mallorys.public()).await.unwrap();
    assert_problem(
        mallory
            .sign_device(phone.device_id(), &phone_signature)
            .await,
        404,
        "not_found",
    );
    // A device that does not exist is not found either.
    let nobody = natter_proto::DeviceId::new().to_string();
    let missing = sign(
        &server,
        &alice,
        &nobody,
        json!({ "signature": signature(23) }),
    )
    .await;
    assert_eq!(problem(missing, 404).await.code, "not_found");
    // Nothing of that was stored.
    let signed = [
        (&alice, Some(laptop_signature.as_str())),
        (&phone, Some(phone_signature.as_str())),
    ];
    assert_signatures(&[&alice, &bob], &alice, &signed).await;
    assert_eq!(cross_signature_of(&bob, &bob, &bob).await, None);

    // Malformed requests are 400s and store nothing.
    let phone_id = phone.device_id().to_string();
    let malformed: [(&str, Value, &[&str]); 5] = [
        (&phone_id, json!({ "signature": key(1) }), &["signature"]),
        (
            &phone_id,
            json!({ "signature": format!("{phone_signature}==") }),
            &["signature"],
        ),
        (
            &phone_id,
            json!({ "signature": "!".repeat(86) }),
            &["signature"],
        ),
        (&phone_id, json!({}), &["signature"]),
        (
            "not-a-device-id",
            json!({ "signature": signature(1) }),
            &["path"],
        ),
    ];
    for (device, body, words) in malformed {
        invalid(sign(&server, &alice, device, body).await, words).await;
    }
    // Bob's malformed signature for alice's device gets the same answer as one for a device
    // that does not exist (it says nothing of which exist), and stores nothing.
    let bad = sign(&server, &bob, &phone_id, json!({ "signature": "x" })).await;
    let none = sign(&server, &bob, &nobody, json!({ "signature": "x" })).await;
    assert_eq!(bad.status(), none.status());
    assert_eq!(
        cross_signature_of(&bob, &alice, &phone).await,
        Some(phone_signature.clone())
    );
    // No token, no signing.
    let anonymous = server
        .raw(Method::PUT, &format!("/v1/devices/{phone_id}/signature"))
        .json(&json!({ "signature": phone_signature }))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(anonymous, 401).await.code, "unauthorized");
}

async fn device_signatures_are_checked(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let phone = server.login("alice", "phone").await;
    let laptop_keys = new_device_keys(&alice).await;
    let phone_keys = new_device_keys(&phone).await;
    let (master, identity) = new_identity(&alice);
    // Before any identity there is no key to check a signature with: refused, even one that
    // will check once the identity is published.
    let genuine = vouch(&identity, &phone, &phone_keys);
    let early = sign_with(&server, &alice, &phone, &genuine).await;
    let problem_early = problem(early, 403).await;
    assert_eq!(problem_early.code, "no_identity");
    assert_eq!(cross_signature_of(&bob, &alice, &phone).await, None);

    alice.publish_identity(identity.public()).await.unwrap();
    let (_, stranger) = new_identity(&alice);
    let unpublished = master.new_self_signing(alice.user_id());
    let forgeries = [
        (
            "another master's self-signing key",
            vouch(&stranger, &phone, &phone_keys),
        ),
        (
            "an unpublished self-signing key of her master key",
            vouch(&unpublished, &phone, &phone_keys),
        ),
        (
            "other keys than the phone uploaded",
            vouch(&identity, &phone, &device_keys(&phone)),
        ),
        (
            "the laptop's keys under the phone's id",
            vouch(&identity, &phone, &laptop_keys),
        ),
        (
            "the laptop's own signature",
            vouch(&identity, &alice, &laptop_keys),
        ),
        (
            "the phone's keys for another user",
            identity.sign_device(bob.user_id(), phone.device_id(), &phone_keys),
        ),
        ("no signature at all", signature(9)),
    ];
    for (what, forged) in &forgeries {
        let answer = sign_with(&server, &alice, &phone, forged).await;
        refused_with(answer, 422, "bad_signature", what).await;
    }
    assert_eq!(cross_signature_of(&bob, &alice, &phone).await, None);
    // A device with no identity keys yet has nothing to vouch for.
    let tablet = server.login("alice", "tablet").await;
    let tablet_signature = vouch(&identity, &tablet, &device_keys(&tablet));
    let answer = sign_with(&server, &alice, &tablet, &tablet_signature).await;
    refused_with(answer, 422, "bad_signature", "a device without keys").await;
    assert_eq!(cross_signature_of(&bob, &alice, &tablet).await, None);
    // The real signature is stored, and no forgery replaces it afterwards.
    let stored = sign_with(&server, &alice, &phone, &genuine).await;
    assert_eq!(stored.status(), 204);
    for (what, forged) in &forgeries {
        let answer = sign_with(&server, &alice, &phone, forged).await;
        refused_with(answer, 422, "bad_signature", what).await;
    }
    assert_eq!(
        cross_signature_of(&bob, &alice, &phone).await,
        Some(genuine)
    );
}

async fn new_identity_keys_clear_the_cross_signature(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let phone = server.login("alice", "phone").await;
    let phone_keys = new_device_keys(&phone).await;
    let (_, identity, _) = approve_first(&alice).await;
    let laptop = cross_signature_of(&alice, &alice, &alice).await;
    assert!(laptop.is_some());
    let first = approve(&alice, &identity, &phone, &phone_keys).await;

    // The same keys again (a retried upload) keep the signature; so do other uploads.
    upload_identity_keys(&phone, phone_keys.clone()).await;
    phone
        .upload_keys(&UploadKeysRequest {
            one_time_keys: vec![OneTimeKey {
                key_id: "otk1".into(),
                key: key(40),
            }],
            fallback_key: Some(OneTimeKey {
                key_id: "fb1".into(),
                key: key(41),
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        cross_signature_of(&bob, &alice, &phone).await,
        Some(first.clone())
    );

    // New identity keys: the signature vouched for the old ones, so it goes.
    let new_keys = new_device_keys(&phone).await;
    for viewer in [&alice, &phone, &bob] {
        assert_eq!(cross_signature_of(viewer, &alice, &phone).await, None);
        // The other device keeps its own.
        assert_eq!(cross_signature_of(viewer, &alice, &alice).await, laptop);
    }
    let raw = devices_json(&server, &bob, &alice).await;
    let listed = raw["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == phone.device_id().to_string())
        .unwrap()
        .clone();
    assert_eq!(listed["cross_signature"], Value::Null, "{raw}");
    // Nor can the old signature be put back: it is not over these keys.
    unverified(
        sign_with(&server, &alice, &phone, &first).await,
        &["signature"],
    )
    .await;
    // A new key of only one kind is new keys too (the server does not check the keys'
    // own signature; clients do).
    approve(&alice, &identity, &phone, &new_keys).await;
    let mixed = IdentityKeys {
        ed25519: device_keys(&phone).ed25519,
        ..new_keys
    };
    upload_identity_keys(&phone, mixed.clone()).await;
    assert_eq!(cross_signature_of(&bob, &alice, &phone).await, None);
    // Signed again, it shows again.
    let again = approve(&alice, &identity, &phone, &mixed).await;
    assert_eq!(
        cross_signature_of(&bob, &alice, &phone).await,
        Some(again.clone())
    );

    // A device signed right after its first keys keeps the signature until it changes them.
    let tablet = server.login("alice", "tablet").await;
    let tablet_keys = new_device_keys(&tablet).await;
    let tablet_signature = approve(&alice, &identity, &tablet, &tablet_keys).await;
    assert_eq!(
        cross_signature_of(&bob, &alice, &tablet).await,
        Some(tablet_signature)
    );
    new_device_keys(&tablet).await;
    assert_eq!(cross_signature_of(&bob, &alice, &tablet).await, None);
    // Publishing the same identity again does not touch the signatures it made.
    alice.publish_identity(identity.public()).await.unwrap();
    assert_eq!(cross_signature_of(&bob, &alice, &phone).await, Some(again));
    assert_eq!(cross_signature_of(&bob, &alice, &alice).await, laptop);
}

/// Asserts `who` may neither store an item nor delete the backup: 403 `not_approved`.
async fn assert_not_approved(server: &TestServer, who: &Session) {
    for name in ["identity", "new-item"] {
        let answer = put_item(server, who, name, "overwritten").await;
        refused_with(answer, 403, "not_approved", name).await;
    }
    let answer = request(server, who, Method::DELETE, "/v1/me/backup")
        .send()
        .await
        .unwrap();
    refused_with(answer, 403, "not_approved", "deleting").await;
    assert_problem(
        who.put_backup_item(&item("client", "x")).await,
        403,
        "not_approved",
    );
    assert_problem(who.delete_backup().await, 403, "not_approved");
}

async fn only_approved_devices_change_the_backup(backend: Backend) {
    let server = server!(backend);
    let alice = server.user("alice").await;
    let (_, identity, _) = approve_first(&alice).await;
    store_item(&server, &alice, "identity", "sealed").await;
    // A device logged in with only the password reads the backup but changes none of it.
    let phone = server.login("alice", "phone").await;
    assert_not_approved(&server, &phone).await;
    // With identity keys but no signature, no different.
    let phone_keys = new_device_keys(&phone).await;
    assert_not_approved(&server, &phone).await;
    assert_eq!(
        all_items(&server, &phone).await,
        vec![item("identity", "sealed")]
    );
    // Once the identity signs it, it may.
    approve(&alice, &identity, &phone, &phone_keys).await;
    store_item(&server, &phone, "room:1", "room key").await;
    // New keys void the signature, and with it the permission.
    new_device_keys(&phone).await;
    assert_not_approved(&server, &phone).await;
    // A user with no identity at all changes no backup either, but may read her empty one.
    let bob = server.user("bob").await;
    assert_not_approved(&server, &bob).await;
    assert!(all_items(&server, &bob).await.is_empty());
    // None of the refusals changed anything.
    assert_eq!(
        all_items(&server, &alice).await,
        vec![item("identity", "sealed"), item("room:1", "room key")]
    );
}

async fn a_reset_needs_the_password(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let (_, identity, _) = approve_first(&alice).await;
    let laptop = cross_signature_of(&alice, &alice, &alice).await;
    store_item(&server, &alice, "recovery", "sealed").await;
    // A login with the token but not the password (a stolen device) cannot reset.
    let phone = server.login("alice", "phone").await;
    let (_, takeover) = new_identity(&phone);
    for password in ["wrong-password", "PASSWORD123", ""] {
        let answer = reset(&server, &phone, takeover.public(), password).await;
        let problem = problem(answer, 403).await;
        assert_eq!(problem.code, "wrong_password", "{password:?}");
        assert!(problem.detail.unwrap().contains("password"), "{password:?}");
    }
    assert_problem(
        phone.reset_identity(takeover.public(), "guess").await,
        403,
        "wrong_password",
    );
    // No token, no reset, even with the password.
    let anonymous = server
        .raw(Method::POST, "/v1/me/identity/reset")
        .json(&json!({ "identity": takeover.public(), "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(anonymous, 401).await.code, "unauthorized");
    // Nothing changed, and the device is still logged in.
    for viewer in [&phone, &bob] {
        assert_eq!(
            identity_seen(viewer, alice.user_id()).await,
            Some(public(&identity))
        );
        assert_eq!(cross_signature_of(viewer, &alice, &alice).await, laptop);
    }
    assert_eq!(
        all_items(&server, &phone).await,
        vec![item("recovery", "sealed")]
    );
}

async fn resets_spend_the_login_allowance(backend: Backend) {
    let Some(server) = TestServer::start_with(backend, |c| {
        c.limits.set(Kind::AccountLogins, Rate::new(0.001, 3.0));
    })
    .await
    else {
        return;
    };
    // The login spends one of three.
    let alice = server.user("alice").await;
    let (_, identity) = new_identity(&alice);
    for _ in 0..2 {
        let answer = reset(&server, &alice, identity.public(), "guess").await;
        assert_eq!(problem(answer, 403).await.code, "wrong_password");
    }
    // Even the right password is refused now: guessing cannot go on through resets.
    let answer = reset(&server, &alice, identity.public(), PASSWORD).await;
    let limited = problem(answer, 429).await;
    assert_eq!(limited.code, "rate_limited");
    assert_eq!(identity_seen(&alice, alice.user_id()).await, None);
    // It is the login allowance: logging in is refused too, another account is not.
    let login = server.client.login("alice", PASSWORD, "phone").await;
    assert_problem(login, 429, "rate_limited");
    let bob = server.user("bob").await;
    let (_, bobs) = new_identity(&bob);
    let answer = reset(&server, &bob, bobs.public(), PASSWORD).await;
    assert_eq!(answer.status(), 204);
}

async fn a_reset_replaces_the_identity_and_clears_signatures_and_backup(backend: Backend) {
    let server = server!(backend);
    let ThreeDevices {
        alice,
        bob,
        phone,
        tablet,
        identity: old,
        laptop_keys,
        phone_keys,
        ..
    } = three_approved_devices(&server).await;
    for name in ["recovery", "room:1", "room:2"] {
        store_item(&server, &alice, name, "sealed").await;
    }
    let (_, bobs, _) = approve_first(&bob).await;
    let bob_signature = cross_signature_of(&alice, &bob, &bob).await;
    store_item(&server, &bob, "recovery", "bob's").await;

    // The phone lost the recovery key: with the password, it replaces the identity.
    let (_, new) = new_identity(&phone);
    let replaced = reset(&server, &phone, new.public(), PASSWORD).await;
    assert_eq!(replaced.status(), 204);
    let devices = [&alice, &phone, &tablet];
    assert_unsigned_under(&[&alice, &phone, &bob], &devices, &new).await;
    assert!(all_items(&server, &alice).await.is_empty());
    // Bob's identity, signature and backup are his own.
    assert_eq!(
        identity_seen(&alice, bob.user_id()).await,
        Some(public(&bobs))
    );
    assert_eq!(cross_signature_of(&alice, &bob, &bob).await, bob_signature);
    assert_eq!(
        all_items(&server, &bob).await,
        vec![item("recovery", "bob's")]
    );
    // The old self-signing key signs nothing now, and the laptop it approved may no longer
    // write the backup.
    let stale = vouch(&old, &alice, &laptop_keys);
    unverified(
        sign_with(&server, &alice, &alice, &stale).await,
        &["signature"],
    )
    .await;
    assert_not_approved(&server, &alice).await;
    // The new identity approves devices, which write a new backup.
    approve(&phone, &new, &phone, &phone_keys).await;
    store_item(&server, &phone, "recovery", "new").await;
    assert_eq!(
        all_items(&server, &alice).await,
        vec![item("recovery", "new")]
    );
}

async fn backup_items_are_stored_replaced_and_listed_in_name_order(backend: Backend) {
    let server = server!(backend);
    let alice = approved_user(&server, "alice").await;
    assert!(all_items(&server, &alice).await.is_empty());
    // Stored out of order; listed in byte order (digits, upper case, `_`, lower case, `~`).
    let stored = [
        ("room:b", "two"),
        ("identity", "secrets"),
        ("Zeta", "upper"),
        ("room:a", "one"),
        ("~last", "tilde"),
        ("0first", "digit"),
        ("room_a", "underscore"),
        ("room:a:1", "longer"),
    ];
    for (name, data) in stored {
        store_item(&server, &alice, name, data).await;
    }
    let listed = all_items(&server, &alice).await;
    assert_eq!(
        listed,
        vec![
            item("0first", "digit"),
            item("Zeta", "upper"),
            item("identity", "secrets"),
            item("room:a", "one"),
            item("room:a:1", "longer"),
            item("room:b", "two"),
            item("room_a", "underscore"),
            item("~last", "tilde"),
        ]
    );
    // Replacing an item changes its data, not the number of items.
    store_item(&server, &alice, "room:a", "ONE").await;
    store_item(&server, &alice, "identity", "").await;
    let listed = all_items(&server, &alice).await;
    assert_eq!(listed.len(), stored.len());
    assert!(listed.contains(&item("room:a", "ONE")), "{listed:?}");
    assert!(listed.contains(&item("identity", "")), "{listed:?}");
    // The client library reads the same items.
    assert_eq!(alice.backup_items("").await.unwrap(), listed);
    // Data comes back byte for byte, whatever printable ASCII it holds; anything else (a
    // line break, é, U+007F) is refused, the stored item left as it was.
    let unusual = " \"quoted\" \\ {json} ~!@#$%^&*()";
    store_item(&server, &alice, "unusual", unusual).await;
    let found = page(&server, &alice, &[("after", "room_a"), ("limit", "1")]).await;
    assert_eq!(found, vec![item("unusual", unusual)]);
    for refused in ["line\nbreak", "é", "\u{7f}"] {
        invalid(
            put_item(&server, &alice, "unusual", refused).await,
            &["printable ASCII"],
        )
        .await;
    }
    let found = page(&server, &alice, &[("after", "room_a"), ("limit", "1")]).await;
    assert_eq!(found, vec![item("unusual", unusual)]);
    // No token, no backup.
    let anonymous = server
        .raw(Method::GET, "/v1/me/backup")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(anonymous, 401).await.code, "unauthorized");
    let anonymous = server
        .raw(Method::PUT, "/v1/me/backup/x")
        .json(&json!({ "data": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(anonymous, 401).await.code, "unauthorized");
}

async fn backup_is_paged_with_after_and_limit(backend: Backend) {
    let server = server!(backend);
    let alice = approved_user(&server, "alice").await;
    let all: Vec<String> = (0..7).map(|i| format!("item{i}")).collect();
    for name in all.iter().rev() {
        store_item(&server, &alice, name, &format!("data of {name}")).await;
    }
    // Pages of three, each after the last name of the one before.
    let mut seen = Vec::new();
    let mut after = String::new();
    let mut sizes = Vec::new();
    loop {
        let items = page(&server, &alice, &[("after", &after), ("limit", "3")]).await;
        sizes.push(items.len());
        let Some(last) = items.last() else { break };
        after = last.name.clone();
        seen.extend(items);
    }
    assert_eq!(sizes, [3, 3, 1, 0]);
    assert_eq!(names(&seen), all);
    assert!(seen.iter().all(|i| i.data == format!("data of {}", i.name)));
    // `after` need not be a stored name; it is exclusive when it is one.
    assert_eq!(
        names(&page(&server, &alice, &[("after", "item3x"), ("limit", "2")]).await),
        ["item4", "item5"]
    );
    assert_eq!(
        names(&page(&server, &alice, &[("after", "item3")]).await),
        ["item4", "item5", "item6"]
    );
    assert_eq!(
        names(&page(&server, &alice, &[("after", "a")]).await).len(),
        7
    );
    assert!(
        page(&server, &alice, &[("after", "item6")])
            .await
            .is_empty()
    );
    assert!(page(&server, &alice, &[("after", "~")]).await.is_empty());
    // The ends of the range.
    assert_eq!(page(&server, &alice, &[("limit", "1")]).await.len(), 1);
    let max = PAGE_MAX.to_string();
    assert_eq!(page(&server, &alice, &[("limit", &max)]).await.len(), 7);
    for limit in ["0", "501"] {
        let response = request(&server, &alice, Method::GET, "/v1/me/backup")
            .query(&[("limit", limit)])
            .send()
            .await
            .unwrap();
        invalid(response, &["limit", "1 to 500"]).await;
    }
    for limit in ["-1", "ten", "4294967296", ""] {
        let response = request(&server, &alice, Method::GET, "/v1/me/backup")
            .query(&[("limit", limit)])
            .send()
            .await
            .unwrap();
        invalid(response, &["limit"]).await;
    }
}

async fn bad_backup_names_and_oversized_data_are_refused(backend: Backend) {
    let server = server!(backend);
    let alice = approved_user(&server, "alice").await;
    // The longest name and the largest data are fine.
    let longest = "n".repeat(BACKUP_NAME_MAX);
    let largest = "d".repeat(BACKUP_ITEM_MAX);
    store_item(&server, &alice, &longest, &largest).await;
    // Names: blank or control characters, one byte too long, non-ASCII (or not UTF-8).
    let too_long = "n".repeat(BACKUP_NAME_MAX + 1);
    for encoded in [
        "%20",
        "%20%20",
        "%09",
        "a%20b",
        "%0A",
        "%7F",
        "%00",
        too_long.as_str(),
        "%C3%A9",
        "caf%C3%A9",
        "%E2%80%8B",
        "%FF",
    ] {
        let response = put_item(&server, &alice, encoded, "x").await;
        let problem = problem(response, 400).await;
        assert_eq!(problem.code, "invalid_request", "{encoded}");
    }
    let refused = put_item(&server, &alice, "a%20b", "x").await;
    invalid(refused, &["name", "128", "printable ASCII"]).await;
    // An empty name is no item: the path names no endpoint that stores one.
    let empty = put_item(&server, &alice, "", "x").await;
    assert!(
        empty.status().is_client_error(),
        "PUT /v1/me/backup/ got {}",
        empty.status()
    );
    // Data one byte too long, counted in bytes (two-byte characters).
    let refused = put_item(&server, &alice, "big", &"d".repeat(BACKUP_ITEM_MAX + 1)).await;
    invalid(refused, &["16384 bytes"]).await;
    let refused = put_item(&server, &alice, "big", &"é".repeat(BACKUP_ITEM_MAX / 2 + 1)).await;
    invalid(refused, &["16384 bytes"]).await;
    // A replacement is checked too, and the item keeps its data.
    let refused = put_item(&server, &alice, &longest, &"d".repeat(BACKUP_ITEM_MAX + 1)).await;
    assert_eq!(refused.status(), 400);
    // A body that is not {data: string}.
    for body in [json!({}), json!({ "data": 5 }), json!({ "data": null })] {
        let response = request(&server, &alice, Method::PUT, "/v1/me/backup/fine")
            .json(&body)
            .send()
            .await
            .unwrap();
        invalid(response, &[]).await;
    }
    // Only the first item was stored.
    assert_eq!(
        all_items(&server, &alice).await,
        vec![item(&longest, &largest)]
    );
}

async fn encoded_backup_names_round_trip(backend: Backend) {
    let server = server!(backend);
    let alice = approved_user(&server, "alice").await;
    // (as it goes in the path, the name stored)
    let cases = [
        ("room:abc:1", "room:abc:1"),
        ("a%2Fb", "a/b"),
        ("a+b", "a+b"),
        ("c%2Bd", "c+d"),
        ("%25", "%"),
        ("q%3Fx%3D1", "q?x=1"),
        ("%23frag", "#frag"),
        ("trust%3Auser%2F1", "trust:user/1"),
        ("%7Bx%7D", "{x}"),
    ];
    for (index, (encoded, name)) in cases.iter().enumerate() {
        let response = put_item(&server, &alice, encoded, &format!("v{index}")).await;
        assert_eq!(response.status(), 204, "{encoded}");
        let found = page(&server, &alice, &[("limit", "500")]).await;
        assert!(
            found.contains(&item(name, &format!("v{index}"))),
            "{encoded} is stored as {name:?}: {found:?}"
        );
    }
    let mut expected: Vec<&str> = cases.iter().map(|(_, name)| *name).collect();
    expected.sort_unstable();
    assert_eq!(names(&all_items(&server, &alice).await), expected);
    // Another encoding of the same name replaces the item, not adds one.
    store_item(&server, &alice, "a%2fb", "lower-case hex").await;
    store_item(&server, &alice, "room%3Aabc%3A1", "colons encoded").await;
    let listed = all_items(&server, &alice).await;
    assert_eq!(listed.len(), cases.len());
    assert!(
        listed.contains(&item("a/b", "lower-case hex")),
        "{listed:?}"
    );
    assert!(
        listed.contains(&item("room:abc:1", "colons encoded")),
        "{listed:?}"
    );
    // A decoded name works as `after`.
    assert_eq!(
        names(&page(&server, &alice, &[("after", "a+b"), ("limit", "1")]).await),
        ["a/b"]
    );
    // The client library encodes names the same way.
    alice
        .put_backup_item(&item("x/y+z:w", "client"))
        .await
        .unwrap();
    assert!(
        all_items(&server, &alice)
            .await
            .contains(&item("x/y+z:w", "client"))
    );
}

async fn each_user_sees_only_their_own_backup(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    // Both may write: each has an identity that signed the device.
    approve_first(&alice).await;
    approve_first(&bob).await;
    let mallory = server.user("mallory").await;
    store_item(&server, &alice, "identity", "alice's secrets").await;
    store_item(&server, &alice, "room:1", "alice's room key").await;
    // The same name is another item for another user.
    store_item(&server, &bob, "identity", "bob's secrets").await;
    assert_eq!(
        all_items(&server, &alice).await,
        vec![
            item("identity", "alice's secrets"),
            item("room:1", "alice's room key")
        ]
    );
    assert_eq!(
        all_items(&server, &bob).await,
        vec![item("identity", "bob's secrets")]
    );
    assert!(all_items(&server, &mallory).await.is_empty());
    // Alice's other devices share her backup.
    let phone = server.login("alice", "phone").await;
    assert_eq!(all_items(&server, &phone).await.len(), 2);
    // Replacing and deleting touch only one's own items.
    store_item(&server, &bob, "identity", "bob's new secrets").await;
    assert_eq!(
        all_items(&server, &alice).await[0],
        item("identity", "alice's secrets")
    );
    let deleted = request(&server, &bob, Method::DELETE, "/v1/me/backup")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(all_items(&server, &bob).await.is_empty());
    assert_eq!(all_items(&server, &alice).await.len(), 2);
    // No path reaches another user's backup.
    let other = format!("/v1/users/{}/backup", alice.user_id());
    let response = request(&server, &bob, Method::GET, &other)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

async fn deleting_the_backup_removes_every_item(backend: Backend) {
    let server = server!(backend);
    let alice = approved_user(&server, "alice").await;
    // Nothing to delete is fine.
    alice.delete_backup().await.unwrap();
    for i in 0..12 {
        store_item(&server, &alice, &format!("item{i:02}"), "x").await;
    }
    assert_eq!(all_items(&server, &alice).await.len(), 12);
    let deleted = request(&server, &alice, Method::DELETE, "/v1/me/backup")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert!(all_items(&server, &alice).await.is_empty());
    assert!(
        page(&server, &alice, &[("after", "item00")])
            .await
            .is_empty()
    );
    // Again: still 204.
    alice.delete_backup().await.unwrap();
    // A new backup starts from nothing; a deleted name can be used again.
    store_item(&server, &alice, "item05", "new").await;
    assert_eq!(
        all_items(&server, &alice).await,
        vec![item("item05", "new")]
    );
    // No token, no deleting.
    let anonymous = server
        .raw(Method::DELETE, "/v1/me/backup")
        .send()
        .await
        .unwrap();
    assert_eq!(problem(anonymous, 401).await.code, "unauthorized");
    assert_eq!(all_items(&server, &alice).await.len(), 1);
}

/// Stores `count` items (`seed000001`, ...) in `user`'s backup straight into the database:
/// storing 100,000 over HTTP would take too long.
async fn seed_backup(server: &TestServer, user: &Session, count: i64) {
    let user = user.user_id().to_string();
    match &server.database.url {
        DatabaseUrl::Sqlite(_) => {
            let mut db = sqlx::SqliteConnection::connect(&server.database.url_text())
                .await
                .unwrap();
            sqlx::query(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2) \
                 INSERT INTO backup_items (user_id, name, data, updated_at) \
                 SELECT $1, printf('seed%06d', i), 'x', 0 FROM n",
            )
            .bind(&user)
            .bind(count)
            .execute(&mut db)
            .await
            .unwrap();
            db.close().await.unwrap();
        }
        DatabaseUrl::Postgres(url) => {
            let mut db = sqlx::PgConnection::connect(&url.0).await.unwrap();
            sqlx::query(
                "INSERT INTO backup_items (user_id, name, data, updated_at) \
                 SELECT $1, 'seed' || lpad(i::text, 6, '0'), 'x', 0 \
                 FROM generate_series(1, $2::bigint) AS i",
            )
            .bind(&user)
            .bind(count)
            .execute(&mut db)
            .await
            .unwrap();
            db.close().await.unwrap();
        }
    }
}

async fn backup_holds_at_most_the_bound(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = (
        approved_user(&server, "alice").await,
        approved_user(&server, "bob").await,
    );
    seed_backup(&server, &alice, BACKUP_ITEMS_MAX - 1).await;
    // The last free place.
    store_item(&server, &alice, "last", "fits").await;
    // Full: a new item is refused...
    let refused = put_item(&server, &alice, "one-more", "x").await;
    let problem = problem(refused, 409).await;
    assert_eq!(problem.code, "conflict");
    assert!(problem.detail.unwrap().contains("100000"));
    // ...but replacing one is fine.
    store_item(&server, &alice, "last", "replaced").await;
    store_item(&server, &alice, "seed000001", "replaced").await;
    // The default page is the largest.
    let first = page(&server, &alice, &[]).await;
    assert_eq!(first.len(), PAGE_MAX);
    assert_eq!(first[0], item("last", "replaced"));
    assert_eq!(first[1], item("seed000001", "replaced"));
    let tail = page(&server, &alice, &[("after", "seed099990")]).await;
    assert_eq!(
        names(&tail),
        (99_991..=99_999)
            .map(|i| format!("seed{i:06}"))
            .collect::<Vec<_>>()
    );
    assert!(!names(&page(&server, &alice, &[("after", "one")]).await).contains(&"one-more"));
    // The bound is per user.
    store_item(&server, &bob, "one-more", "x").await;
    // Deleting makes room again.
    alice.delete_backup().await.unwrap();
    assert!(page(&server, &alice, &[]).await.is_empty());
    store_item(&server, &alice, "one-more", "x").await;
}

/// How many items `user`'s backup holds, counted in the database.
async fn count_items(server: &TestServer, user: &Session) -> i64 {
    let user = user.user_id().to_string();
    let sql = "SELECT COUNT(*) FROM backup_items WHERE user_id = $1";
    match &server.database.url {
        DatabaseUrl::Sqlite(_) => {
            let mut db = sqlx::SqliteConnection::connect(&server.database.url_text())
                .await
                .unwrap();
            sqlx::query_scalar(sql)
                .bind(&user)
                .fetch_one(&mut db)
                .await
                .unwrap()
        }
        DatabaseUrl::Postgres(url) => {
            let mut db = sqlx::PgConnection::connect(&url.0).await.unwrap();
            sqlx::query_scalar(sql)
                .bind(&user)
                .fetch_one(&mut db)
                .await
                .unwrap()
        }
    }
}

async fn concurrent_items_do_not_pass_the_bound(backend: Backend) {
    let server = server!(backend);
    let alice = approved_user(&server, "alice").await;
    let free = 5;
    seed_backup(&server, &alice, BACKUP_ITEMS_MAX - free).await;
    let puts = (0..40).map(|i| {
        let http = request(
            &server,
            &alice,
            Method::PUT,
            &format!("/v1/me/backup/race{i:02}"),
        )
        .json(&json!({ "data": "x" }));
        tokio::spawn(async move { http.send().await.unwrap().status().as_u16() })
    });
    let mut statuses = Vec::new();
    for put in futures_util::future::join_all(puts).await {
        statuses.push(put.unwrap());
    }
    let stored = statuses.iter().filter(|s| **s == 204).count();
    let refused = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((stored, refused), (5, 35), "{statuses:?}");
    assert_eq!(count_items(&server, &alice).await, BACKUP_ITEMS_MAX);
}

async fn text_postgresql_cannot_store_is_refused(backend: Backend) {
    let server = server!(backend);
    let alice = approved_user(&server, "alice").await;
    store_item(&server, &alice, "a", "x").await;
    // An `after` with U+0000 is not a name: refused, never a 500.
    let response = request(&server, &alice, Method::GET, "/v1/me/backup")
        .query(&[("after", "\u{0}")])
        .send()
        .await
        .unwrap();
    invalid(response, &["after"]).await;
    // Data with U+0000 is refused, on both backends alike.
    let response = put_item(&server, &alice, "nul", "sealed\u{0}data").await;
    invalid(response, &["printable ASCII"]).await;
    assert_eq!(all_items(&server, &alice).await, vec![item("a", "x")]);
}

async fn openapi_lists_identity_and_backup_paths(backend: Backend) {
    let server = server!(backend);
    let document: Value = server
        .raw(Method::GET, "/v1/openapi.json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths = document["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/me/identity", "put"),
        ("/v1/me/identity/reset", "post"),
        ("/v1/devices/{device_id}/signature", "put"),
        ("/v1/me/backup/{name}", "put"),
        ("/v1/me/backup", "get"),
        ("/v1/me/backup", "delete"),
        ("/v1/users/{user_id}/devices", "get"),
    ] {
        let operation = paths.get(path).and_then(|p| p.get(method));
        assert!(operation.is_some(), "{method} {path} is documented");
        assert!(
            operation.unwrap()["security"].is_array(),
            "{method} {path} needs a token"
        );
    }
    let parameters = |path: &str, method: &str| -> Vec<String> {
        paths[path][method]["parameters"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|p| p["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(parameters("/v1/me/backup", "get"), ["after", "limit"]);
    assert_eq!(parameters("/v1/me/backup/{name}", "put"), ["name"]);
    assert_eq!(
        parameters("/v1/devices/{device_id}/signature", "put"),
        ["device_id"]
    );
    let schemas = &document["components"]["schemas"];
    for schema in [
        "CrossSigningKeys",
        "ResetIdentityRequest",
        "DeviceSignatureRequest",
        "PutBackupItemRequest",
        "BackupItemsResponse",
        "BackupItem",
        "DevicesResponse",
    ] {
        assert!(schemas[schema].is_object(), "{schema} is described");
    }
    let devices = &schemas["DevicesResponse"]["properties"];
    assert!(devices["identity"].is_object(), "{devices}");
    assert!(
        schemas["DeviceInfo"]["properties"]["cross_signature"].is_object(),
        "{}",
        schemas["DeviceInfo"]
    );
    for field in ["master_key", "self_signing_key", "signature"] {
        assert!(
            schemas["CrossSigningKeys"]["required"]
                .as_array()
                .unwrap()
                .contains(&json!(field)),
            "{field} is required"
        );
    }
}
