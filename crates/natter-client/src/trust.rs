//! Whom this device trusts, and the identity it belongs to.
//!
//! Every user has a cross-signing identity (natter-crypto's `cross_signing`): the first device
//! of an account creates it, and it signs each device the user approves. This device gives keys
//! only to devices their user's identity signed, checks that identity against the one it pinned
//! on first contact (or verified by comparing safety numbers), and tells the person when an
//! identity changes or a device was left out ([`Notice`]). A verified user whose identity
//! changes gets nothing until verified again.
//!
//! A new device of the user is approved with the recovery key written down at the first login
//! ([`Device::recover`]): it then holds the identity's private keys and the backup key, signs
//! itself, and reads the room keys every device of the user backs up, so it reads the history
//! from before it existed.

use std::collections::{BTreeMap, BTreeSet};

use natter_crypto::backup::{IDENTITY_ITEM, ROOM_PREFIX, TRUST_PREFIX};
use natter_crypto::{
    DeviceTrust, InboundRoomSession, RecoveryKey, Secrets, UserIdentity, VerifiedDevice,
    safety_number,
};
use natter_proto::keys::BackupItem;
use natter_proto::{DeviceId, UserId};
use serde::{Deserialize, Serialize};

use crate::device::State;
use crate::store::StoredMessage;
use crate::{ClientError, Device};

/// The store's key for the pins, the identity's secrets, the recovery key not yet shown, the
/// room keys not yet backed up, and the notices.
const PINS: &str = "pins";
const SECRETS: &str = "secrets";
const RECOVERY_KEY: &str = "recovery_key";
const BACKUP_DUE: &str = "backup_due";
const NOTICES: &str = "notices";
const NOTICES_NEW: &str = "notices_new";
/// The notices kept, newest last.
const NOTICES_KEPT: usize = 200;

/// Something the person should know about whom their messages reach.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// A user's safety number changed: their identity was replaced (they reset it, or a server
    /// is lying). If they were verified, nothing is sent to them until verified again.
    SafetyNumberChanged {
        /// Whose.
        user_id: UserId,
        /// Whether this device had verified the identity that was replaced.
        was_verified: bool,
    },
    /// Devices of another user that their identity does not vouch for: they were given no keys.
    DevicesSkipped {
        /// Whose.
        user_id: UserId,
        /// Which.
        devices: Vec<DeviceId>,
    },
    /// A device logged in to this account that none of its devices approved: it gets no keys
    /// until it is approved (with the recovery key), and may be removed.
    NewDevice {
        /// The device.
        device_id: DeviceId,
        /// The name it gave at login.
        name: String,
    },
}

impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SafetyNumberChanged {
                user_id,
                was_verified: true,
            } => write!(
                f,
                "the safety number of {user_id} changed since you verified it: nothing is sent to them until you verify again"
            ),
            Self::SafetyNumberChanged { user_id, .. } => {
                write!(f, "the safety number of {user_id} changed")
            }
            Self::DevicesSkipped { user_id, devices } => write!(
                f,
                "{} device(s) of {user_id} are not signed by their identity and got no keys",
                devices.len()
            ),
            Self::NewDevice { device_id, name } => write!(
                f,
                "a new device '{name}' ({device_id}) logged in to your account and is not approved"
            ),
        }
    }
}

/// How far this device trusts a user's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustLevel {
    /// Not seen yet, or the user has no identity.
    Unknown,
    /// Pinned on first contact (trust on first use), not verified.
    Pinned,
    /// Verified by comparing safety numbers.
    Verified,
    /// Changed after it was verified: nothing is sent until it is verified again.
    Changed,
}

/// One user's pinned identity.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Pin {
    master_key: String,
    verified: bool,
    /// Changed after it was verified: sending is refused until verified again.
    changed_since_verified: bool,
    /// Devices already reported as left out.
    #[serde(default)]
    told: BTreeSet<DeviceId>,
}

/// A user's verification as carried to this user's other devices through the backup.
#[derive(Serialize, Deserialize)]
struct Verified {
    user_id: UserId,
    master_key: String,
}

impl Pin {
    fn level(&self) -> TrustLevel {
        match (self.changed_since_verified, self.verified) {
            (true, _) => TrustLevel::Changed,
            (false, true) => TrustLevel::Verified,
            (false, false) => TrustLevel::Pinned,
        }
    }
}

impl State {
    fn pins(&self) -> Result<BTreeMap<UserId, Pin>, ClientError> {
        Ok(self
            .store
            .get(PINS)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default())
    }

    fn save_pins(&self, pins: &BTreeMap<UserId, Pin>) -> Result<(), ClientError> {
        let json = serde_json::to_string(pins).expect("pins serialize");
        self.store.set(PINS, &json)
    }

    /// Records a notice: in the list of all, in the list not yet taken by a one-shot client,
    /// and for the live connection to report.
    fn note(&mut self, notice: Notice) -> Result<(), ClientError> {
        for list in [NOTICES, NOTICES_NEW] {
            let mut notices = self.notice_list(list)?;
            notices.push(notice.clone());
            let excess = notices.len().saturating_sub(NOTICES_KEPT);
            notices.drain(..excess);
            self.store.set(
                list,
                &serde_json::to_string(&notices).expect("notices serialize"),
            )?;
        }
        self.fresh_notices.push(notice);
        Ok(())
    }

    fn notice_list(&self, list: &str) -> Result<Vec<Notice>, ClientError> {
        Ok(self
            .store
            .get(list)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default())
    }

    /// Loads the identity's secrets, if this device holds them.
    pub(crate) fn load_secrets(&mut self) -> Result<(), ClientError> {
        self.secrets = match self.store.get(SECRETS)? {
            Some(json) => Some(Secrets::from_json(&json)?),
            None => None,
        };
        Ok(())
    }

    /// Queues a room key for the backup.
    pub(crate) fn back_up_later(&self, session_id: &str) -> Result<(), ClientError> {
        let mut due = self.backup_due()?;
        due.insert(session_id.to_owned());
        self.store.set(
            BACKUP_DUE,
            &serde_json::to_string(&due).expect("ids serialize"),
        )
    }

    fn backup_due(&self) -> Result<BTreeSet<String>, ClientError> {
        Ok(self
            .store
            .get(BACKUP_DUE)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default())
    }
}

impl Device {
    /// Sets up this new device's place in its user's identity: the account's first device
    /// creates the identity, signs itself, backs the secrets up under a new recovery key (kept
    /// until [`Device::take_recovery_key`]); a later device pins the identity it is shown and
    /// waits for approval ([`Device::recover`]).
    pub(crate) async fn join_identity(&self) -> Result<(), ClientError> {
        let me = self.user_id();
        let session = &self.inner.session;
        let listing = session.devices_and_identity(me).await?;
        let mut state = self.lock().await;
        if let Some(keys) = listing.identity {
            let identity = UserIdentity::check(me, &keys)?;
            let mut pins = state.pins()?;
            pins.insert(me, pin(&identity, false));
            return state.save_pins(&pins);
        }
        let secrets = Secrets::generate();
        let recovery = RecoveryKey::generate();
        session
            .publish_identity(&secrets.identity.public(me))
            .await?;
        session
            .put_backup_item(&recovery.seal_secrets(me, &secrets))
            .await?;
        state.store.set(RECOVERY_KEY, &recovery.to_display())?;
        self.approve_self(&mut state, secrets).await
    }

    /// Signs this device with the identity's secrets, and keeps them.
    pub(crate) async fn approve_self(
        &self,
        state: &mut State,
        secrets: Secrets,
    ) -> Result<(), ClientError> {
        let (me, device) = (self.user_id(), self.device_id());
        let keys = state.account.identity_keys(me, device);
        let signature = secrets.identity.sign_device(me, device, &keys);
        self.inner.session.sign_device(device, &signature).await?;
        let mut pins = state.pins()?;
        let master_key = secrets.identity.master_key();
        pins.insert(
            me,
            Pin {
                master_key,
                verified: true,
                changed_since_verified: false,
                told: BTreeSet::new(),
            },
        );
        state.save_pins(&pins)?;
        state.store.set(SECRETS, &secrets.to_json())?;
        state.secrets = Some(secrets);
        Ok(())
    }

    /// The recovery key made at this account's first login, once: write it down, it is the only
    /// way to approve a new device when no other is at hand, and to keep the history readable
    /// after losing every device. `None` after the first call, and on later devices.
    ///
    /// # Errors
    /// The store cannot be read or written.
    pub async fn take_recovery_key(&self) -> Result<Option<String>, ClientError> {
        let state = self.lock().await;
        let key = state.store.get(RECOVERY_KEY)?;
        if key.is_some() {
            state.store.set(RECOVERY_KEY, "")?;
        }
        Ok(key.filter(|k| !k.is_empty()))
    }

    /// Whether this device is approved: it holds its user's identity and signed itself with it.
    pub async fn is_approved(&self) -> bool {
        self.lock().await.secrets.is_some()
    }

    /// Approves this device with the recovery key: opens the identity's secrets in the backup,
    /// checks they are the identity the server shows, signs this device, and restores the room
    /// keys and verifications in the backup, so earlier messages become readable. Returns the
    /// stored messages that became readable.
    ///
    /// # Errors
    /// A mistyped or wrong recovery key ([`ClientError::Crypto`]), no backup
    /// ([`ClientError::NoBackup`]), an identity on the server that is not the one in the backup
    /// ([`ClientError::IdentityMismatch`]), or the server cannot be reached.
    pub async fn recover(&self, recovery_key: &str) -> Result<Vec<StoredMessage>, ClientError> {
        let me = self.user_id();
        let key = RecoveryKey::parse(recovery_key)?;
        let session = &self.inner.session;
        let items = session.backup_items("").await?;
        let item = items
            .iter()
            .find(|item| item.name == IDENTITY_ITEM)
            .ok_or(ClientError::NoBackup)?;
        let secrets = key.open_secrets(me, item)?;
        let listing = session.devices_and_identity(me).await?;
        if listing.identity.map(|i| i.master_key) != Some(secrets.identity.master_key()) {
            return Err(ClientError::IdentityMismatch);
        }
        let mut state = self.lock().await;
        self.approve_self(&mut state, secrets).await?;
        self.restore(&mut state, &items)
    }

    /// Takes in the backup's room keys and verifications; returns the stored messages that
    /// became readable.
    pub(crate) fn restore(
        &self,
        state: &mut State,
        items: &[BackupItem],
    ) -> Result<Vec<StoredMessage>, ClientError> {
        let me = self.user_id();
        let Some(secrets) = &state.secrets else {
            return Ok(Vec::new());
        };
        let mut sessions = Vec::new();
        let mut verified = Vec::new();
        for item in items {
            if item.name.starts_with(ROOM_PREFIX) {
                match secrets.backup.open_room_key(me, item) {
                    Ok(session) => sessions.push(session),
                    Err(error) => tracing::warn!(%error, "skipped a backed-up room key"),
                }
            } else if item.name.starts_with(TRUST_PREFIX)
                && let Ok(json) = secrets.backup.open_trust(me, item)
                && let Ok(entry) = serde_json::from_str::<Verified>(&json)
            {
                verified.push(entry);
            }
        }
        let mut pins = state.pins()?;
        for entry in verified {
            match pins.get_mut(&entry.user_id) {
                Some(pin) if pin.master_key != entry.master_key => {}
                Some(pin) => {
                    pin.verified = true;
                    pin.changed_since_verified = false;
                }
                None => {
                    pins.insert(entry.user_id, pin_key(entry.master_key, true));
                }
            }
        }
        state.save_pins(&pins)?;
        let mut readable = Vec::new();
        for session in sessions {
            readable.extend(self.keep_inbound(state, &session, false)?);
        }
        Ok(readable)
    }

    /// Keeps a room key unless a better one (reaching further back) is kept; when kept, retries
    /// the messages waiting for it and (if `back_up`) queues it for the backup. Returns the
    /// messages it made readable.
    pub(crate) fn keep_inbound(
        &self,
        state: &State,
        session: &InboundRoomSession,
        back_up: bool,
    ) -> Result<Vec<StoredMessage>, ClientError> {
        let session_id = session.session_id();
        let key = &self.inner.key;
        if let Some(existing) = state.store.inbound(&session_id)? {
            let existing = InboundRoomSession::from_pickle(&existing, key)?;
            if existing.first_known_index() <= session.first_known_index() {
                return Ok(Vec::new());
            }
        }
        state
            .store
            .save_inbound(&session_id, session.conversation_id(), &session.pickle(key))?;
        if back_up {
            state.back_up_later(&session_id)?;
        }
        self.retry_pending(state, &session_id)
    }

    /// Sends the room keys queued for the backup, if this device holds the backup key. A
    /// failure leaves them queued for the next time.
    pub(crate) async fn back_up_keys(&self) -> Result<(), ClientError> {
        let state = self.lock().await;
        let Some(secrets) = &state.secrets else {
            return Ok(());
        };
        let due = state.backup_due()?;
        if due.is_empty() {
            return Ok(());
        }
        let me = self.user_id();
        for session_id in &due {
            let Some(pickle) = state.store.inbound(session_id)? else {
                continue;
            };
            let session = InboundRoomSession::from_pickle(&pickle, &self.inner.key)?;
            self.inner
                .session
                .put_backup_item(&secrets.backup.seal_room_key(me, &session))
                .await?;
        }
        state.store.set(BACKUP_DUE, "[]")
    }

    /// The master key of this user's identity as pinned here (at login, or when approved).
    pub(crate) fn pinned_own_master(&self, state: &State) -> Result<Option<String>, ClientError> {
        Ok(state
            .pins()?
            .remove(&self.user_id())
            .map(|pin| pin.master_key))
    }

    /// Brings what this device knows of its own account up to date as it connects: takes in
    /// the verifications this user's other devices made (from the backup), and looks at this
    /// user's devices, so a device nobody approved is told at once ([`Notice::NewDevice`]).
    pub(crate) async fn refresh_trust(&self) -> Result<(), ClientError> {
        if self.is_approved().await {
            let items = self.inner.session.backup_items(TRUST_PREFIX).await?;
            let mut state = self.lock().await;
            self.restore(&mut state, &items)?;
        }
        let mut state = self.lock().await;
        match self.trusted_devices(&mut state, self.user_id()).await {
            // Recorded as a notice; nothing more to do here.
            Err(ClientError::IdentityChanged(_)) => Ok(()),
            other => other.map(drop),
        }
    }

    /// The devices of `user` that may be given keys: those signed by the user's identity, once
    /// that identity was checked against the pin. Records notices for a changed identity and
    /// for devices left out. None when the server does not show this user's devices (404).
    ///
    /// # Errors
    /// [`ClientError::IdentityChanged`] for another user verified earlier whose identity
    /// changed since; the server cannot be reached.
    pub(crate) async fn trusted_devices(
        &self,
        state: &mut State,
        user: UserId,
    ) -> Result<Vec<VerifiedDevice>, ClientError> {
        let listing = match self.inner.session.devices_and_identity(user).await {
            Err(e) if e.status() == Some(404) => return Ok(Vec::new()),
            listing => listing?,
        };
        let mut pins = state.pins()?;
        let Some(identity) = listing
            .identity
            .and_then(|keys| UserIdentity::check(user, &keys).ok())
        else {
            // A pinned identity that is gone (or no longer checks) is a change too: a verified
            // user's is refused like any other change.
            if let Some(pinned) = pins.get_mut(&user)
                && pinned.verified
            {
                pinned.verified = false;
                pinned.changed_since_verified = true;
                state.save_pins(&pins)?;
                state.note(Notice::SafetyNumberChanged {
                    user_id: user,
                    was_verified: true,
                })?;
            }
            return match pins.get(&user) {
                Some(pinned) if pinned.changed_since_verified => {
                    Err(ClientError::IdentityChanged(user))
                }
                _ => Ok(Vec::new()),
            };
        };
        let admitted = self.check_pin(state, &mut pins, &identity);
        let mut trusted = Vec::new();
        let mut skipped = Vec::new();
        if admitted.is_ok() {
            for device in &listing.devices {
                match identity.judge(device) {
                    DeviceTrust::Signed(verified) => trusted.push(verified),
                    DeviceTrust::Unsigned(unsigned) => skipped.push(unsigned.device_id),
                    DeviceTrust::Invalid => {}
                }
            }
        }
        // The cache of signed devices (for incoming key shares) is what was judged just now.
        state.store.replace_devices(user, &trusted)?;
        if let Some(pin) = pins.get_mut(&user) {
            let untold: Vec<DeviceId> = skipped
                .into_iter()
                .filter(|d| *d != self.device_id() && pin.told.insert(*d))
                .collect();
            for device_id in &untold {
                if user == self.user_id() {
                    let name = listing
                        .devices
                        .iter()
                        .find(|d| d.device_id == *device_id)
                        .map(|d| d.name.clone())
                        .unwrap_or_default();
                    state.note(Notice::NewDevice {
                        device_id: *device_id,
                        name,
                    })?;
                }
            }
            if user != self.user_id() && !untold.is_empty() {
                state.note(Notice::DevicesSkipped {
                    user_id: user,
                    devices: untold,
                })?;
            }
        }
        state.save_pins(&pins)?;
        admitted.map(|()| trusted)
    }

    /// Checks `identity` against its user's pin (pinning it on first sight). A change is
    /// noted; it is refused for a user verified before (and for this user's own identity when
    /// this device holds another).
    fn check_pin(
        &self,
        state: &mut State,
        pins: &mut BTreeMap<UserId, Pin>,
        identity: &UserIdentity,
    ) -> Result<(), ClientError> {
        let user = identity.user_id;
        let own_master = state.secrets.as_ref().map(|s| s.identity.master_key());
        if user == self.user_id()
            && let Some(own) = own_master
        {
            if own == identity.master_key {
                return Ok(());
            }
            // The server shows another identity than the one this device holds.
            if pins.get(&user).is_some_and(|p| p.master_key == own) {
                pins.insert(user, pin_key(identity.master_key.clone(), false));
                state.note(Notice::SafetyNumberChanged {
                    user_id: user,
                    was_verified: true,
                })?;
            }
            return Err(ClientError::IdentityChanged(user));
        }
        let Some(pinned) = pins.get_mut(&user) else {
            pins.insert(user, pin(identity, false));
            return Ok(());
        };
        if pinned.master_key == identity.master_key {
            return if pinned.changed_since_verified {
                Err(ClientError::IdentityChanged(user))
            } else {
                Ok(())
            };
        }
        // Once verified, a user stays "changed" through any number of further changes (and a
        // change back) until verified again: only confirm_verified clears it.
        let was_verified = pinned.verified || pinned.changed_since_verified;
        *pinned = pin(identity, false);
        pinned.changed_since_verified = was_verified;
        state.note(Notice::SafetyNumberChanged {
            user_id: user,
            was_verified,
        })?;
        if was_verified {
            Err(ClientError::IdentityChanged(user))
        } else {
            Ok(())
        }
    }

    /// The safety number of this user and `peer`: 60 digits over both identities' master keys,
    /// the same on both sides and unchanged when either adds a device. This user's master key
    /// is the one this device holds, never the server's word; `peer`'s is the one the server
    /// shows, pinned here if it is the first seen (a change is noted). Compare it with theirs
    /// (read out, or side by side), then [`Device::confirm_verified`].
    ///
    /// # Errors
    /// This device is not approved ([`ClientError::NotApproved`]); a user without an identity
    /// ([`ClientError::NoIdentity`]); the server refuses (`not_found` when not connected) or
    /// cannot be reached.
    pub async fn safety_number(&self, peer: UserId) -> Result<String, ClientError> {
        let theirs = self.current_identity(peer).await?;
        let mut state = self.lock().await;
        let mine = own_master(&state)?;
        let mut pins = state.pins()?;
        // Pinned (or its change noted) so that a confirmation checks against what was shown;
        // a refusal to send changes nothing about the number.
        let _ = self.check_pin(&mut state, &mut pins, &theirs);
        state.save_pins(&pins)?;
        Ok(safety_number(
            (self.user_id(), &mine),
            (peer, &theirs.master_key),
        ))
    }

    /// A user's identity as the server shows it now, checked.
    async fn current_identity(&self, user: UserId) -> Result<UserIdentity, ClientError> {
        let listing = self.inner.session.devices_and_identity(user).await?;
        let keys = listing.identity.ok_or(ClientError::NoIdentity(user))?;
        Ok(UserIdentity::check(user, &keys)?)
    }

    /// Marks `peer` verified after the safety numbers matched, and returns the number confirmed.
    /// Only the identity pinned here (the one [`Device::safety_number`] showed) is confirmed:
    /// if the server now shows another, the change is noted and nothing is confirmed. Carried
    /// to this user's other approved devices through the backup.
    ///
    /// # Errors
    /// [`ClientError::NumberChanged`] when the identity changed since it was shown; as
    /// [`Device::safety_number`] otherwise.
    pub async fn confirm_verified(&self, peer: UserId) -> Result<String, ClientError> {
        let identity = self.current_identity(peer).await?;
        let mut state = self.lock().await;
        let mine = own_master(&state)?;
        let mut pins = state.pins()?;
        if pins
            .get(&peer)
            .is_some_and(|pinned| pinned.master_key != identity.master_key)
        {
            let _ = self.check_pin(&mut state, &mut pins, &identity);
            state.save_pins(&pins)?;
            return Err(ClientError::NumberChanged(peer));
        }
        let entry = pins.entry(peer).or_insert_with(|| pin(&identity, false));
        entry.verified = true;
        entry.changed_since_verified = false;
        state.save_pins(&pins)?;
        let verified = Verified {
            user_id: peer,
            master_key: identity.master_key.clone(),
        };
        let item = state.secrets.as_ref().map(|secrets| {
            let json = serde_json::to_string(&verified).expect("a verification serializes");
            secrets.backup.seal_trust(self.user_id(), peer, &json)
        });
        drop(state);
        if let Some(item) = item {
            self.inner.session.put_backup_item(&item).await?;
        }
        Ok(safety_number(
            (self.user_id(), &mine),
            (peer, &identity.master_key),
        ))
    }

    /// How far this device trusts `user`'s identity (as pinned here; the server is not asked).
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn trust_level(&self, user: UserId) -> Result<TrustLevel, ClientError> {
        let state = self.lock().await;
        Ok(state
            .pins()?
            .get(&user)
            .map_or(TrustLevel::Unknown, Pin::level))
    }

    /// Every notice this device recorded (the newest 200), oldest first.
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn notices(&self) -> Result<Vec<Notice>, ClientError> {
        self.lock().await.notice_list(NOTICES)
    }
}

/// One device of a user as this device judges it ([`Device::device_list`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceStatus {
    /// The device.
    pub device_id: DeviceId,
    /// The name it gave at login.
    pub name: String,
    /// Its Ed25519 key, if it published valid keys.
    pub ed25519: Option<String>,
    /// Whether its user's identity signed it (only such devices are given keys).
    pub signed: bool,
}

impl Device {
    /// A user's devices (this user's own by default) and whether their identity signed each.
    /// Shows what the server lists; only signed devices are ever given keys.
    ///
    /// # Errors
    /// The server refuses (`not_found` when not connected) or cannot be reached.
    pub async fn device_list(&self, user: UserId) -> Result<Vec<DeviceStatus>, ClientError> {
        let listing = self.inner.session.devices_and_identity(user).await?;
        let identity = listing
            .identity
            .and_then(|keys| UserIdentity::check(user, &keys).ok());
        Ok(listing
            .devices
            .iter()
            .map(|device| {
                let judged = identity.as_ref().map(|i| i.judge(device));
                let (ed25519, signed) = match judged {
                    Some(DeviceTrust::Signed(d)) => (Some(d.ed25519), true),
                    Some(DeviceTrust::Unsigned(d)) => (Some(d.ed25519), false),
                    _ => (None, false),
                };
                DeviceStatus {
                    device_id: device.device_id,
                    name: device.name.clone(),
                    ed25519,
                    signed,
                }
            })
            .collect())
    }

    /// The notices recorded since the last call (for a one-shot client to print).
    ///
    /// # Errors
    /// The store cannot be read or written.
    pub async fn take_new_notices(&self) -> Result<Vec<Notice>, ClientError> {
        let state = self.lock().await;
        let new = state.notice_list(NOTICES_NEW)?;
        state.store.set(NOTICES_NEW, "[]")?;
        Ok(new)
    }
}

/// The master key of the identity this device holds.
fn own_master(state: &State) -> Result<String, ClientError> {
    state
        .secrets
        .as_ref()
        .map(|secrets| secrets.identity.master_key())
        .ok_or(ClientError::NotApproved)
}

fn pin(identity: &UserIdentity, verified: bool) -> Pin {
    pin_key(identity.master_key.clone(), verified)
}

fn pin_key(master_key: String, verified: bool) -> Pin {
    Pin {
        master_key,
        verified,
        changed_since_verified: false,
        told: BTreeSet::new(),
    }
}
