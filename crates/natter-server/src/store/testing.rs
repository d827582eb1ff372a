//! Helpers for unit tests over a real store.

use std::sync::Arc;

use natter_proto::UserId;
use natter_test_support::ScratchPostgres;

use super::{NewUser, PgStore, SqliteStore, Store};

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

/// A store under test, on one backend, with what keeps its database alive.
struct Backend {
    /// `sqlite` or `postgres`.
    name: &'static str,
    store: Arc<dyn Store>,
    _sqlite: Option<tempfile::TempDir>,
    _postgres: Option<ScratchPostgres>,
}

/// Runs `body` on a fresh store of each backend: SQLite, and PostgreSQL where it is configured
/// (under CI it must be), so both backends keep one behaviour.
pub async fn on_each_backend(body: impl AsyncFn(Arc<dyn Store>)) {
    for backend in backends().await {
        // Shown with a failure: which backend the body was running on.
        eprintln!("on {}", backend.name);
        body(Arc::clone(&backend.store)).await;
    }
}

/// A fresh store on each backend.
async fn backends() -> Vec<Backend> {
    let (sqlite, dir) = sqlite().await;
    let mut backends = vec![Backend {
        name: "sqlite",
        store: Arc::new(sqlite),
        _sqlite: Some(dir),
        _postgres: None,
    }];
    if let Some(scratch) = ScratchPostgres::create().await {
        let store = PgStore::open(&scratch.url, 4)
            .await
            .expect("a new PostgreSQL store");
        backends.push(Backend {
            name: "postgres",
            store: Arc::new(store),
            _sqlite: None,
            _postgres: Some(scratch),
        });
    }
    backends
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
