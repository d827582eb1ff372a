//! A client's decoding of what the server relays: `ServerFrame`s as natter-client reads them,
//! and natter-crypto's parsing of what they carry (message ciphertexts, to-device payloads,
//! room key shares and exports, device lists, identities, backup items, secrets, recovery
//! keys, device approval steps). Every decoder sees the same input; whatever parses
//! round-trips, and whatever a forger cannot make (a ciphertext, a sealed item, a MAC) is
//! refused without a panic.
#![no_main]

use std::sync::{LazyLock, Mutex};

use libfuzzer_sys::fuzz_target;
use natter_crypto::approval::{Approval, ApprovalPayload};
use natter_crypto::backup::ROOM_PREFIX;
use natter_crypto::envelope::{check_text, session_id_of};
use natter_crypto::{
    BackupKey, CryptoError, DeviceAccount, IdentitySecrets, InboundRoomSession, MasterKey,
    MessageEnvelope, OutboundRoomSession, RecoveryKey, RoomKeyShare, SealKey, Secrets,
    ToDevicePayload, UserIdentity, verify_device,
};
use natter_fuzz::assert_round_trip;
use natter_proto::keys::{BackupItem, CrossSigningKeys, DeviceInfo};
use natter_proto::ws::{Message, ServerFrame};
use natter_proto::{ConversationId, DeviceId, UserId};

const USER: UserId = UserId(uuid::Uuid::from_u128(
    0x0190_0000_0000_7000_8000_0000_0000_0001,
));
const DEVICE: DeviceId = DeviceId(uuid::Uuid::from_u128(
    0x0190_0000_0000_7000_8000_0000_0000_0002,
));
const CONVERSATION: ConversationId = ConversationId(uuid::Uuid::from_u128(
    0x0190_0000_0000_7000_8000_0000_0000_0003,
));
/// The backup key's bytes, so the harness can seal what it likes the way natter-crypto does.
const BACKUP_KEY: [u8; 32] = [7; 32];

/// A device's keys and one room session in both directions, made once per process.
struct Keys {
    account: DeviceAccount,
    outbound: OutboundRoomSession,
    inbound: InboundRoomSession,
    identity: UserIdentity,
}

static KEYS: LazyLock<Mutex<Keys>> = LazyLock::new(|| {
    let outbound = OutboundRoomSession::new(CONVERSATION, 0);
    let inbound = InboundRoomSession::from_share(&outbound.share_for((USER, DEVICE), DEVICE))
        .expect("a share of our own session opens");
    let secrets = MasterKey::generate().new_self_signing(USER);
    let identity = UserIdentity::check(USER, secrets.public()).expect("our identity checks");
    Mutex::new(Keys {
        account: DeviceAccount::new(),
        outbound,
        inbound,
        identity,
    })
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        // natter-client reads text frames only; tungstenite refuses one that is not UTF-8.
        return;
    };
    let mut keys = KEYS.lock().expect("not poisoned");
    server_frame(text);
    to_device(&mut keys, text);
    room_message(&mut keys, text);
    room_keys(text);
    devices(&keys, text);
    backup(text);
    approval(text);
});

/// natter-client's `ws.rs` reads every text frame as a `ServerFrame`.
fn server_frame(text: &str) {
    if let Ok(frame) = serde_json::from_str::<ServerFrame>(text) {
        assert_round_trip(&frame);
        let json = serde_json::to_value(&frame).expect("a frame serializes");
        assert_eq!(json["type"], frame.kind());
    }
}

/// A `to_device` frame's payload: parsed, then opened with no session from its sender and
/// no one-time key that it could have been made for, so it must fail without a panic.
fn to_device(keys: &mut Keys, text: &str) {
    if let Ok(payload) = ToDevicePayload::parse(text) {
        let opened = keys.account.decrypt(&mut [], &payload);
        assert!(opened.is_err(), "a forged to-device payload opened");
    }
}

/// A `message` frame's ciphertext: no forgery decrypts, and any valid text encrypts and
/// decrypts back to itself.
fn room_message(keys: &mut Keys, text: &str) {
    if session_id_of(text).is_some() {
        assert!(serde_json::from_str::<serde_json::Value>(text).is_ok());
    }
    let message = |ciphertext: String| Message {
        conversation_id: CONVERSATION,
        seq: 1,
        sender_id: USER,
        sender_device_id: DEVICE,
        client_msg_id: "fuzz".into(),
        server_ts: 0,
        client_ts: None,
        ciphertext,
    };
    assert!(
        keys.inbound.decrypt(&message(text.to_owned())).is_err(),
        "a forged ciphertext decrypted"
    );
    if check_text(text).is_ok() {
        let envelope = MessageEnvelope::new(text, CONVERSATION, DEVICE).expect("checked text");
        let ciphertext = keys.outbound.encrypt(&envelope);
        let opened = keys
            .inbound
            .decrypt(&message(ciphertext))
            .expect("our message decrypts");
        assert_eq!(opened, envelope);
    }
    if let Ok(envelope) = serde_json::from_str::<MessageEnvelope>(text) {
        assert_round_trip(&envelope);
    }
}

/// Room keys as they arrive: a share inside a to-device payload, an export from the backup.
fn room_keys(text: &str) {
    if let Ok(share) = serde_json::from_str::<RoomKeyShare>(text) {
        let _ = InboundRoomSession::from_share(&share);
    }
    if let Ok(session) = InboundRoomSession::import(text) {
        let again = InboundRoomSession::import(&session.export()).expect("an export imports");
        assert_eq!(again.session_id(), session.session_id());
        assert_eq!(again.first_known_index(), session.first_known_index());
        assert_eq!(again.conversation_id(), session.conversation_id());
    }
}

/// Device lists and identities from the server, judged against a real identity.
fn devices(keys: &Keys, text: &str) {
    if let Ok(device) = serde_json::from_str::<DeviceInfo>(text) {
        assert_round_trip(&device);
        let _ = verify_device(USER, &device);
        let _ = keys.identity.judge(&device);
    }
    if let Ok(identity) = serde_json::from_str::<CrossSigningKeys>(text) {
        let _ = UserIdentity::check(USER, &identity);
    }
}

/// The key backup and the secrets a device keeps or is handed.
fn backup(text: &str) {
    if let Ok(key) = RecoveryKey::parse(text) {
        let shown = key.to_display();
        let again = RecoveryKey::parse(&shown).expect("a shown key parses");
        assert_eq!(*again.to_display(), *shown);
    }
    if let Ok(secrets) = Secrets::from_json(text) {
        let json = secrets.to_json();
        let again = Secrets::from_json(&json).expect("written secrets read back");
        assert_eq!(*again.to_json(), *json);
    }
    if let Ok(identity) = IdentitySecrets::from_json(text) {
        let json = identity.to_json();
        let again = IdentitySecrets::from_json(&json).expect("written secrets read back");
        assert_eq!(*again.to_json(), *json);
    }
    if let Ok(key) = BackupKey::from_base64(text) {
        assert_eq!(*key.to_base64(), text, "one key, one spelling");
    }
    if let Ok(key) = MasterKey::from_base64(text) {
        assert_eq!(*key.to_base64(), text, "one key, one spelling");
    }
    let key = BackupKey::from_base64(&base64(&BACKUP_KEY)).expect("a key");
    // An item from the server, as it is: nothing forged opens.
    if let Ok(item) = serde_json::from_str::<BackupItem>(text) {
        assert!(
            key.open_room_key(USER, &item).is_err(),
            "a forged room key opened"
        );
        assert!(
            key.open_trust(USER, &item).is_err(),
            "a forged trust item opened"
        );
    }
    // The input sealed with the backup key, as a device would: it opens, and a room key that
    // is not an export of one is refused as malformed.
    let item = sealed(format!("{ROOM_PREFIX}fuzz"), text.as_bytes());
    match key.open_room_key(USER, &item) {
        Ok(session) => assert_eq!(item.name, format!("{ROOM_PREFIX}{}", session.session_id())),
        Err(error) => assert!(
            matches!(error, CryptoError::Malformed { .. }),
            "a sealed room key failed with {error:?}"
        ),
    }
    let trust = key.seal_trust(USER, USER, text);
    assert_eq!(
        *key.open_trust(USER, &trust).expect("a trust item opens"),
        text
    );
}

/// `plaintext` sealed for [`USER`] under `name`, as natter-crypto's backup seals an item.
fn sealed(name: String, plaintext: &[u8]) -> BackupItem {
    let aad = format!("natter-backup:v1:{USER}:{name}");
    let data = SealKey::from_bytes(BACKUP_KEY).seal(aad.as_bytes(), plaintext);
    BackupItem {
        name,
        data: base64(&data),
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// A device approval's steps arrive in to-device payloads from the other device: whatever the
/// newcomer is sent as the approver's key and MAC, no forged MAC passes.
fn approval(text: &str) {
    if let Ok(payload) = serde_json::from_str::<ApprovalPayload>(text) {
        let json = serde_json::to_string(&payload).expect("a step serializes");
        let again: ApprovalPayload = serde_json::from_str(&json).expect("a step reads back");
        assert_eq!(serde_json::to_string(&again).expect("serializes"), json);
    }
    // Only a Curve25519 key's length (unpadded or padded) can be one; a new approval per input
    // makes keys, so the others skip it.
    if !matches!(text.len(), 43 | 44) {
        return;
    }
    let (mut approval, _) = Approval::accept("flow", "approver keys", "newcomer keys");
    if approval.take_key(text).is_ok() {
        assert!(approval.code().is_some(), "keys exchanged, so a code shows");
        assert!(
            approval.check_mac("approver keys", text).is_err(),
            "a forged MAC passed"
        );
    }
}
