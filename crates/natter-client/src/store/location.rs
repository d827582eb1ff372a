//! Where stores live. On native targets a store is a SQLite file (with its WAL beside it),
//! readable only by its owner. In the browser it is a database of SQLite's relaxed-idb VFS:
//! SQLite runs in wasm memory and every committed page is written to IndexedDB, from where the
//! whole database is loaded again at start ([`open_browser_storage`]).

#[cfg(not(target_arch = "wasm32"))]
pub use native::*;

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::path::Path;

    use crate::ClientError;

    /// Whether a store exists at `path`.
    pub(crate) fn exists(path: &Path) -> bool {
        path.exists()
    }

    /// Removes a store (its database, WAL and shared memory), as far as it exists.
    pub fn remove(path: &Path) {
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.as_os_str().to_owned();
            file.push(suffix);
            let _ = std::fs::remove_file(file);
        }
    }

    /// Makes room for a new store at `path` (its directory).
    pub(in crate::store) fn prepare(path: &Path) -> Result<(), ClientError> {
        match path.parent() {
            Some(parent) => std::fs::create_dir_all(parent).map_err(ClientError::Io),
            None => Ok(()),
        }
    }

    /// Makes the new store at `path` readable by its owner only.
    pub(in crate::store) fn restrict(path: &Path) -> Result<(), ClientError> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(ClientError::Io)?;
        }
        #[cfg(not(unix))]
        let _ = path;
        Ok(())
    }

    /// How a store's database runs: write-ahead logging on a file.
    pub(in crate::store) const PRAGMAS: &str =
        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;";
}

#[cfg(target_arch = "wasm32")]
pub use browser::*;

#[cfg(target_arch = "wasm32")]
mod browser {
    use std::cell::OnceCell;
    use std::path::Path;

    use sqlite_wasm_vfs::relaxed_idb::{self, Preload, RelaxedIdbCfg, RelaxedIdbUtil};

    use crate::ClientError;

    /// The VFS's name, and the IndexedDB database its pages live in.
    const VFS: &str = "natter";

    thread_local! {
        static STORAGE: OnceCell<RelaxedIdbUtil> = const { OnceCell::new() };
    }

    /// Loads this origin's stores from IndexedDB into memory and makes SQLite keep them there:
    /// call it once before [`crate::Device::login`] or [`crate::Device::open`] in a browser.
    ///
    /// Only one page of an origin may have the stores open at a time (two would overwrite each
    /// other's pages); the web app holds a Web Lock for that.
    ///
    /// # Errors
    /// IndexedDB cannot be opened (a private window that forbids it, or storage that is full).
    pub async fn open_browser_storage() -> Result<(), ClientError> {
        if STORAGE.with(|s| s.get().is_some()) {
            return Ok(());
        }
        let config = RelaxedIdbCfg {
            vfs_name: VFS.into(),
            clear_on_init: false,
            preload: Preload::All,
        };
        let util = relaxed_idb::install::<sqlite_wasm_rs::WasmOsCallback>(&config, true)
            .await
            .map_err(storage_error)?;
        STORAGE.with(|s| {
            let _ = s.set(util);
        });
        Ok(())
    }

    fn name(path: &Path) -> String {
        path.to_string_lossy().into_owned()
    }

    fn with_storage<T>(default: T, f: impl FnOnce(&RelaxedIdbUtil) -> T) -> T {
        STORAGE.with(|s| s.get().map_or(default, f))
    }

    /// Whether a store exists at `path`.
    pub(crate) fn exists(path: &Path) -> bool {
        with_storage(false, |storage| storage.exists(&name(path)))
    }

    /// Removes a store; IndexedDB forgets its pages right after (await
    /// [`flush_browser_storage`] for that).
    pub fn remove(path: &Path) {
        with_storage((), |storage| {
            // The removal is queued behind every earlier write.
            let _ = storage.delete_db(&name(path));
        });
    }

    /// A name no store has: deleting it is a write that changes nothing, queued like any other.
    const BARRIER: &str = "natter-flush-barrier";

    /// Resolves once every write and removal made so far is in IndexedDB: the VFS writes the
    /// pages of each commit (and forgets removed stores) in the background, one after the other,
    /// so a page closed right after a write could lose it otherwise.
    ///
    /// # Errors
    /// IndexedDB refused a write (storage full), or [`open_browser_storage`] was not called.
    pub async fn flush_browser_storage() -> Result<(), ClientError> {
        let queued = with_storage(
            Err(ClientError::BrowserStorage(
                "open_browser_storage was not called".into(),
            )),
            // Queued behind every earlier write, and done after them.
            |storage| storage.delete_db(BARRIER).map_err(storage_error),
        )?;
        queued.await.map_err(storage_error)
    }

    fn storage_error(error: relaxed_idb::RelaxedIdbError) -> ClientError {
        ClientError::BrowserStorage(error.to_string())
    }

    /// Makes room for a new store at `path`: nothing to do, but the storage must be open.
    pub(in crate::store) fn prepare(_path: &Path) -> Result<(), ClientError> {
        with_storage(
            Err(ClientError::BrowserStorage(
                "open_browser_storage was not called".into(),
            )),
            |_| Ok(()),
        )
    }

    /// Makes the new store readable by its owner only: the browser's origin already does.
    #[allow(clippy::unnecessary_wraps)] // the same signature as on native targets
    pub(in crate::store) fn restrict(_path: &Path) -> Result<(), ClientError> {
        Ok(())
    }

    /// How a store's database runs: the VFS keeps every page in memory and writes committed
    /// pages to IndexedDB behind SQLite's back, so SQLite neither syncs nor keeps a journal file.
    pub(in crate::store) const PRAGMAS: &str =
        "PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF;";
}
