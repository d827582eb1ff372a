//! Removing one of this user's devices.
//!
//! An unapproved device holds none of the identity's secrets: removing it logs it out. An
//! approved one holds the self-signing key and the backup keys, so removing it also rotates
//! them, with the recovery key (which opens the master key; no device keeps the master key):
//! a new self-signing key certified by the same master key (contacts' safety numbers stay), every
//! remaining approved device signed again, a new backup key for what is backed up from now on,
//! the recovery item sealed again, and the new secrets sent to the remaining approved devices over
//! their pairwise sessions. The removed device's copies then sign nothing anyone accepts and open
//! nothing backed up later.

use std::collections::BTreeSet;

use natter_crypto::approval::ApprovalStep;
use natter_crypto::backup::IDENTITY_ITEM;
use natter_crypto::{DeviceTrust, RecoveryKey, Secrets, UserIdentity, VerifiedDevice};
use natter_proto::DeviceId;
use natter_proto::ws::ClientFrame;
use serde::{Deserialize, Serialize};

use crate::device::State;
use crate::recovery::SECRETS;
use crate::{ClientError, Device};

/// The store's key for a rotation not finished yet.
const ROTATION: &str = "rotation";

/// What removing a device did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removal {
    /// Whether the removed device was approved (and so held the identity's secrets).
    pub was_approved: bool,
    /// The approved devices that stay, signed again with the new self-signing key and sent the
    /// new secrets (empty when the removed device was not approved).
    pub kept: Vec<DeviceId>,
}

impl Device {
    /// Removes one of this user's other devices. An approved one needs the recovery key, which
    /// rotates the secrets it held (see the module docs); the remaining approved devices learn
    /// them as this device next connects.
    ///
    /// # Errors
    /// [`ClientError::RecoveryKeyNeeded`] for an approved device without the recovery key;
    /// [`ClientError::NoSuchDevice`] for this device or one that is not this user's; a wrong
    /// recovery key; [`ClientError::NotApproved`] when this device holds no secrets to rotate;
    /// the server cannot be reached.
    pub async fn remove_device(
        &self,
        device: DeviceId,
        recovery_key: Option<&str>,
    ) -> Result<Removal, ClientError> {
        let me = self.user_id();
        let session = &self.inner.session;
        let listing = session.devices_and_identity(me).await?;
        if device == self.device_id() || !listing.devices.iter().any(|d| d.device_id == device) {
            return Err(ClientError::NoSuchDevice(device));
        }
        let identity = listing
            .identity
            .as_ref()
            .and_then(|keys| UserIdentity::check(me, keys).ok());
        let signed: Vec<VerifiedDevice> = listing
            .devices
            .iter()
            .filter_map(|d| match identity.as_ref().map(|i| i.judge(d)) {
                Some(DeviceTrust::Signed(verified)) => Some(verified),
                _ => None,
            })
            .collect();
        if !signed.iter().any(|d| d.device_id == device) {
            session.delete_device(device).await?;
            return Ok(Removal {
                was_approved: false,
                kept: Vec::new(),
            });
        }
        let recovery_key = recovery_key.ok_or(ClientError::RecoveryKeyNeeded)?;
        let key = RecoveryKey::parse(recovery_key)?;
        let mut state = self.lock().await;
        let secrets = state.secrets.as_ref().ok_or(ClientError::NotApproved)?;
        let item = session
            .backup_item(IDENTITY_ITEM)
            .await?
            .ok_or(ClientError::NoBackup)?;
        let (master, _) = key.open_secrets(me, &item)?;
        if master.public_key() != secrets.identity.master_key() {
            return Err(ClientError::IdentityMismatch);
        }
        let rotated = secrets.rotate(me, &master);
        let kept: Vec<VerifiedDevice> = signed
            .into_iter()
            .filter(|d| d.device_id != device)
            .collect();
        session.delete_device(device).await?;
        // The recovery item first: it is what decides the identity from now on (`recover`
        // publishes what it holds), so an interrupted removal is finished by the next connect
        // here or by the recovery key anywhere, and never falls back to the removed device's
        // keys.
        session
            .put_backup_item(&key.seal_secrets(me, &master, &rotated))
            .await?;
        let pending = Rotation {
            sign: kept
                .iter()
                .map(|d| (d.device_id, d.curve25519.clone(), d.ed25519.clone()))
                .collect(),
            tell: kept
                .iter()
                .map(|d| d.device_id)
                .filter(|id| *id != self.device_id())
                .collect(),
        };
        state.store.set(SECRETS, &rotated.to_json())?;
        pending.save(&state)?;
        state.secrets = Some(rotated);
        self.finish_rotation(&state).await?;
        Ok(Removal {
            was_approved: true,
            kept: kept.iter().map(|d| d.device_id).collect(),
        })
    }

    /// Carries on a rotation this device started: publishes the new self-signing key and signs
    /// the approved devices that stay (with the keys they had when the rotation started).
    pub(crate) async fn finish_rotation(&self, state: &State) -> Result<(), ClientError> {
        let mut pending = Rotation::load(state)?;
        let Some(secrets) = &state.secrets else {
            return Ok(());
        };
        if pending.sign.is_empty() {
            return Ok(());
        }
        let (me, session) = (self.user_id(), &self.inner.session);
        session.publish_identity(secrets.identity.public()).await?;
        for (device, curve25519, ed25519) in &pending.sign {
            let signature = secrets
                .identity
                .sign_device_keys(me, *device, curve25519, ed25519);
            match session.sign_device(*device, &signature).await {
                // Removed meanwhile: nothing to sign.
                Err(error) if error.status() == Some(404) => {}
                other => other?,
            }
        }
        pending.sign.clear();
        pending.save(state)
    }

    /// The frames that hand the rotated secrets to the remaining approved devices, once; a
    /// device no longer signed is skipped.
    pub(crate) async fn rotation_frames(&self) -> Result<Vec<ClientFrame>, ClientError> {
        let mut state = self.lock().await;
        let mut pending = Rotation::load(&state)?;
        if pending.tell.is_empty() || !pending.sign.is_empty() {
            return Ok(Vec::new());
        }
        let Some(secrets) = state.secrets.as_ref().map(Secrets::to_json) else {
            return Ok(Vec::new());
        };
        let devices = match self.trusted_devices(&mut state, self.user_id()).await {
            Err(ClientError::IdentityChanged(_)) => Vec::new(),
            devices => devices?,
        };
        let mut frames = Vec::new();
        for peer in devices
            .iter()
            .filter(|d| pending.tell.contains(&d.device_id))
        {
            let step = ApprovalStep::Rotated {
                flow_id: uuid::Uuid::now_v7().to_string(),
                secrets: secrets.to_string(),
            };
            frames.push(self.step_frame(&mut state, peer, &step).await?);
        }
        pending.tell.clear();
        pending.save(&state)?;
        Ok(frames)
    }

    /// Takes rotated secrets from another approved device of this user: they must be the
    /// identity the server shows now (same master key as pinned, the new self-signing key), and
    /// the sender must be signed by it. The backup keys this device held are kept for opening.
    pub(crate) async fn take_rotated_secrets(
        &self,
        state: &mut State,
        sender: DeviceId,
        json: &str,
    ) -> Result<(), ClientError> {
        let me = self.user_id();
        let mut rotated = Secrets::from_json(json)?;
        let published = self.inner.session.devices_and_identity(me).await?.identity;
        let current = published.as_ref() == Some(rotated.identity.public());
        let pinned = self.pinned_own_master(state)? == Some(rotated.identity.master_key());
        if !current || !pinned || self.signed_own_device(state, sender).await?.is_none() {
            tracing::warn!(%sender, "ignored rotated secrets that are not the current identity");
            return Ok(());
        }
        if let Some(held) = state.secrets.take() {
            rotated.backup.keep_earlier(held.backup);
        }
        state.store.set(SECRETS, &rotated.to_json())?;
        state.secrets = Some(rotated);
        Ok(())
    }
}

/// A rotation this device started and has not finished.
#[derive(Default, Serialize, Deserialize)]
struct Rotation {
    /// The approved devices to sign with the new self-signing key, with the keys they had.
    sign: Vec<(DeviceId, String, String)>,
    /// The approved devices to send the new secrets to.
    tell: BTreeSet<DeviceId>,
}

impl Rotation {
    fn load(state: &State) -> Result<Self, ClientError> {
        Ok(state
            .store
            .get(ROTATION)?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default())
    }

    fn save(&self, state: &State) -> Result<(), ClientError> {
        let json = serde_json::to_string(self).expect("a rotation serializes");
        state.store.set(ROTATION, &json)
    }
}
