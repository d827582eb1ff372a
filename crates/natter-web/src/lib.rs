#![doc = include_str!("../README.md")]

pub mod device;
mod error;
pub mod identity;
pub mod keys;
pub mod natter;
pub mod recovery;
pub mod room;
mod views;

pub use device::{Device, Received};
pub use identity::{CrossSigning, Identity, fingerprint, safety_number, verify_device};
pub use keys::{SealKey, StoreKey};
pub use natter::Natter;
pub use recovery::{AccountSecrets, Recovery};
pub use room::{InboundGroup, OutboundGroup};
