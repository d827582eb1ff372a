//! The bindings as JavaScript calls them, run in wasm under `wasm-bindgen-test` (Node):
//! `.ci/web` runs them with `cargo test -p natter-web --target wasm32-unknown-unknown`.
//! On a native target this file is empty: the bindings need a JavaScript host.
#![cfg(all(target_arch = "wasm32", target_os = "unknown"))]

use natter_proto::ws::Message;
use natter_proto::{ConversationId, DeviceId, UserId};
use natter_web::{
    AccountSecrets, CrossSigning, Device, Identity, InboundGroup, OutboundGroup, Recovery, SealKey,
    StoreKey, safety_number, verify_device,
};
use serde_json::{Value, json};
use wasm_bindgen::{JsError, JsValue};
use wasm_bindgen_test::wasm_bindgen_test;

/// The message JavaScript reads from an error.
fn message(error: JsError) -> String {
    js_sys::Error::from(JsValue::from(error))
        .message()
        .as_string()
        .unwrap_or_default()
}

/// A device with ids, as after login.
struct Someone {
    user: UserId,
    device_id: DeviceId,
    device: Device,
}

impl Someone {
    fn new() -> Self {
        Self {
            user: UserId::new(),
            device_id: DeviceId::new(),
            device: Device::new(),
        }
    }

    fn ids(&self) -> (String, String) {
        (self.user.to_string(), self.device_id.to_string())
    }

    /// The published upload body, parsed.
    fn upload(&mut self) -> Value {
        let (user, device) = self.ids();
        let body = self
            .device
            .upload_request(&user, &device, 0, false, true)
            .unwrap();
        self.device.mark_published();
        serde_json::from_str(&body).unwrap()
    }

    /// This device as the server lists it.
    fn info(&self, cross_signature: Option<String>) -> String {
        let (user, device) = self.ids();
        let keys: Value =
            serde_json::from_str(&self.device.identity_keys(&user, &device).unwrap()).unwrap();
        let mut published = keys.clone();
        published["created_at"] = json!(1);
        json!({
            "device_id": device,
            "name": "browser",
            "created_at": 1,
            "identity_keys": published,
            "cross_signature": cross_signature,
        })
        .to_string()
    }
}

/// Alice opens an Olm session to Bob with a one-time key from Bob's upload.
fn olm_pair() -> (Someone, Someone) {
    let mut alice = Someone::new();
    let mut bob = Someone::new();
    let upload = bob.upload();
    let one_time = upload["one_time_keys"][0]["key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(upload["one_time_keys"].as_array().unwrap().len(), 50);
    assert!(upload["fallback_key"].is_object());
    alice.upload();
    alice
        .device
        .open_session(&bob.device.curve25519(), &one_time)
        .unwrap();
    (alice, bob)
}

fn message_json(conversation: ConversationId, sender: &Someone, ciphertext: String) -> String {
    serde_json::to_string(&Message {
        conversation_id: conversation,
        seq: 1,
        sender_id: sender.user,
        sender_device_id: sender.device_id,
        client_msg_id: "c1".into(),
        server_ts: 1,
        client_ts: None,
        ciphertext,
    })
    .unwrap()
}

#[wasm_bindgen_test]
fn published_identity_keys_verify_and_are_bound_to_their_device() {
    let someone = Someone::new();
    let user = someone.user.to_string();
    assert!(verify_device(&user, &someone.info(None)).unwrap());
    let error = verify_device(&UserId::new().to_string(), &someone.info(None)).unwrap_err();
    assert!(message(error).contains("not validly signed"));
    let error = verify_device("not-a-uuid", &someone.info(None)).unwrap_err();
    assert_eq!(message(error), "not a valid user id: expected a UUID");
}

#[wasm_bindgen_test]
fn olm_carries_a_payload_both_ways() {
    let (mut alice, mut bob) = olm_pair();
    let payload = alice
        .device
        .encrypt_to(&bob.device.curve25519(), "hello bob")
        .unwrap();
    assert!(!payload.contains("hello bob"));
    let received = bob.device.receive(&payload).unwrap();
    assert!(received.new_session());
    assert!(!received.is_room_key());
    assert_eq!(received.text().as_deref(), Some("hello bob"));

    let reply = bob
        .device
        .encrypt_to(&alice.device.curve25519(), "hello alice")
        .unwrap();
    let received = alice.device.receive(&reply).unwrap();
    assert!(!received.new_session());
    assert_eq!(received.text().as_deref(), Some("hello alice"));

    let error = bob
        .device
        .encrypt_to(&Device::new().curve25519(), "x")
        .unwrap_err();
    assert_eq!(
        message(error),
        "no session with that device: open one first"
    );
    assert!(bob.device.receive("{}").is_err());
}

#[wasm_bindgen_test]
fn megolm_messages_decrypt_with_a_key_shared_over_olm() {
    let (mut alice, mut bob) = olm_pair();
    let conversation = ConversationId::new();
    let (conv, (alice_user, alice_device)) = (conversation.to_string(), alice.ids());
    let (bob_user, bob_device) = bob.ids();
    let mut outbound = OutboundGroup::new(&conv, 0.0).unwrap();
    let payload = outbound
        .share_with(
            &mut alice.device,
            &alice_user,
            &alice_device,
            &bob_user,
            &bob_device,
            &bob.device.curve25519(),
        )
        .unwrap();
    let ciphertext = outbound
        .encrypt("good morning", &conv, &alice_device)
        .unwrap();
    assert!(!ciphertext.contains("good morning"));
    assert_eq!(outbound.messages(), 1);

    let received = bob.device.receive(&payload).unwrap();
    assert!(received.is_room_key());
    assert_eq!(received.text(), None, "a room key never reaches JavaScript");
    let stranger = UserId::new().to_string();
    assert!(
        received
            .room_key(&stranger, &alice_device, &bob_device)
            .is_err()
    );
    let mut inbound = received
        .room_key(&alice_user, &alice_device, &bob_device)
        .unwrap();
    assert_eq!(inbound.session_id(), outbound.session_id());
    assert_eq!(inbound.conversation_id(), conv);
    let text = inbound
        .decrypt(&message_json(conversation, &alice, ciphertext.clone()))
        .unwrap();
    assert_eq!(text, "good morning");

    let moved = message_json(ConversationId::new(), &alice, ciphertext);
    assert_eq!(message(inbound.decrypt(&moved).unwrap_err()), "mismatch");
    assert!(outbound.encrypt("   ", &conv, &alice_device).is_err());
    assert!(
        outbound
            .encrypt(&"x".repeat(1001), &conv, &alice_device)
            .is_err()
    );
}

#[wasm_bindgen_test]
fn pickles_restore_the_device_and_its_sessions() {
    let (mut alice, mut bob) = olm_pair();
    let salt = StoreKey::new_salt();
    let key = StoreKey::from_passphrase("correct horse", &salt).unwrap();
    let first = alice
        .device
        .encrypt_to(&bob.device.curve25519(), "one")
        .unwrap();
    bob.device.receive(&first).unwrap();
    let restored_bob = Device::from_pickles(
        &bob.device.pickle(&key),
        bob.device.session_pickles(&key),
        &key,
    )
    .unwrap();
    assert_eq!(restored_bob.curve25519(), bob.device.curve25519());
    let mut restored_bob = restored_bob;
    let second = alice
        .device
        .encrypt_to(&bob.device.curve25519(), "two")
        .unwrap();
    assert_eq!(
        restored_bob.receive(&second).unwrap().text().as_deref(),
        Some("two")
    );

    let wrong = StoreKey::from_passphrase("wrong horse", &salt).unwrap();
    assert!(Device::from_pickles(&bob.device.pickle(&key), vec![], &wrong).is_err());

    let conv = ConversationId::new().to_string();
    let outbound = OutboundGroup::new(&conv, 0.0).unwrap();
    let again = OutboundGroup::from_pickle(&outbound.pickle(&key), &key).unwrap();
    assert_eq!(again.session_id(), outbound.session_id());
    assert!(InboundGroup::from_pickle("{}", &key).is_err());
}

#[wasm_bindgen_test]
fn cross_signing_judges_devices_and_safety_numbers_match_natter_crypto() {
    let alice = Someone::new();
    let (user, device) = alice.ids();
    let identity = CrossSigning::generate(&user).unwrap();
    let public = identity.public_keys();
    let checked = Identity::check(&user, &public).unwrap();
    assert_eq!(checked.master_key(), identity.master_key());
    assert_eq!(checked.judge(&alice.info(None)).unwrap(), "unsigned");
    let keys = alice.device.identity_keys(&user, &device).unwrap();
    let signature = identity.sign_device(&user, &device, &keys).unwrap();
    assert_eq!(
        checked.judge(&alice.info(Some(signature))).unwrap(),
        "signed"
    );
    assert!(Identity::check(&UserId::new().to_string(), &public).is_err());

    let bob = UserId::new();
    let bob_identity = CrossSigning::generate(&bob.to_string()).unwrap();
    let number = safety_number(
        &user,
        &identity.master_key(),
        &bob.to_string(),
        &bob_identity.master_key(),
    )
    .unwrap();
    let reverse = safety_number(
        &bob.to_string(),
        &bob_identity.master_key(),
        &user,
        &identity.master_key(),
    )
    .unwrap();
    assert_eq!(number, reverse);
    assert_eq!(
        number,
        natter_crypto::safety_number(
            (alice.user, &identity.master_key()),
            (bob, &bob_identity.master_key())
        )
    );
    assert_eq!(number.split(' ').count(), 12);
    assert_eq!(
        natter_web::fingerprint(&identity.master_key()),
        natter_crypto::cross_signing::fingerprint(&identity.master_key())
    );
}

#[wasm_bindgen_test]
fn the_recovery_key_opens_the_secrets_it_sealed() {
    let user = UserId::new().to_string();
    let secrets = AccountSecrets::generate(&user).unwrap();
    let recovery = Recovery::generate();
    let item = recovery.seal_secrets(&user, &secrets).unwrap();
    let typed = recovery.display().to_lowercase();
    let reopened = Recovery::parse(&typed)
        .unwrap()
        .open_secrets(&user, &item)
        .unwrap();
    assert_eq!(
        reopened.cross_signing().unwrap().master_key(),
        secrets.cross_signing().unwrap().master_key()
    );
    assert!(Recovery::generate().open_secrets(&user, &item).is_err());
    let mut mistyped = recovery.display();
    let last = if mistyped.ends_with('0') { "1" } else { "0" };
    mistyped.replace_range(mistyped.len() - 1.., last);
    assert!(Recovery::parse(&mistyped).is_err());
}

#[wasm_bindgen_test]
fn sealed_values_open_only_in_their_place() {
    let key = SealKey::random();
    let sealed = key.seal(b"messages.text:1", b"secret");
    assert_eq!(key.open(b"messages.text:1", &sealed).unwrap(), b"secret");
    assert!(key.open(b"messages.text:2", &sealed).is_err());
    assert!(SealKey::random().open(b"messages.text:1", &sealed).is_err());
    let sub = key.derive("index");
    assert_eq!(sub.tag(b"id"), key.derive("index").tag(b"id"));
    assert_ne!(sub.tag(b"id"), key.tag(b"id"));
    let salt = StoreKey::new_salt();
    let from = SealKey::from_passphrase("pass", &salt).unwrap();
    assert_eq!(
        SealKey::from_passphrase("pass", &salt).unwrap().tag(b"x"),
        from.tag(b"x")
    );
    assert!(SealKey::from_passphrase("", &salt).is_err());
}
