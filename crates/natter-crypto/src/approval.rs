//! Approving a new device of one's own by comparing a short code that both screens show.
//!
//! An approved device (the approver) and the new one (the newcomer) agree on a secret by an
//! ephemeral Diffie-Hellman exchange (vodozemac's SAS) over their pairwise Olm session. The
//! newcomer commits to its key before seeing the approver's, so neither side can pick a key that
//! makes the codes match by chance. Both screens show three 4-digit numbers derived from the
//! secret; when the person confirms they match on both, each side sends a MAC of its own keys
//! (the approver's includes the identity's master key), checked against the keys the other side
//! expects. The approver then signs the newcomer and sends it the identity's secrets.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use vodozemac::Curve25519PublicKey;
use vodozemac::sas::{EstablishedSas, Mac, Sas};

use crate::CryptoError;

/// One step of an approval, carried inside a to-device payload as `{"approval": …}`.
///
/// # Security
/// `Secrets` carries the identity's private keys: its `Debug` shows only the step and flow.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum ApprovalStep {
    /// The approver offers to approve the newcomer.
    Start {
        /// The approval's id.
        flow_id: String,
    },
    /// The newcomer's commitment to its ephemeral key.
    Accept {
        /// The approval's id.
        flow_id: String,
        /// SHA-256 of the newcomer's key and the flow id (base64).
        commitment: String,
    },
    /// An ephemeral Curve25519 key (base64): the approver's first, then the newcomer's.
    Key {
        /// The approval's id.
        flow_id: String,
        /// The key.
        key: String,
    },
    /// The MAC of the sender's keys, sent once the person confirmed the codes match.
    Mac {
        /// The approval's id.
        flow_id: String,
        /// The MAC (base64).
        mac: String,
    },
    /// The identity's secrets, from the approver once both MACs checked.
    Secrets {
        /// The approval's id.
        flow_id: String,
        /// `Secrets::to_json`.
        secrets: String,
    },
    /// New secrets after the user removed an approved device (a new self-signing key under
    /// the same master key, a new backup key), from the device that rotated them to each
    /// remaining approved device. Not part of an approval; `flow_id` is fresh.
    Rotated {
        /// A fresh id.
        flow_id: String,
        /// `Secrets::to_json`.
        secrets: String,
    },
    /// Either side gives up.
    Cancel {
        /// The approval's id.
        flow_id: String,
        /// Why.
        reason: String,
    },
}

impl std::fmt::Debug for ApprovalStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let step = match self {
            Self::Start { .. } => "Start",
            Self::Accept { .. } => "Accept",
            Self::Key { .. } => "Key",
            Self::Mac { .. } => "Mac",
            Self::Secrets { .. } => "Secrets",
            Self::Rotated { .. } => "Rotated",
            Self::Cancel { .. } => "Cancel",
        };
        f.debug_struct(step)
            .field("flow_id", &self.flow_id())
            .finish_non_exhaustive()
    }
}

impl ApprovalStep {
    /// The approval this step belongs to.
    pub fn flow_id(&self) -> &str {
        match self {
            Self::Start { flow_id }
            | Self::Accept { flow_id, .. }
            | Self::Key { flow_id, .. }
            | Self::Mac { flow_id, .. }
            | Self::Secrets { flow_id, .. }
            | Self::Rotated { flow_id, .. }
            | Self::Cancel { flow_id, .. } => flow_id,
        }
    }
}

/// The plaintext of a to-device payload that carries an approval step.
#[derive(Serialize, Deserialize)]
pub struct ApprovalPayload {
    /// The step.
    pub approval: ApprovalStep,
}

/// Which side of an approval this device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The approved device that vouches for the new one.
    Approver,
    /// The new device.
    Newcomer,
}

/// One approval in progress, on either side.
pub struct Approval {
    flow_id: String,
    side: Side,
    /// `(approver, newcomer)` device ids, part of what the code and MACs are bound to.
    devices: (String, String),
    sas: Option<Sas>,
    their_commitment: Option<String>,
    established: Option<EstablishedSas>,
}

impl Approval {
    /// The approver's side: a new flow and its first step.
    pub fn start(approver: &str, newcomer: &str) -> (Self, ApprovalStep) {
        let flow_id = uuid_like();
        let approval = Self::new(flow_id.clone(), Side::Approver, approver, newcomer);
        (approval, ApprovalStep::Start { flow_id })
    }

    /// The newcomer's side, answering a `Start`: the flow and its commitment.
    pub fn accept(flow_id: &str, approver: &str, newcomer: &str) -> (Self, ApprovalStep) {
        let approval = Self::new(flow_id.to_owned(), Side::Newcomer, approver, newcomer);
        let key = approval.own_key();
        let commitment = commit(&key, flow_id);
        let step = ApprovalStep::Accept {
            flow_id: flow_id.to_owned(),
            commitment,
        };
        (approval, step)
    }

    fn new(flow_id: String, side: Side, approver: &str, newcomer: &str) -> Self {
        Self {
            flow_id,
            side,
            devices: (approver.to_owned(), newcomer.to_owned()),
            sas: Some(Sas::new()),
            their_commitment: None,
            established: None,
        }
    }

    /// The approval's id.
    pub fn flow_id(&self) -> &str {
        &self.flow_id
    }

    /// This device's side.
    pub fn side(&self) -> Side {
        self.side
    }

    fn own_key(&self) -> String {
        self.sas
            .as_ref()
            .map(|sas| sas.public_key().to_base64())
            .unwrap_or_default()
    }

    /// The approver takes the newcomer's commitment and answers with its own key.
    ///
    /// # Errors
    /// [`CryptoError::Approval`] out of turn.
    pub fn take_commitment(&mut self, commitment: &str) -> Result<ApprovalStep, CryptoError> {
        if self.side != Side::Approver || self.their_commitment.is_some() {
            return Err(out_of_turn());
        }
        self.their_commitment = Some(commitment.to_owned());
        Ok(ApprovalStep::Key {
            flow_id: self.flow_id.clone(),
            key: self.own_key(),
        })
    }

    /// Takes the other side's ephemeral key: the approver checks it against the commitment; the
    /// newcomer answers with its own key. After this, [`Approval::code`] is ready.
    ///
    /// # Errors
    /// [`CryptoError::Approval`] out of turn, for a key that breaks the commitment, or a bad key.
    pub fn take_key(&mut self, key: &str) -> Result<Option<ApprovalStep>, CryptoError> {
        if self.side == Side::Approver {
            let committed = self.their_commitment.as_deref().ok_or_else(out_of_turn)?;
            if commit(key, &self.flow_id) != committed {
                return Err(CryptoError::Approval(
                    "the new device's key does not match its commitment".into(),
                ));
            }
        }
        let reply = (self.side == Side::Newcomer).then(|| ApprovalStep::Key {
            flow_id: self.flow_id.clone(),
            key: self.own_key(),
        });
        let sas = self.sas.take().ok_or_else(out_of_turn)?;
        let theirs = Curve25519PublicKey::from_base64(key)
            .map_err(|_| CryptoError::Approval("a malformed key".into()))?;
        let established = sas
            .diffie_hellman(theirs)
            .map_err(|e| CryptoError::Approval(e.to_string()))?;
        self.established = Some(established);
        Ok(reply)
    }

    /// The code both screens show (`1234 5678 9012`), once the keys were exchanged.
    pub fn code(&self) -> Option<String> {
        let established = self.established.as_ref()?;
        let (a, b, c) = established.bytes(&self.info("CODE")).decimals();
        Some(format!("{a:04} {b:04} {c:04}"))
    }

    /// The MAC step to send once the person confirmed the codes match: over `own_keys`, the
    /// text [`keys_text`] makes of this device's keys.
    ///
    /// # Errors
    /// [`CryptoError::Approval`] before the keys were exchanged.
    pub fn confirm(&self, own_keys: &str) -> Result<ApprovalStep, CryptoError> {
        let established = self.established.as_ref().ok_or_else(out_of_turn)?;
        let mac = established.calculate_mac(own_keys, &self.info(self.side_name(self.side)));
        Ok(ApprovalStep::Mac {
            flow_id: self.flow_id.clone(),
            mac: mac.to_base64(),
        })
    }

    /// Checks the other side's MAC against the keys this device expects of it.
    ///
    /// # Errors
    /// [`CryptoError::Approval`] when it does not match: someone is in the middle, or the other
    /// device is not the one it claims to be.
    pub fn check_mac(&self, their_keys: &str, mac: &str) -> Result<(), CryptoError> {
        let established = self.established.as_ref().ok_or_else(out_of_turn)?;
        let mac =
            Mac::from_base64(mac).map_err(|_| CryptoError::Approval("a malformed MAC".into()))?;
        let theirs = match self.side {
            Side::Approver => Side::Newcomer,
            Side::Newcomer => Side::Approver,
        };
        established
            .verify_mac(their_keys, &self.info(self.side_name(theirs)), &mac)
            .map_err(|_| CryptoError::Approval("the other device's keys do not match".into()))
    }

    fn side_name(&self, side: Side) -> &'static str {
        match side {
            Side::Approver => "MAC-APPROVER",
            Side::Newcomer => "MAC-NEWCOMER",
        }
    }

    fn info(&self, what: &str) -> String {
        format!(
            "NATTER_APPROVAL_V1|{what}|{}|{}|{}",
            self.flow_id, self.devices.0, self.devices.1
        )
    }
}

/// What a device's MAC covers: its Ed25519 key and, for the approver, the identity's master key.
pub fn keys_text(ed25519: &str, master_key: Option<&str>) -> String {
    format!("{ed25519}|{}", master_key.unwrap_or(""))
}

fn commit(key: &str, flow_id: &str) -> String {
    use base64::Engine;
    let digest = Sha256::new()
        .chain_update(key.as_bytes())
        .chain_update(b"|")
        .chain_update(flow_id.as_bytes())
        .finalize();
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
}

fn out_of_turn() -> CryptoError {
    CryptoError::Approval("a step out of turn".into())
}

fn uuid_like() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the exchange between two sides, with `tamper` applied to the newcomer's key on
    /// its way to the approver.
    fn exchange(tamper: impl Fn(String) -> String) -> Result<(Approval, Approval), CryptoError> {
        let (mut approver, start) = Approval::start("dev-a", "dev-n");
        let ApprovalStep::Start { flow_id } = start else {
            unreachable!()
        };
        let (mut newcomer, accept) = Approval::accept(&flow_id, "dev-a", "dev-n");
        let ApprovalStep::Accept { commitment, .. } = accept else {
            unreachable!()
        };
        let ApprovalStep::Key { key: a_key, .. } = approver.take_commitment(&commitment)? else {
            unreachable!()
        };
        let Some(ApprovalStep::Key { key: n_key, .. }) = newcomer.take_key(&a_key)? else {
            unreachable!()
        };
        approver.take_key(&tamper(n_key))?;
        Ok((approver, newcomer))
    }

    #[test]
    fn both_sides_show_the_same_code_and_accept_each_others_macs() {
        let (approver, newcomer) = exchange(|k| k).unwrap();
        let code = approver.code().unwrap();
        assert_eq!(newcomer.code().unwrap(), code);
        assert_eq!(code.len(), 14);
        let a_keys = keys_text("ed-a", Some("master"));
        let ApprovalStep::Mac { mac, .. } = approver.confirm(&a_keys).unwrap() else {
            unreachable!()
        };
        newcomer.check_mac(&a_keys, &mac).unwrap();
        // A MAC over other keys (another master, say) is refused.
        assert!(
            newcomer
                .check_mac(&keys_text("ed-a", Some("other")), &mac)
                .is_err()
        );
        // A side's MAC does not pass as the other side's.
        let n_keys = keys_text("ed-n", None);
        let ApprovalStep::Mac { mac, .. } = newcomer.confirm(&n_keys).unwrap() else {
            unreachable!()
        };
        approver.check_mac(&n_keys, &mac).unwrap();
        assert!(newcomer.check_mac(&n_keys, &mac).is_err());
    }

    #[test]
    fn a_steps_debug_never_shows_the_secrets() {
        let step = ApprovalStep::Secrets {
            flow_id: "f".into(),
            secrets: "master-secret-marker".into(),
        };
        let shown = format!("{step:?}");
        assert!(
            shown.contains("Secrets") && !shown.contains("marker"),
            "{shown}"
        );
    }

    #[test]
    fn a_key_swapped_after_the_commitment_is_refused() {
        let other = Sas::new().public_key().to_base64();
        assert!(matches!(
            exchange(|_| other.clone()),
            Err(CryptoError::Approval(_))
        ));
    }
}
