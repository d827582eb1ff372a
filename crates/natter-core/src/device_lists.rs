//! Telling clients that a user's device list changed, so that they can keep device lists
//! between sends and fetch one again only when it changed.

use natter_proto::UserId;
use natter_proto::ws::ServerFrame;

use crate::fanout::{Bus, Outbound, encode};
use crate::store::Store;

/// Sends `device_list_changed` for `user` to every connected device of `user` and of everyone
/// who may see `user`'s devices. Best effort: clients also drop what they keep when they
/// reconnect, so a change missed here is caught then.
pub async fn announce(store: &dyn Store, bus: &dyn Bus, user: UserId) {
    let mut audience = match store.audience_of(user).await {
        Ok(audience) => audience,
        Err(error) => {
            tracing::warn!(%error, "could not find whom to tell of a device list change");
            Vec::new()
        }
    };
    audience.push(user);
    let frame = encode(&ServerFrame::DeviceListChanged { user_id: user });
    bus.publish_to_users(
        &audience,
        None,
        Outbound::Frame {
            kind: "device_list_changed",
            frame,
        },
    );
}
