//! Errors of the encryption layer.

/// Why an encryption operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A key or signature from the server is not valid base64 of the right length.
    #[error("malformed {what}")]
    MalformedKey {
        /// Which key.
        what: &'static str,
    },
    /// A device's identity keys are not signed by its own signing key: the server (or someone
    /// on the way) changed them.
    #[error("the identity keys of device {device} are not validly signed")]
    BadSignature {
        /// The device.
        device: String,
    },
    /// A stored pickle could not be opened: a wrong passphrase, or a damaged store.
    #[error("cannot open the encrypted store (wrong passphrase or damaged data): {0}")]
    Pickle(#[source] vodozemac::PickleError),
    /// A stored pickle's wrapper could not be read.
    #[error("damaged pickle: {0}")]
    PickleFormat(#[source] serde_json::Error),
    /// A passphrase could not be turned into a key.
    #[error("cannot derive a key from the passphrase: {0}")]
    KeyDerivation(String),
    /// A pairwise session could not be created.
    #[error("cannot open a session with the device: {0}")]
    SessionCreation(#[source] vodozemac::olm::SessionCreationError),
    /// A pairwise session could not encrypt (vodozemac refuses only for a broken session).
    #[error("cannot encrypt for the device: {0}")]
    OlmEncryption(#[source] vodozemac::olm::EncryptionError),
    /// A to-device payload could not be decrypted.
    #[error("cannot decrypt a to-device payload: {0}")]
    OlmDecryption(String),
    /// A to-device payload or envelope is not what this client writes.
    #[error("malformed {what}")]
    Malformed {
        /// What was malformed.
        what: &'static str,
    },
    /// A message text is longer than the limit.
    #[error("a message is at most {max} characters; this one has {chars}")]
    TooLong {
        /// Its length in characters.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// A sealed value could not be opened: a wrong key, a value moved to another place, or
    /// damaged bytes (the cause is deliberately not told apart).
    #[error("cannot open sealed data (wrong key, moved or damaged)")]
    Sealed,
    /// A device approval went wrong (a step out of turn, a broken commitment, a MAC that does
    /// not match).
    #[error("the device approval failed: {0}")]
    Approval(String),
    /// A message text is empty.
    #[error("a message cannot be empty")]
    Empty,
}

/// Why a message shows as "unable to decrypt". Never a panic: every failure lands here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnableToDecrypt {
    /// This device never received the room key the message was encrypted with: it was sent
    /// before this device existed (or was reset), or after this user left the conversation.
    #[error("unable to decrypt: this device was never given the key for this message")]
    MissingKey,
    /// The key this device holds starts after this message (it joined the session later).
    #[error("unable to decrypt: the message is older than the key this device was given")]
    TooOld,
    /// The key belongs to another device or conversation: the message was forged or moved.
    #[error("unable to decrypt: the message does not match its sender or conversation")]
    Mismatch,
    /// The ciphertext is damaged or not Megolm (its authentication failed).
    #[error("unable to decrypt: the ciphertext is damaged ({0})")]
    Corrupt(String),
}

impl UnableToDecrypt {
    /// A stable short code for storage and `--json` output.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingKey => "missing_key",
            Self::TooOld => "too_old",
            Self::Mismatch => "mismatch",
            Self::Corrupt(_) => "corrupt",
        }
    }

    /// The reason back from its [`code`](Self::code) (an unknown code reads as corrupt).
    pub fn from_code(code: &str) -> Self {
        match code {
            "missing_key" => Self::MissingKey,
            "too_old" => Self::TooOld,
            "mismatch" => Self::Mismatch,
            other => Self::Corrupt(other.to_owned()),
        }
    }
}
