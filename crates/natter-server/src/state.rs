//! Shared state handed to every handler.

use std::sync::Arc;
use std::time::Duration;

use crate::store::Store;

/// What handlers need: the store and the service settings. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// How long a login's token lasts.
    pub token_ttl: Duration,
}
