//! The WebSocket close codes natterd sends, and what each asks of the client
//! (docs/protocol.md, "Close codes"). On the wire a code is its number.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why the server closed a WebSocket connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CloseCode {
    /// 1007: a text frame that is not valid UTF-8 (RFC 6455, 8.1). Fix the client.
    InvalidData,
    /// 1008: authentication failed, or no longer holds (the device was logged out or removed).
    /// Log in again.
    Policy,
    /// 1009: a frame over the hard size limit. Fix the client.
    TooBig,
    /// 1012: the node is shutting down. Reconnect with backoff and resume from the cursors.
    Restart,
    /// 4001: nothing received for the idle timeout. Ping more often; reconnect.
    Idle,
    /// 4003: an operator suspended the account. Stop: logging in is refused too.
    Suspended,
    /// 4008: the connection's queue filled (too slow). Reconnect; the sync sends what was
    /// missed.
    TooSlow,
}

impl CloseCode {
    /// Every close code, in the order of their numbers.
    pub const ALL: [Self; 7] = [
        Self::InvalidData,
        Self::Policy,
        Self::TooBig,
        Self::Restart,
        Self::Idle,
        Self::Suspended,
        Self::TooSlow,
    ];

    /// The number sent in the close frame.
    pub const fn code(self) -> u16 {
        match self {
            Self::InvalidData => 1007,
            Self::Policy => 1008,
            Self::TooBig => 1009,
            Self::Restart => 1012,
            Self::Idle => 4001,
            Self::Suspended => 4003,
            Self::TooSlow => 4008,
        }
    }

    /// The close code sent as `code`, if natterd sends it.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

impl Serialize for CloseCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u16(self.code())
    }
}

impl<'de> Deserialize<'de> for CloseCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = u16::deserialize(deserializer)?;
        Self::from_code(code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown close code {code}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_from_its_number() {
        for code in CloseCode::ALL {
            assert_eq!(CloseCode::from_code(code.code()), Some(code));
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, code.code().to_string());
            assert_eq!(serde_json::from_str::<CloseCode>(&json).unwrap(), code);
        }
        assert_eq!(CloseCode::from_code(1000), None);
        assert!(serde_json::from_str::<CloseCode>("1000").is_err());
    }
}
