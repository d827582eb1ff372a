//! Where the client keeps its data: the platform's data directory (or `NATTER_HOME`), with the
//! device's store and the key file that encrypts it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rand::RngCore;

/// The client's data directory.
pub struct Home {
    dir: PathBuf,
}

impl Home {
    /// `NATTER_HOME` if set, else the platform's data directory for Natter.
    pub fn locate() -> anyhow::Result<Self> {
        let dir = match std::env::var_os("NATTER_HOME") {
            Some(dir) => PathBuf::from(dir),
            None => directories::ProjectDirs::from("", "", "natter")
                .context("cannot find a home directory; set NATTER_HOME")?
                .data_dir()
                .to_owned(),
        };
        Ok(Self { dir })
    }

    /// The device's store.
    pub fn store(&self) -> PathBuf {
        self.dir.join("device.db")
    }

    /// The passphrase that encrypts the store: `NATTER_PASSPHRASE`, else the key file
    /// (created with 32 random bytes, readable only by this user, when `create` is set).
    pub fn passphrase(&self, create: bool) -> anyhow::Result<String> {
        if let Ok(passphrase) = std::env::var("NATTER_PASSPHRASE") {
            return Ok(passphrase);
        }
        let path = self.dir.join("store.key");
        if !path.exists() {
            if !create {
                bail!(
                    "not logged in here (no {}); run `natter login`",
                    path.display()
                );
            }
            write_key(&path)?;
        }
        let key = std::fs::read_to_string(&path)
            .with_context(|| format!("reading the key file {}", path.display()))?;
        Ok(key.trim().to_owned())
    }

    /// Forgets this device: the store and the key file.
    pub fn forget(&self) -> anyhow::Result<()> {
        for name in ["device.db", "device.db-wal", "device.db-shm", "store.key"] {
            match std::fs::remove_file(self.dir.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).context("removing the local store");
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn write_key(path: &Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).context("creating the data directory")?;
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, key.as_bytes())
        .with_context(|| format!("writing the key file {}", path.display()))
}
