//! The embedded database's files on disk: private to natterd's user (the directory 0700, the
//! database 0600, and so the WAL and shared-memory files SQLite makes beside it, which take
//! the database's mode), and used by one process at a time.

use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::Context;

/// An exclusive lock on an embedded database, held until this is dropped.
#[derive(Debug)]
pub struct DatabaseLock {
    _file: File,
}

/// Creates the database's directory (0700) and the database file (0600) where they are missing.
///
/// # Errors
/// Either cannot be created.
pub fn prepare(path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(error).with_context(|| format!("creating {}", path.display())),
    }
}

/// [`prepare`]s the database at `path` and locks it for this process: a second natterd on the
/// same file would not see the first one's connections, so live delivery between them would
/// silently stop.
///
/// # Errors
/// The file cannot be created or opened, or another process holds the lock.
pub fn lock(path: &Path) -> anyhow::Result<DatabaseLock> {
    prepare(path)?;
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(DatabaseLock { _file: file }),
        Err(TryLockError::WouldBlock) => anyhow::bail!(
            "{} is in use by another natterd process: one process serves a SQLite database \
             (several nodes need PostgreSQL and Redis)",
            path.display()
        ),
        Err(TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("locking {}", path.display()))
        }
    }
}
