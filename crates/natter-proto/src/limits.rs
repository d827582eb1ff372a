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
/// Largest request body the REST API accepts, in bytes.
pub const REQUEST_BODY_MAX: usize = 64 * 1024;

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
