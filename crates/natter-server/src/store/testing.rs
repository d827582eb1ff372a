//! Helpers for unit tests over a real store.

use natter_proto::UserId;

use super::{NewUser, SqliteStore, Store};

/// The database file's name in a test store's directory.
pub const DB_FILE: &str = "natter.db";

/// A SQLite store in a new temporary directory, which lives as long as the returned guard.
pub async fn sqlite() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = SqliteStore::open(&dir.path().join(DB_FILE))
        .await
        .expect("a new SQLite store");
    (store, dir)
}

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
