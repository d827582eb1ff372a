//! Where the client keeps its data: the platform's data directory (or `NATTER_HOME`), with the
//! device's encrypted store, and how the store is unlocked: a passphrase (`NATTER_PASSPHRASE`,
//! else asked on the terminal), or, for unattended use, a key file beside the store.
//! Opening the store and its encryption are natter-client's (`Device::open`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rand::RngCore;
use zeroize::Zeroizing;

/// The name of the key file in the data directory (key-file mode only).
const KEY_FILE: &str = "store.key";

/// The client's data directory. It holds one login at a time: a second `natter login` fails
/// with `already_logged_in` until `natter logout`.
pub struct Home {
    /// Holds the store and the key file; the client creates it when it first writes the store.
    dir: PathBuf,
}

/// How a new login's store will be unlocked. The key file is written only once the login
/// succeeded and [`NewUnlock::keep`] is called.
pub struct NewUnlock {
    /// The passphrase (in key-file mode, the key file's random contents).
    pub passphrase: Zeroizing<String>,
    /// Where the key file goes.
    key_file: PathBuf,
    /// Whether this login keeps its key in the key file.
    keep_key: bool,
}

impl NewUnlock {
    /// Writes the key file in key-file mode, and removes a stale one left by an earlier
    /// device otherwise; called only after the login succeeded, so a failed login leaves no
    /// file.
    pub fn keep(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(&self.key_file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).context("removing an old key file");
            }
            _ => {}
        }
        if self.keep_key {
            write_key(&self.key_file, &self.passphrase)?;
        }
        Ok(())
    }
}

impl Home {
    /// `NATTER_HOME` if set, else the platform's data directory for Natter. Fails only when
    /// there is no home directory to find it from; nothing is created here.
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

    /// The device's store, `device.db` (SQLite keeps `-wal` and `-shm` files beside it).
    pub fn store(&self) -> PathBuf {
        self.dir.join("device.db")
    }

    /// Where key-file mode keeps the store's key; the file exists only in that mode.
    fn key_file(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    /// How to unlock the store of a new login: with `key_file`, a random key kept in a file
    /// beside the store; else `NATTER_PASSPHRASE`, else a passphrase asked twice on the
    /// terminal.
    ///
    /// # Errors
    /// No terminal and no `NATTER_PASSPHRASE`, an empty passphrase, or two that differ.
    pub fn new_unlock(&self, key_file: bool) -> anyhow::Result<NewUnlock> {
        if key_file {
            let mut bytes = Zeroizing::new([0u8; 32]);
            rand::rng().fill_bytes(&mut *bytes);
            let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            return Ok(NewUnlock {
                passphrase: Zeroizing::new(key),
                key_file: self.key_file(),
                keep_key: true,
            });
        }
        let passphrase = new_passphrase(from_env())?;
        Ok(NewUnlock {
            passphrase,
            key_file: self.key_file(),
            keep_key: false,
        })
    }

    /// The passphrase that unlocks the existing store: `NATTER_PASSPHRASE`, else the key file
    /// if this device was logged in with one, else asked on the terminal.
    ///
    /// # Errors
    /// Not logged in here, or no way to get a passphrase (no terminal).
    pub fn passphrase(&self) -> anyhow::Result<Zeroizing<String>> {
        if !self.store().exists() {
            return Err(
                crate::errors::CliError::NotLoggedIn(self.store().display().to_string()).into(),
            );
        }
        if let Some(passphrase) = from_env() {
            return Ok(passphrase);
        }
        let path = self.key_file();
        if path.exists() {
            let key = std::fs::read_to_string(&path)
                .with_context(|| format!("reading the key file {}", path.display()))?;
            return Ok(Zeroizing::new(key.trim().to_owned()));
        }
        ask("Passphrase for this device's local store: ")
    }

    /// The passphrase to lock the store with from now on (`natter passphrase`):
    /// `NATTER_NEW_PASSPHRASE`, else asked twice on the terminal.
    ///
    /// # Errors
    /// No terminal and no `NATTER_NEW_PASSPHRASE`, an empty passphrase, or two that differ.
    pub fn changed_passphrase(&self) -> anyhow::Result<Zeroizing<String>> {
        new_passphrase(
            std::env::var("NATTER_NEW_PASSPHRASE")
                .ok()
                .map(Zeroizing::new),
        )
    }

    /// Removes the key file, once a passphrase locks the store instead; no error when there
    /// was none.
    pub fn forget_key_file(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(self.key_file()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).context("removing the key file")
            }
            _ => Ok(()),
        }
    }

    /// Forgets this device: the store (with SQLite's `-wal` and `-shm` files beside it) and
    /// the key file. Files already gone are no error; the data directory itself stays.
    pub fn forget(&self) -> anyhow::Result<()> {
        for name in ["device.db", "device.db-wal", "device.db-shm", KEY_FILE] {
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

/// `given`, else a passphrase asked twice on the terminal; never empty. Fails without a
/// terminal (see [`ask`]) or when the two typed differ.
fn new_passphrase(given: Option<Zeroizing<String>>) -> anyhow::Result<Zeroizing<String>> {
    let passphrase = match given {
        Some(passphrase) => passphrase,
        None => {
            let first = ask("Passphrase for this device's local store: ")?;
            let again = ask("The same passphrase again: ")?;
            if first != again {
                bail!("the two passphrases differ; nothing was changed");
            }
            first
        }
    };
    if passphrase.is_empty() {
        bail!("the passphrase is empty");
    }
    Ok(passphrase)
}

/// The passphrase from `NATTER_PASSPHRASE`, if set (an empty one is refused by the callers).
fn from_env() -> Option<Zeroizing<String>> {
    std::env::var("NATTER_PASSPHRASE").ok().map(Zeroizing::new)
}

/// Reads a passphrase on the terminal without echo. Fails without a terminal, pointing at
/// `NATTER_PASSPHRASE` and `login --key-file`.
fn ask(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "the local store is locked and there is no terminal to ask for its passphrase: \
             set NATTER_PASSPHRASE, or log in with `natter login --key-file` for unattended use"
        );
    }
    rpassword::prompt_password(prompt)
        .map(Zeroizing::new)
        .context("reading the passphrase from the terminal")
}

/// Writes a new key file readable by its owner only (0600 on Unix); fails if one is there
/// already rather than replace the key of another store.
fn write_key(path: &Path, key: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path)?, key.as_bytes())
        .with_context(|| format!("writing the key file {}", path.display()))
}
