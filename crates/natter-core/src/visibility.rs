//! Who may see whom: the one rule behind profiles, presence, device keys and key shares.

use natter_proto::UserId;
use natter_proto::connections::ConnectionState;

use crate::service_error::ServiceError;
use crate::store::Store;

/// Whether `viewer` may see `target`'s profile, presence and device keys (and send key shares
/// to their devices): themselves, connected, or current members of a room together (who must
/// encrypt for each other) unless `target` blocks `viewer` (whose messages `target` does not
/// get, so `viewer` has nothing to encrypt for them). A direct conversation left over from a
/// removed connection grants nothing.
///
/// # Errors
/// The store fails.
pub async fn can_see(
    store: &dyn Store,
    viewer: UserId,
    target: UserId,
) -> Result<bool, ServiceError> {
    if viewer == target {
        return Ok(true);
    }
    let sides = store.connection(viewer, target).await?;
    Ok(sides.mine.state == ConnectionState::Accepted
        || (sides.theirs.state != ConnectionState::Blocked
            && store.share_room(viewer, target).await?))
}
