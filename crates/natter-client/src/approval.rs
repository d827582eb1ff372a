//! Approving a new device of this user from an approved one, by comparing a code both screens
//! show (natter-crypto's `approval`): the approved device signs the new one and hands it the
//! identity's secrets over their pairwise session, and the new one then reads the history from
//! the key backup. Both devices must be live ([`Device::run`]) while it happens.

use std::collections::HashMap;

use natter_crypto::approval::{Approval, ApprovalPayload, ApprovalStep, Side, keys_text};
use natter_crypto::{Secrets, VerifiedDevice, verify_device};
use natter_proto::DeviceId;
use natter_proto::ws::{ClientFrame, ToDeviceIn, ToDeviceOut};

use crate::clock::now_ms;
use crate::device::State;
use crate::e2e::Received;
use crate::{ClientError, Device};

mod flow;

pub use flow::ApprovalEvent;
pub(crate) use flow::{Flow, Flows};

impl Device {
    /// One of this user's devices whose own keys are valid (signed by its user's identity or
    /// not), as the server lists it.
    pub(crate) async fn own_device(
        &self,
        device: DeviceId,
    ) -> Result<Option<VerifiedDevice>, ClientError> {
        let me = self.user_id();
        let devices = self.inner.session.devices(me).await?;
        Ok(devices
            .iter()
            .filter(|d| d.device_id == device)
            .find_map(|d| verify_device(me, d).ok().flatten()))
    }

    /// Starts approving `device`, a new device of this user, from this approved one. Both
    /// devices must be live; each then reports [`ApprovalEvent::Code`]. Returns the flow id.
    ///
    /// # Errors
    /// This device is not approved ([`ClientError::NotApproved`]), `device` is not one of this
    /// user's devices with valid keys ([`ClientError::NoSuchDevice`]), this device is not live
    /// ([`ClientError::NotLive`]), or the server cannot be reached.
    pub async fn approve_device(&self, device: DeviceId) -> Result<String, ClientError> {
        if !self.is_approved().await {
            return Err(ClientError::NotApproved);
        }
        let peer = self
            .own_device(device)
            .await?
            .ok_or(ClientError::NoSuchDevice(device))?;
        let (approval, start) = Approval::start(&self.device_id().to_string(), &device.to_string());
        let flow_id = approval.flow_id().to_owned();
        let mut state = self.lock().await;
        let frame = self.step_frame(&mut state, &peer, &start).await?;
        self.flows()
            .insert(flow_id.clone(), Flow::new(approval, peer));
        drop(state);
        self.send_live(frame)?;
        Ok(flow_id)
    }

    /// Confirms that the code of `flow_id` is the same on both screens. Call it on both
    /// devices; the approval completes once both did. Returns true when this call completed
    /// it (on the approving device, when the new one had confirmed first): no
    /// [`ApprovalEvent::Done`] follows then.
    ///
    /// # Errors
    /// No such approval ([`ClientError::NoSuchApproval`]), this device is not live, or the
    /// server cannot be reached.
    pub async fn confirm_approval(&self, flow_id: &str) -> Result<bool, ClientError> {
        let mut state = self.lock().await;
        let (mac, peer, side, ready) = {
            let mut flows = self.flows();
            let flow = flows
                .get_mut(flow_id)
                .ok_or_else(|| ClientError::NoSuchApproval(flow_id.to_owned()))?;
            let master = state.secrets.as_ref().map(|s| s.identity.master_key());
            let own = keys_text(&state.account.ed25519(), master.as_deref());
            let mac = flow.approval.confirm(&own)?;
            flow.confirmed = true;
            (
                mac,
                flow.peer.clone(),
                flow.approval.side(),
                flow.their_mac_checked,
            )
        };
        let mut frames = vec![self.step_frame(&mut state, &peer, &mac).await?];
        let completes = side == Side::Approver && ready;
        if completes {
            frames.push(self.hand_over(&mut state, flow_id, &peer).await?);
        }
        drop(state);
        for frame in frames {
            self.send_live(frame)?;
        }
        Ok(completes)
    }

    /// Takes one approval step from another device of this user; answers go out with the
    /// returned frames.
    pub(crate) async fn take_approval_step(
        &self,
        state: &mut State,
        item: &ToDeviceIn,
        step: ApprovalStep,
    ) -> Result<Received, ClientError> {
        let mut received = Received::default();
        if item.sender_id != self.user_id() {
            return Ok(received);
        }
        let flow_id = step.flow_id().to_owned();
        match self
            .advance(state, item.sender_device_id, step, &mut received)
            .await
        {
            Ok(()) => {}
            Err(ClientError::Crypto(error)) => {
                self.flows().remove(&flow_id);
                let reason = error.to_string();
                if let Some(peer) = self.own_device(item.sender_device_id).await? {
                    let cancel = ApprovalStep::Cancel {
                        flow_id: flow_id.clone(),
                        reason: reason.clone(),
                    };
                    received
                        .replies
                        .push(self.step_frame(state, &peer, &cancel).await?);
                }
                received
                    .approvals
                    .push(ApprovalEvent::Cancelled { flow_id, reason });
            }
            Err(other) => return Err(other),
        }
        Ok(received)
    }

    async fn advance(
        &self,
        state: &mut State,
        sender: DeviceId,
        step: ApprovalStep,
        received: &mut Received,
    ) -> Result<(), ClientError> {
        let flow_id = step.flow_id().to_owned();
        let known = self.flows().get(&flow_id).map(|f| f.peer.device_id);
        if known.is_some_and(|peer| peer != sender) {
            return Ok(());
        }
        match step {
            ApprovalStep::Start { flow_id } => {
                // Only a device this user's identity signed may approve this one.
                if state.secrets.is_some() || known.is_some() {
                    return Ok(());
                }
                let Some(peer) = self.signed_own_device(state, sender).await? else {
                    return Ok(());
                };
                let (approval, accept) =
                    Approval::accept(&flow_id, &sender.to_string(), &self.device_id().to_string());
                received
                    .replies
                    .push(self.step_frame(state, &peer, &accept).await?);
                self.flows()
                    .insert(flow_id.clone(), Flow::new(approval, peer));
                received.approvals.push(ApprovalEvent::Requested {
                    flow_id,
                    device_id: sender,
                });
            }
            ApprovalStep::Accept { commitment, .. } => {
                let (reply, peer) = {
                    let mut flows = self.flows();
                    let Some(flow) = flows.get_mut(&flow_id) else {
                        return Ok(());
                    };
                    (
                        flow.approval.take_commitment(&commitment)?,
                        flow.peer.clone(),
                    )
                };
                received
                    .replies
                    .push(self.step_frame(state, &peer, &reply).await?);
            }
            ApprovalStep::Key { key, .. } => {
                let (reply, peer, code) = {
                    let mut flows = self.flows();
                    let Some(flow) = flows.get_mut(&flow_id) else {
                        return Ok(());
                    };
                    let reply = flow.approval.take_key(&key)?;
                    (reply, flow.peer.clone(), flow.approval.code())
                };
                if let Some(reply) = reply {
                    received
                        .replies
                        .push(self.step_frame(state, &peer, &reply).await?);
                }
                if let Some(code) = code {
                    received.approvals.push(ApprovalEvent::Code {
                        flow_id,
                        device_id: sender,
                        code,
                    });
                }
            }
            ApprovalStep::Mac { mac, .. } => {
                let pinned_master = self.pinned_own_master(state)?;
                let (peer, side, confirmed, early_secrets) = {
                    let mut flows = self.flows();
                    let Some(flow) = flows.get_mut(&flow_id) else {
                        return Ok(());
                    };
                    // The approver's MAC covers the identity this device pinned at login.
                    let master = match flow.approval.side() {
                        Side::Approver => None,
                        Side::Newcomer => pinned_master.as_deref(),
                    };
                    flow.approval
                        .check_mac(&keys_text(&flow.peer.ed25519, master), &mac)?;
                    flow.their_mac_checked = true;
                    (
                        flow.peer.clone(),
                        flow.approval.side(),
                        flow.confirmed,
                        flow.early_secrets.take(),
                    )
                };
                if let Some(secrets) = early_secrets {
                    return self
                        .accept_secrets(state, flow_id, sender, &secrets, received)
                        .await;
                }
                if side == Side::Approver && confirmed {
                    received
                        .replies
                        .push(self.hand_over(state, &flow_id, &peer).await?);
                    received.approvals.push(ApprovalEvent::Done {
                        flow_id,
                        device_id: sender,
                    });
                }
            }
            ApprovalStep::Secrets { secrets, .. } => {
                let secrets = zeroize::Zeroizing::new(secrets);
                {
                    let mut flows = self.flows();
                    let Some(flow) = flows.get_mut(&flow_id) else {
                        return Ok(());
                    };
                    // Secrets come only after this device confirmed (they answer its MAC).
                    if flow.approval.side() != Side::Newcomer || !flow.confirmed {
                        return Ok(());
                    }
                    if !flow.their_mac_checked {
                        flow.early_secrets = Some(secrets);
                        return Ok(());
                    }
                }
                self.accept_secrets(state, flow_id, sender, &secrets, received)
                    .await?;
            }
            ApprovalStep::Rotated { secrets, .. } => {
                let secrets = zeroize::Zeroizing::new(secrets);
                self.take_rotated_secrets(state, sender, &secrets).await?;
            }
            ApprovalStep::Cancel { reason, .. } => {
                if self.flows().remove(&flow_id).is_some() {
                    received
                        .approvals
                        .push(ApprovalEvent::Cancelled { flow_id, reason });
                }
            }
        }
        Ok(())
    }

    /// The newcomer's last step, once it confirmed and the approver's MAC checked: takes the
    /// identity's secrets (they must be the identity pinned at login), signs itself and reads
    /// the history from the backup.
    async fn accept_secrets(
        &self,
        state: &mut State,
        flow_id: String,
        sender: DeviceId,
        secrets: &str,
        received: &mut Received,
    ) -> Result<(), ClientError> {
        let secrets = Secrets::from_json(secrets)?;
        if Some(secrets.identity.master_key()) != self.pinned_own_master(state)? {
            return Err(natter_crypto::CryptoError::Approval(
                "the secrets are not the identity this device was shown".into(),
            )
            .into());
        }
        self.flows().remove(&flow_id);
        self.approve_self(state, secrets).await?;
        received.resolved = self.restore_all(state).await?;
        received.approvals.push(ApprovalEvent::Done {
            flow_id,
            device_id: sender,
        });
        Ok(())
    }

    /// The approver's last step: signs the new device and hands it the secrets.
    async fn hand_over(
        &self,
        state: &mut State,
        flow_id: &str,
        peer: &VerifiedDevice,
    ) -> Result<ClientFrame, ClientError> {
        self.flows().remove(flow_id);
        let me = self.user_id();
        let secrets = state.secrets.as_ref().ok_or(ClientError::NotApproved)?;
        let signature =
            secrets
                .identity
                .sign_device_keys(me, peer.device_id, &peer.curve25519, &peer.ed25519);
        let handed = ApprovalStep::Secrets {
            flow_id: flow_id.to_owned(),
            secrets: secrets.to_json().to_string(),
        };
        self.inner
            .session
            .sign_device(peer.device_id, &signature)
            .await?;
        self.step_frame(state, peer, &handed).await
    }

    /// One of this user's devices signed by the identity this device pinned.
    pub(crate) async fn signed_own_device(
        &self,
        state: &mut State,
        device: DeviceId,
    ) -> Result<Option<VerifiedDevice>, ClientError> {
        let devices = match self.trusted_devices(state, self.user_id()).await {
            Err(ClientError::IdentityChanged(_)) => Vec::new(),
            devices => devices?,
        };
        Ok(devices.into_iter().find(|d| d.device_id == device))
    }

    /// An approval step encrypted for `peer` as a to-device frame.
    pub(crate) async fn step_frame(
        &self,
        state: &mut State,
        peer: &VerifiedDevice,
        step: &ApprovalStep,
    ) -> Result<ClientFrame, ClientError> {
        let plaintext = serde_json::to_vec(&ApprovalPayload {
            approval: step.clone(),
        })
        .expect("an approval step serializes");
        let mut pairwise = self
            .pairwise_for(state, peer)
            .await?
            .ok_or(ClientError::NoSuchDevice(peer.device_id))?;
        let payload = pairwise.encrypt(&state.account.curve25519(), &plaintext)?;
        state.store.save_olm_session(
            pairwise.their_key(),
            &pairwise.session_id(),
            &pairwise.pickle(&self.inner.key),
            now_ms(),
        )?;
        Ok(ClientFrame::ToDevice {
            messages: vec![ToDeviceOut {
                user_id: peer.user_id,
                device_id: peer.device_id,
                payload,
            }],
        })
    }

    /// Sends a frame over the live connection.
    fn send_live(&self, frame: ClientFrame) -> Result<(), ClientError> {
        let live = self
            .inner
            .live
            .lock()
            .expect("the live sender lock is never poisoned");
        live.as_ref()
            .and_then(|live| live.send(frame).ok())
            .ok_or(ClientError::NotLive)
    }

    fn flows(&self) -> std::sync::MutexGuard<'_, HashMap<String, Flow>> {
        self.inner
            .approvals
            .lock()
            .expect("the approvals lock is never poisoned")
    }
}
