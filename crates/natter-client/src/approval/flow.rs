//! An approval's state: what the person is told at each step, and each flow in progress.

use std::collections::HashMap;

use natter_crypto::VerifiedDevice;
use natter_crypto::approval::Approval;
use natter_proto::DeviceId;

/// What happened in an approval ([`crate::Event::Approval`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum ApprovalEvent {
    /// An approved device of this user offers to approve this one; the code follows.
    Requested {
        /// The approval.
        flow_id: String,
        /// The approved device.
        device_id: DeviceId,
    },
    /// The code to compare on both screens: if they match, [`crate::Device::confirm_approval`] on both.
    Code {
        /// The approval.
        flow_id: String,
        /// The other device.
        device_id: DeviceId,
        /// Three groups of four digits.
        code: String,
    },
    /// Done: on the new device, it is approved (and reads the history); on the approving
    /// device, the new one is signed.
    Done {
        /// The approval.
        flow_id: String,
        /// The other device.
        device_id: DeviceId,
    },
    /// The approval ended without approving (a mismatch, or the other side gave up).
    Cancelled {
        /// The approval.
        flow_id: String,
        /// Why.
        reason: String,
    },
}

/// An approval in progress, with the other device.
pub(crate) struct Flow {
    pub(super) approval: Approval,
    pub(super) peer: VerifiedDevice,
    pub(super) confirmed: bool,
    pub(super) their_mac_checked: bool,
    /// Secrets that arrived before the approver's MAC (the two may cross on the way): kept
    /// until the MAC checks.
    pub(super) early_secrets: Option<zeroize::Zeroizing<String>>,
}

impl Flow {
    pub(super) fn new(approval: Approval, peer: VerifiedDevice) -> Self {
        Self {
            approval,
            peer,
            confirmed: false,
            their_mac_checked: false,
            early_secrets: None,
        }
    }
}

/// The approvals in progress on this device, by flow id.
pub(crate) type Flows = std::sync::Mutex<HashMap<String, Flow>>;
