//! Sizes and counts the server enforces. Clients check them first to give a clear error early.

/// Shortest username, in characters.
pub const USERNAME_MIN: usize = 3;
/// Longest username, in characters.
pub const USERNAME_MAX: usize = 32;
/// Shortest password, in characters.
pub const PASSWORD_MIN: usize = 8;
/// Longest password, in bytes (bounds the cost of hashing it).
pub const PASSWORD_MAX_BYTES: usize = 1024;
/// Longest display name, in characters.
pub const DISPLAY_NAME_MAX: usize = 64;
/// Longest device name, in characters.
pub const DEVICE_NAME_MAX: usize = 64;
/// Longest avatar URL, in bytes.
pub const AVATAR_URL_MAX: usize = 512;
/// Longest one-time key id, in bytes.
pub const KEY_ID_MAX: usize = 64;
/// Most one-time keys in one upload.
pub const ONE_TIME_KEYS_PER_UPLOAD: usize = 100;
/// Most unclaimed one-time keys the server keeps for one device.
pub const ONE_TIME_KEYS_STORED: usize = 200;
/// Decoded size of a Curve25519 or Ed25519 public key, in bytes.
pub const PUBLIC_KEY_BYTES: usize = 32;
/// Decoded size of an Ed25519 signature, in bytes.
pub const SIGNATURE_BYTES: usize = 64;
/// Longest backup item name, in bytes.
pub const BACKUP_NAME_MAX: usize = 128;
/// Largest backup item, in bytes.
pub const BACKUP_ITEM_MAX: usize = 16 * 1024;
/// Most backup items one user keeps (a room key each, and a few more).
pub const BACKUP_ITEMS_MAX: i64 = 100_000;
/// Largest request body the REST API accepts, in bytes.
pub const REQUEST_BODY_MAX: usize = 64 * 1024;

/// Longest message text, in characters (the seed's 1,000 UTF-8 characters, so at most 4 KB).
pub const MESSAGE_CHARS_MAX: usize = 1000;
/// Largest message ciphertext, in bytes. It fits 4 KB of text plus the client's envelope
/// (sender metadata, at most 1 KB) after Megolm encryption (AES-CBC padding, MAC, signature)
/// and base64 (4/3): (4096 + 1024 + 16 + 8 + 64 + 16) * 4 / 3 < 7,000; rounded up.
pub const CIPHERTEXT_MAX: usize = 8 * 1024;
/// Largest to-device payload, in bytes (an Olm-encrypted room key is about 1 KB).
pub const TO_DEVICE_PAYLOAD_MAX: usize = 8 * 1024;
/// Most to-device payloads in one frame.
pub const TO_DEVICE_BATCH_MAX: usize = 100;
/// Unread counts stop here (a client shows "999+"), so a reader far behind costs a bounded
/// count (messages skipped on the way, the reader's own and blocked senders', are still read).
pub const UNREAD_COUNTED_MAX: i64 = 999;
/// Most to-device payloads waiting for one device; more are not stored (`inbox_full`) until it
/// acknowledges some.
pub const INBOX_PENDING_MAX: i64 = 10_000;
/// Most of those from one sending device, so that no sender can fill an inbox for the others.
pub const INBOX_FROM_ONE_DEVICE_MAX: i64 = 1_000;
/// Longest client message id, in bytes.
pub const CLIENT_MSG_ID_MAX: usize = 64;
/// Largest WebSocket message the server accepts, in bytes.
pub const WS_MESSAGE_MAX: usize = 64 * 1024;
/// Most members in a room.
pub const ROOM_MEMBERS_MAX: usize = 1000;
/// Longest room name, in characters.
pub const ROOM_NAME_MAX: usize = 100;
/// Most messages in one page of history or sync.
pub const PAGE_MAX: usize = 500;

/// Whether `name` is a valid username: 3 to 32 ASCII letters, digits, `_`, `.` or `-`,
/// starting with a letter or digit. Usernames compare case-insensitively.
pub fn is_valid_username(name: &str) -> bool {
    (USERNAME_MIN..=USERNAME_MAX).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::is_valid_username;

    #[test]
    fn usernames() {
        for ok in ["abc", "Alice", "bob_2", "a.b-c", &"x".repeat(32)] {
            assert!(is_valid_username(ok), "{ok}");
        }
        for bad in [
            "ab",
            "_alice",
            "al ice",
            "älice",
            "a/b",
            "",
            &"x".repeat(33),
        ] {
            assert!(!is_valid_username(bad), "{bad}");
        }
    }
}
