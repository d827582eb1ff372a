//! How a device joins its user's identity, and the key backup: the first device creates the
//! identity and a recovery key; a later one is approved with that key ([`Device::recover`]) or
//! from an approved device (`approval`), then holds the identity's private keys and the backup
//! key, signs itself, and reads the room keys every device of the user backs up, so it reads the
//! history from before it existed.

use std::collections::BTreeSet;

use natter_crypto::backup::{IDENTITY_ITEM, ROOM_PREFIX, TRUST_PREFIX};
use natter_crypto::{InboundRoomSession, RecoveryKey, Secrets, UserIdentity};
use natter_proto::keys::BackupItem;
use zeroize::Zeroizing;

use crate::device::State;
use crate::store::StoredMessage;
use crate::trust::{Pin, Verified, pin, pin_key};
use crate::{ClientError, Device};

/// The store's keys for the identity's secrets, the recovery key not yet shown, the room keys
/// not yet backed up, a new identity not yet published in full (its sealed recovery item), and
/// a restore from the backup not yet done.
pub(crate) const SECRETS: &str = "secrets";
const RECOVERY_KEY: &str = "recovery_key";
const BACKUP_DUE: &str = "backup_due";
const IDENTITY_DUE: &str = "identity_due";
const RESTORE_DUE: &str = "restore_due";

impl State {
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
        // Everything is kept here before anything is published, so that a failure part way
        // is finished at the next connect ([`Device::finish_identity`]).
        let (master, secrets) = Secrets::generate(me);
        let recovery = RecoveryKey::generate();
        let item = recovery.seal_secrets(me, &master, &secrets);
        state.store.set(RECOVERY_KEY, &recovery.to_display())?;
        state.store.set(
            IDENTITY_DUE,
            &serde_json::to_string(&item).expect("an item serializes"),
        )?;
        self.keep_secrets(&mut state, secrets)?;
        self.finish_identity(&state).await
    }

    /// Starts this user's identity anew, for a user who lost the recovery key (or fears someone
    /// else holds it): a new master key, self-signing key, backup key and recovery key, with the
    /// password asked again. Every other device of the user must be approved again, every
    /// contact is told the safety number changed (a contact who verified it stops sending until
    /// verifying again), and the history in the old backup is gone. Returns the new recovery key
    /// to write down.
    ///
    /// # Errors
    /// A wrong password; the server cannot be reached (nothing changed).
    pub async fn reset_identity(&self, password: &str) -> Result<Zeroizing<String>, ClientError> {
        let me = self.user_id();
        let (master, secrets) = Secrets::generate(me);
        let recovery = RecoveryKey::generate();
        let item = recovery.seal_secrets(me, &master, &secrets);
        let session = &self.inner.session;
        session
            .reset_identity(secrets.identity.public(), password)
            .await?;
        let mut state = self.lock().await;
        self.sign_self(&state, &secrets).await?;
        session.put_backup_item(&item).await?;
        state.store.set(IDENTITY_DUE, "")?;
        self.keep_secrets(&mut state, secrets)?;
        Ok(recovery.to_display())
    }

    /// Publishes the identity this device created, if it has not yet in full: the public keys,
    /// this device's signature and the sealed recovery item.
    pub(crate) async fn finish_identity(&self, state: &State) -> Result<(), ClientError> {
        let Some(item) = state.store.get(IDENTITY_DUE)?.filter(|due| !due.is_empty()) else {
            return Ok(());
        };
        let item: BackupItem = serde_json::from_str(&item)
            .map_err(|e| ClientError::UnknownStoreFormat(format!("a pending identity: {e}")))?;
        let secrets = state.secrets.as_ref().ok_or(ClientError::NotApproved)?;
        let session = &self.inner.session;
        session.publish_identity(secrets.identity.public()).await?;
        self.sign_self(state, secrets).await?;
        session.put_backup_item(&item).await?;
        state.store.set(IDENTITY_DUE, "")
    }

    /// Signs this device with the identity's secrets, and keeps them.
    pub(crate) async fn approve_self(
        &self,
        state: &mut State,
        secrets: Secrets,
    ) -> Result<(), ClientError> {
        self.sign_self(state, &secrets).await?;
        self.keep_secrets(state, secrets)
    }

    async fn sign_self(&self, state: &State, secrets: &Secrets) -> Result<(), ClientError> {
        let (me, device) = (self.user_id(), self.device_id());
        let keys = state.account.identity_keys(me, device);
        let signature = secrets.identity.sign_device(me, device, &keys);
        self.inner.session.sign_device(device, &signature).await
    }

    /// Keeps the identity's secrets, and pins (as verified) the identity they are.
    fn keep_secrets(&self, state: &mut State, secrets: Secrets) -> Result<(), ClientError> {
        let mut pins = state.pins()?;
        let master_key = secrets.identity.master_key();
        pins.insert(
            self.user_id(),
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

    /// Reads the whole backup into this device, if an approval left that to do (it is retried
    /// at every connect until it succeeds).
    pub(crate) async fn restore_if_due(&self) -> Result<(), ClientError> {
        let mut state = self.lock().await;
        if state.store.get(RESTORE_DUE)?.as_deref() == Some("1") {
            self.restore_all(&mut state).await?;
        }
        Ok(())
    }

    /// Reads the whole backup into this device (after an approval); if the backup cannot be
    /// read now, the next connect does it. Returns the stored messages that became readable.
    pub(crate) async fn restore_all(
        &self,
        state: &mut State,
    ) -> Result<Vec<StoredMessage>, ClientError> {
        state.store.set(RESTORE_DUE, "1")?;
        let items = self.inner.session.backup_items("").await?;
        let readable = self.restore(state, &items)?;
        state.store.set(RESTORE_DUE, "")?;
        Ok(readable)
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
        let (_, secrets) = key.open_secrets(me, item)?;
        let listing = session.devices_and_identity(me).await?;
        let published = listing.identity.ok_or(ClientError::IdentityMismatch)?;
        if published.master_key != secrets.identity.master_key() {
            return Err(ClientError::IdentityMismatch);
        }
        // Only the recovery item's self-signing key counts: a removal interrupted after the
        // item was sealed again is finished here, and the server cannot bring back an older one.
        if &published != secrets.identity.public() {
            session.publish_identity(secrets.identity.public()).await?;
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
                .put_backup_item(&secrets.backup.current().seal_room_key(me, &session))
                .await?;
        }
        state.store.set(BACKUP_DUE, "[]")
    }
}
