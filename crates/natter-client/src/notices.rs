//! What the person is told about whom their messages reach ([`Notice`]); `kept` records them.

use natter_proto::{ConversationId, DeviceId, UserId};
use serde::{Deserialize, Serialize};

mod kept;

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
    /// People the server lists as members of a conversation who were not members when this
    /// device last sent to it: they get the key for what is sent from now on. The server decides
    /// membership, so this is how a member it adds behind the owner's back is seen.
    MembersAdded {
        /// The conversation.
        conversation_id: ConversationId,
        /// Who was added.
        user_ids: Vec<UserId>,
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
            Self::MembersAdded {
                conversation_id,
                user_ids,
            } => write!(
                f,
                "{} member(s) joined conversation {conversation_id} since you last sent to it; \
                 they read what you send from now on",
                user_ids.len()
            ),
        }
    }
}
