//! The device lists this device keeps between sends, so that a message to a room of 1,000
//! costs one request for all members' lists when they are not kept yet, and none when they are.
//!
//! A kept list is dropped when the server says it changed (`device_list_changed`, while
//! connected) and all are dropped at every (re)connect, since changes made while this device was
//! away were not told. What a list is trusted for is decided afresh from it at every use (see
//! `trust`); keeping it only saves the request.

use std::collections::HashMap;

use natter_proto::UserId;
use natter_proto::keys::DevicesResponse;

use crate::{ClientError, Device};

impl Device {
    /// `user`'s device list and identity, kept or fetched; `None` when the server does not show
    /// them to this user.
    pub(crate) async fn device_listing(
        &self,
        user: UserId,
    ) -> Result<Option<DevicesResponse>, ClientError> {
        if let Some(kept) = self.kept_lists().get(&user) {
            return Ok(kept.clone());
        }
        let fetched = match self.inner.session.devices_and_identity(user).await {
            Err(e) if e.status() == Some(404) => None,
            listing => Some(listing?),
        };
        self.kept_lists().insert(user, fetched.clone());
        Ok(fetched)
    }

    /// Fetches, in one request, the lists of those of `users` not kept yet.
    pub(crate) async fn fetch_device_lists(&self, users: &[UserId]) -> Result<(), ClientError> {
        let missing: Vec<UserId> = {
            let kept = self.kept_lists();
            let mut missing: Vec<UserId> = users
                .iter()
                .copied()
                .filter(|u| !kept.contains_key(u))
                .collect();
            missing.sort();
            missing.dedup();
            missing
        };
        if missing.is_empty() {
            return Ok(());
        }
        let mut found: HashMap<UserId, DevicesResponse> = HashMap::new();
        for chunk in missing.chunks(natter_proto::limits::ROOM_MEMBERS_MAX) {
            for entry in self.inner.session.query_devices(chunk).await? {
                found.insert(entry.user_id, entry.list);
            }
        }
        let mut kept = self.kept_lists();
        for user in missing {
            kept.insert(user, found.remove(&user));
        }
        Ok(())
    }

    /// Drops `user`'s kept list (the server said it changed), or every list (`None`: after a
    /// reconnect).
    pub(crate) fn forget_device_lists(&self, user: Option<UserId>) {
        let mut kept = self.kept_lists();
        match user {
            Some(user) => {
                kept.remove(&user);
            }
            None => kept.clear(),
        }
    }

    fn kept_lists(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, Option<DevicesResponse>>> {
        self.inner
            .device_lists
            .lock()
            .expect("the device lists lock is never poisoned")
    }
}
