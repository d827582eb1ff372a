//! Whom this device trusts, and the identity it belongs to.
//!
//! Every user has a cross-signing identity (natter-crypto's `cross_signing`): the first device
//! of an account creates it, and it signs each device the user approves. This device gives keys
//! only to devices their user's identity signed, checks that identity against the one it pinned
//! on first contact (or verified by comparing safety numbers), and tells the person when an
//! identity changes or a device was left out ([`Notice`]). A verified user whose identity
//! changes gets nothing until verified again.
//!
//! How a new device of the user joins the identity and reads the history is in `recovery` and
//! `approval`; the notices told to the person are in `notices`.

use std::collections::{BTreeMap, BTreeSet};

use natter_crypto::backup::TRUST_PREFIX;
use natter_crypto::{DeviceTrust, UserIdentity, VerifiedDevice, safety_number};
use natter_proto::{ConversationId, DeviceId, UserId};
use serde::{Deserialize, Serialize};

use crate::device::State;
pub use crate::notices::Notice;
use crate::{ClientError, Device};

/// The store's key for the pins, and the prefix of each conversation's members as this device
/// last sent to them.
const PINS: &str = "pins";
const MEMBERS_PREFIX: &str = "members:";

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
pub(crate) struct Pin {
    pub(crate) master_key: String,
    pub(crate) verified: bool,
    /// Changed after it was verified: sending is refused until verified again.
    pub(crate) changed_since_verified: bool,
    /// Devices already reported as left out.
    #[serde(default)]
    pub(crate) told: BTreeSet<DeviceId>,
}

/// A user's verification as carried to this user's other devices through the backup.
#[derive(Serialize, Deserialize)]
pub(crate) struct Verified {
    pub(crate) user_id: UserId,
    pub(crate) master_key: String,
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
    pub(crate) fn pins(&self) -> Result<BTreeMap<UserId, Pin>, ClientError> {
        Ok(self
            .store
            .get(PINS)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default())
    }

    pub(crate) fn save_pins(&self, pins: &BTreeMap<UserId, Pin>) -> Result<(), ClientError> {
        let json = serde_json::to_string(pins).expect("pins serialize");
        self.store.set(PINS, &json)
    }
}

impl Device {
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
        // Changes made while this device was away were not told: fetch lists afresh.
        self.forget_device_lists(None);
        {
            let state = self.lock().await;
            self.finish_identity(&state).await?;
            self.finish_rotation(&state).await?;
        }
        self.restore_if_due().await?;
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
        let Some(listing) = self.device_listing(user).await? else {
            return Ok(Vec::new());
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
            secrets
                .backup
                .current()
                .seal_trust(self.user_id(), peer, &json)
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
    /// Compares a conversation's members, as the server lists them now, with those this device
    /// last sent to, and records who was added since ([`Notice::MembersAdded`]); the first send
    /// to a conversation only records them.
    pub(crate) fn note_new_members(
        &self,
        state: &mut State,
        conversation: ConversationId,
        members: &BTreeSet<UserId>,
    ) -> Result<(), ClientError> {
        let key = format!("{MEMBERS_PREFIX}{conversation}");
        let known: Option<BTreeSet<UserId>> = state
            .store
            .get(&key)?
            .and_then(|json| serde_json::from_str(&json).ok());
        if known.as_ref() == Some(members) {
            return Ok(());
        }
        if let Some(known) = known {
            let added: Vec<UserId> = members
                .difference(&known)
                .copied()
                .filter(|user| *user != self.user_id())
                .collect();
            if !added.is_empty() {
                state.note(Notice::MembersAdded {
                    conversation_id: conversation,
                    user_ids: added,
                })?;
            }
        }
        let json = serde_json::to_string(members).expect("ids serialize");
        state.store.set(&key, &json)
    }

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
}

/// The master key of the identity this device holds.
fn own_master(state: &State) -> Result<String, ClientError> {
    state
        .secrets
        .as_ref()
        .map(|secrets| secrets.identity.master_key())
        .ok_or(ClientError::NotApproved)
}

pub(crate) fn pin(identity: &UserIdentity, verified: bool) -> Pin {
    pin_key(identity.master_key.clone(), verified)
}

pub(crate) fn pin_key(master_key: String, verified: bool) -> Pin {
    Pin {
        master_key,
        verified,
        changed_since_verified: false,
        told: BTreeSet::new(),
    }
}
