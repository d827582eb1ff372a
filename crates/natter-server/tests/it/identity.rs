//! Cross-signing identities, device signatures and the key backup: publishing and replacing an
//! identity, who may read it, signing only one's own devices, signatures lost with new device
//! keys, and the backup's names, sizes, order, paging, privacy, removal and bound.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use natter_client::Session;
use natter_proto::UserId;
use natter_proto::keys::{
    BackupItem, CrossSigningKeys, DeviceInfo, IdentityKeys, OneTimeKey, UploadKeysRequest,
};
use natter_proto::limits::{BACKUP_ITEM_MAX, BACKUP_ITEMS_MAX, BACKUP_NAME_MAX, PAGE_MAX};
use natter_proto::problem::{CONTENT_TYPE, Problem};
use natter_server::config::DatabaseUrl;
use reqwest::{Method, Response};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::helpers::{Backend, TestServer, assert_problem, backend_tests, server};

backend_tests!(
    identity_is_published_to_its_user_and_connections,
    a_new_identity_replaces_the_old,
    malformed_identities_are_refused,
    only_its_user_signs_a_device,
    new_identity_keys_clear_the_cross_signature,
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

/// The identity `viewer` is shown for `owner`.
async fn identity_seen(viewer: &Session, owner: UserId) -> Option<CrossSigningKeys> {
    viewer
        .devices_and_identity(owner)
        .await
        .expect("the device list")
        .identity
}

fn key(seed: u8) -> String {
    STANDARD_NO_PAD.encode([seed; 32])
}

fn signature(seed: u8) -> String {
    STANDARD_NO_PAD.encode([seed; 64])
}

fn cross_signing(seed: u8) -> CrossSigningKeys {
    CrossSigningKeys {
        master_key: key(seed),
        self_signing_key: key(seed.wrapping_add(1)),
        signature: signature(seed),
    }
}

fn body(keys: CrossSigningKeys) -> Value {
    serde_json::to_value(keys).unwrap()
}

fn identity_keys(seed: u8) -> IdentityKeys {
    IdentityKeys {
        curve25519: key(seed),
        ed25519: key(seed.wrapping_add(1)),
        signature: signature(seed),
    }
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

/// A request from `who` (with its token) to `path` on `server`.
fn request(
    server: &TestServer,
    who: &Session,
    method: Method,
    path: &str,
) -> reqwest::RequestBuilder {
    server.raw(method, path).bearer_auth(who.token())
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

    let published = request(&server, &alice, Method::PUT, "/v1/me/identity")
        .json(&cross_signing(1))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 204);
    // Its user's own devices see it, including one logged in later.
    let own = alice.devices_and_identity(alice.user_id()).await.unwrap();
    assert_eq!(own.identity, Some(cross_signing(1)));
    assert_eq!(own.devices.len(), 1);
    let phone = server.login("alice", "phone").await;
    let from_phone = phone.devices_and_identity(alice.user_id()).await.unwrap();
    assert_eq!(from_phone.identity, Some(cross_signing(1)));
    assert_eq!(from_phone.devices.len(), 2);
    // A connection sees it.
    let seen = bob.devices_and_identity(alice.user_id()).await.unwrap();
    assert_eq!(seen.identity, Some(cross_signing(1)));
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
    let anonymous = server
        .raw(Method::PUT, "/v1/me/identity")
        .json(&cross_signing(2))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(anonymous, 401).await.code, "unauthorized");
    assert_eq!(
        identity_seen(&bob, alice.user_id()).await,
        Some(cross_signing(1))
    );
}

async fn a_new_identity_replaces_the_old(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    alice.publish_identity(&cross_signing(1)).await.unwrap();
    assert_eq!(
        identity_seen(&bob, alice.user_id()).await,
        Some(cross_signing(1))
    );
    // A reset, from another of alice's devices.
    let phone = server.login("alice", "phone").await;
    phone.publish_identity(&cross_signing(7)).await.unwrap();
    for viewer in [&alice, &phone, &bob] {
        assert_eq!(
            identity_seen(viewer, alice.user_id()).await,
            Some(cross_signing(7))
        );
    }
    // Publishing the same identity again changes nothing; the old one can come back.
    alice.publish_identity(&cross_signing(7)).await.unwrap();
    alice.publish_identity(&cross_signing(1)).await.unwrap();
    assert_eq!(
        identity_seen(&bob, alice.user_id()).await,
        Some(cross_signing(1))
    );
    // Bob's identity is his own.
    assert_eq!(identity_seen(&bob, bob.user_id()).await, None);
}

async fn malformed_identities_are_refused(backend: Backend) {
    let server = server!(backend);
    let alice = server.user("alice").await;
    alice.publish_identity(&cross_signing(1)).await.unwrap();
    let cases: Vec<(Value, &[&str])> = vec![
        (
            body(CrossSigningKeys {
                master_key: format!("{}=", key(2)),
                ..cross_signing(2)
            }),
            &["master_key", "32 bytes", "unpadded"],
        ),
        (
            body(CrossSigningKeys {
                master_key: STANDARD_NO_PAD.encode([2u8; 31]),
                ..cross_signing(2)
            }),
            &["master_key", "32 bytes"],
        ),
        (
            body(CrossSigningKeys {
                self_signing_key: STANDARD_NO_PAD.encode([2u8; 33]),
                ..cross_signing(2)
            }),
            &["self_signing_key", "32 bytes"],
        ),
        (
            body(CrossSigningKeys {
                self_signing_key: "*".repeat(43),
                ..cross_signing(2)
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
                ..cross_signing(2)
            }),
            &["self_signing_key", "standard base64"],
        ),
        (
            // A key where the signature goes.
            body(CrossSigningKeys {
                signature: key(2),
                ..cross_signing(2)
            }),
            &["signature", "64 bytes"],
        ),
        (
            body(CrossSigningKeys {
                signature: String::new(),
                ..cross_signing(2)
            }),
            &["signature", "64 bytes"],
        ),
        (
            json!({"master_key": key(2), "self_signing_key": key(3)}),
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
    // Not JSON at all.
    let garbage = request(&server, &alice, Method::PUT, "/v1/me/identity")
        .header("content-type", "application/json")
        .body("{master_key")
        .send()
        .await
        .unwrap();
    invalid(garbage, &[]).await;
    // Through the client too.
    let padded = CrossSigningKeys {
        signature: format!("{}==", signature(2)),
        ..cross_signing(2)
    };
    assert_problem(
        alice.publish_identity(&padded).await,
        400,
        "invalid_request",
    );
    // None of it replaced the identity.
    assert_eq!(
        identity_seen(&alice, alice.user_id()).await,
        Some(cross_signing(1))
    );
}

async fn only_its_user_signs_a_device(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let phone = server.login("alice", "phone").await;
    upload_identity_keys(&alice, identity_keys(1)).await;
    upload_identity_keys(&phone, identity_keys(3)).await;
    alice.publish_identity(&cross_signing(10)).await.unwrap();
    // The laptop signs the phone.
    let signed = sign(
        &server,
        &alice,
        &phone.device_id().to_string(),
        json!({ "signature": signature(20) }),
    )
    .await;
    assert_eq!(signed.status(), 204);
    for viewer in [&alice, &phone, &bob] {
        assert_eq!(
            cross_signature_of(viewer, &alice, &phone).await,
            Some(signature(20))
        );
        assert_eq!(cross_signature_of(viewer, &alice, &alice).await, None);
    }
    // The connection list carries the same devices.
    let list = bob.connections().await.unwrap();
    assert_eq!(
        list.connections[0].devices,
        bob.devices(alice.user_id()).await.unwrap()
    );
    // A device may sign itself (the first device, right after creating the identity), and a
    // new signature replaces the old.
    alice
        .sign_device(alice.device_id(), &signature(21))
        .await
        .unwrap();
    alice
        .sign_device(phone.device_id(), &signature(22))
        .await
        .unwrap();
    assert_eq!(
        cross_signature_of(&bob, &alice, &alice).await,
        Some(signature(21))
    );
    assert_eq!(
        cross_signature_of(&bob, &alice, &phone).await,
        Some(signature(22))
    );

    // Bob cannot sign alice's devices, though he is connected to her: 404, as for no device.
    let refused = sign(
        &server,
        &bob,
        &phone.device_id().to_string(),
        json!({ "signature": signature(66) }),
    )
    .await;
    assert_eq!(problem(refused, 404).await.code, "not_found");
    assert_problem(
        bob.sign_device(alice.device_id(), &signature(66)).await,
        404,
        "not_found",
    );
    // A stranger's attempt is the same 404.
    let mallory = server.user("mallory").await;
    assert_problem(
        mallory.sign_device(phone.device_id(), &signature(67)).await,
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
    for viewer in [&alice, &bob] {
        assert_eq!(
            cross_signature_of(viewer, &alice, &alice).await,
            Some(signature(21))
        );
        assert_eq!(
            cross_signature_of(viewer, &alice, &phone).await,
            Some(signature(22))
        );
    }
    assert_eq!(cross_signature_of(&bob, &bob, &bob).await, None);

    // Malformed requests are 400s and store nothing.
    let phone_id = phone.device_id().to_string();
    let malformed: [(&str, Value, &[&str]); 5] = [
        (
            &phone_id,
            json!({ "signature": key(1) }),
            &["signature", "64 bytes"],
        ),
        (
            &phone_id,
            json!({ "signature": format!("{}==", signature(1)) }),
            &["signature", "64 bytes"],
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
    // Bob's malformed signature for alice's device is refused as malformed (it says nothing of
    // whether the device exists) and stores nothing.
    let bad = sign(&server, &bob, &phone_id, json!({ "signature": "x" })).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(
        cross_signature_of(&bob, &alice, &phone).await,
        Some(signature(22))
    );
    // No token, no signing.
    let anonymous = server
        .raw(Method::PUT, &format!("/v1/devices/{phone_id}/signature"))
        .json(&json!({ "signature": signature(1) }))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(anonymous, 401).await.code, "unauthorized");
}

async fn new_identity_keys_clear_the_cross_signature(backend: Backend) {
    let server = server!(backend);
    let (alice, bob) = server.connected_pair("alice", "bob").await;
    let phone = server.login("alice", "phone").await;
    upload_identity_keys(&alice, identity_keys(1)).await;
    upload_identity_keys(&phone, identity_keys(3)).await;
    alice
        .sign_device(alice.device_id(), &signature(11))
        .await
        .unwrap();
    alice
        .sign_device(phone.device_id(), &signature(13))
        .await
        .unwrap();

    // The same keys again (a retried upload) keep the signature; so do other uploads.
    upload_identity_keys(&phone, identity_keys(3)).await;
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
        Some(signature(13))
    );

    // New identity keys: the signature vouched for the old ones, so it goes.
    upload_identity_keys(&phone, identity_keys(5)).await;
    for viewer in [&alice, &phone, &bob] {
        assert_eq!(cross_signature_of(viewer, &alice, &phone).await, None);
        // The other device keeps its own.
        assert_eq!(
            cross_signature_of(viewer, &alice, &alice).await,
            Some(signature(11))
        );
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
    // A new key of only one kind is new keys too.
    alice
        .sign_device(phone.device_id(), &signature(15))
        .await
        .unwrap();
    upload_identity_keys(
        &phone,
        IdentityKeys {
            ed25519: key(99),
            ..identity_keys(5)
        },
    )
    .await;
    assert_eq!(cross_signature_of(&bob, &alice, &phone).await, None);
    // Signed again, it shows again.
    alice
        .sign_device(phone.device_id(), &signature(16))
        .await
        .unwrap();
    assert_eq!(
        cross_signature_of(&bob, &alice, &phone).await,
        Some(signature(16))
    );

    // A device signed before it had uploaded any keys loses that signature with its first keys.
    let tablet = server.login("alice", "tablet").await;
    alice
        .sign_device(tablet.device_id(), &signature(17))
        .await
        .unwrap();
    assert_eq!(
        cross_signature_of(&bob, &alice, &tablet).await,
        Some(signature(17))
    );
    upload_identity_keys(&tablet, identity_keys(7)).await;
    assert_eq!(cross_signature_of(&bob, &alice, &tablet).await, None);
    // Publishing a new identity does not touch device signatures (clients check them).
    alice.publish_identity(&cross_signing(30)).await.unwrap();
    assert_eq!(
        cross_signature_of(&bob, &alice, &phone).await,
        Some(signature(16))
    );
}

async fn backup_items_are_stored_replaced_and_listed_in_name_order(backend: Backend) {
    let server = server!(backend);
    let alice = server.user("alice").await;
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
    let alice = server.user("alice").await;
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
    let alice = server.user("alice").await;
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
    let alice = server.user("alice").await;
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
    let alice = server.user("alice").await;
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
    let (alice, bob) = (server.user("alice").await, server.user("bob").await);
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
    let alice = server.user("alice").await;
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
    let alice = server.user("alice").await;
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
