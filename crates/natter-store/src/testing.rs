//! Helpers for unit tests over a real store.

use std::sync::Arc;

use natter_test_support::ScratchPostgres;

pub use natter_core::store::testing::users;

use super::{PgStore, SqliteStore, Store};

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
