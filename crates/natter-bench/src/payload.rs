//! Message bodies: random bytes of a realistic ciphertext size, base64 like real ciphertext, with
//! a header in the first bytes (send time and run id) so any receiver can measure latency.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;

/// Bytes of header at the start of every body: send time (µs since the epoch) and run id.
const HEADER: usize = 16;
/// Base64 characters that cover the header (24 characters encode 18 bytes).
const HEADER_CHARS: usize = 24;

/// Microseconds since the Unix epoch (the same clock in every process on this machine).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A body of `len` random bytes (at least the header), stamped with `run` and the current time.
pub fn make(run: u64, len: usize) -> String {
    let mut bytes = vec![0u8; len.max(HEADER_CHARS)];
    rand::rng().fill_bytes(&mut bytes[HEADER..]);
    bytes[..8].copy_from_slice(&now_micros().to_le_bytes());
    bytes[8..HEADER].copy_from_slice(&run.to_le_bytes());
    STANDARD.encode(bytes)
}

/// The (send time in µs, run id) stamped in a body, if it has a header. Any long enough
/// base64 body decodes to some stamp: only a matching run id says it is one of ours.
pub fn stamp(body: &str) -> Option<(u64, u64)> {
    let head = STANDARD.decode(body.get(..HEADER_CHARS)?).ok()?;
    let sent = u64::from_le_bytes(head[..8].try_into().ok()?);
    let run = u64::from_le_bytes(head[8..HEADER].try_into().ok()?);
    Some((sent, run))
}

#[cfg(test)]
mod tests {
    #[test]
    fn stamp_reads_back_what_make_wrote() {
        let body = super::make(42, 256);
        let (sent, run) = super::stamp(&body).unwrap();
        assert_eq!(run, 42);
        assert!(sent <= super::now_micros());
        assert_eq!(body.len(), 256usize.div_ceil(3) * 4);
        assert_eq!(super::stamp("short"), None);
    }
}
