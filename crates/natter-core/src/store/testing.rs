//! Helpers for checks over a real store (the `store-checks` feature).

use natter_proto::UserId;

use super::{NewUser, Store};

/// Registers a user per name in `store`; their ids, in order.
pub async fn users<S: AsRef<str>>(
    store: &dyn Store,
    names: impl IntoIterator<Item = S>,
) -> Vec<UserId> {
    let mut ids = Vec::new();
    for name in names {
        let (id, name) = (UserId::new(), name.as_ref());
        let user = NewUser {
            id,
            username: name,
            password_hash: "x",
            display_name: name,
            created_at: 0,
        };
        store.create_user(&user).await.expect("a new user");
        ids.push(id);
    }
    ids
}
