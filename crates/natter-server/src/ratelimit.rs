//! Abuse controls: token buckets per key (device, user, account, source address), one
//! [`Limiter`] per kind of action, all configured in [`Limits`].
//!
//! A limited request is refused with the time until it would pass (429 with `Retry-After`
//! over HTTP, an `error` frame with `retry_after_ms` over WebSocket); nobody is disconnected for
//! going too fast. Keys that keep hitting a limit are logged (at the 10th, 100th, 1000th, ...
//! refusal) and counted in `natter_abuse_total`.
//!
//! The buckets live in this process. In a cluster each node enforces them on its own; sharing
//! them through Redis is part of the cluster work.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::ServiceError;

/// A rate: `per_sec` on average, bursts of up to `burst`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_sec: f64,
    /// Most tokens saved up.
    pub burst: f64,
}

impl Rate {
    /// `per_sec` a second with bursts of `burst`.
    pub const fn new(per_sec: f64, burst: f64) -> Self {
        Self { per_sec, burst }
    }

    /// `count` per minute with bursts of `burst`.
    pub const fn per_minute(count: f64, burst: f64) -> Self {
        Self {
            per_sec: count / 60.0,
            burst,
        }
    }
}

/// The kinds of limited actions, each with its own rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Messages and to-device frames sent by one device.
    DeviceMessages,
    /// Messages and to-device frames sent by all of a user's devices together.
    UserMessages,
    /// Bytes of ciphertext sent by all of a user's devices together.
    UserBytes,
    /// Connection requests sent by one user (spam).
    ConnectionRequests,
    /// Login attempts for one account (password guessing).
    AccountLogins,
    /// Login attempts from one source address (guessing across accounts, argon2 CPU).
    AddressLogins,
    /// Registrations from one source address.
    AddressRegistrations,
    /// New WebSocket connections from one source address.
    AddressConnects,
}

impl Kind {
    /// Every kind, in configuration order.
    pub const ALL: [Kind; 8] = [
        Kind::DeviceMessages,
        Kind::UserMessages,
        Kind::UserBytes,
        Kind::ConnectionRequests,
        Kind::AccountLogins,
        Kind::AddressLogins,
        Kind::AddressRegistrations,
        Kind::AddressConnects,
    ];

    /// The name used in configuration, metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::DeviceMessages => "device_messages",
            Kind::UserMessages => "user_messages",
            Kind::UserBytes => "user_bytes",
            Kind::ConnectionRequests => "connection_requests",
            Kind::AccountLogins => "account_logins",
            Kind::AddressLogins => "address_logins",
            Kind::AddressRegistrations => "address_registrations",
            Kind::AddressConnects => "address_connects",
        }
    }

    /// The default rate (see docs/operations.md for how these compare with Signal and Synapse).
    pub fn default_rate(self) -> Rate {
        match self {
            Kind::DeviceMessages => Rate::new(10.0, 30.0),
            Kind::UserMessages => Rate::new(20.0, 60.0),
            Kind::UserBytes => Rate::new(128.0 * 1024.0, 512.0 * 1024.0),
            Kind::ConnectionRequests => Rate::per_minute(5.0, 20.0),
            Kind::AccountLogins => Rate::per_minute(5.0, 10.0),
            Kind::AddressLogins => Rate::per_minute(30.0, 60.0),
            Kind::AddressRegistrations => Rate::per_minute(5.0, 10.0),
            Kind::AddressConnects => Rate::new(10.0, 100.0),
        }
    }
}

/// The configured rate of every kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    rates: HashMap<Kind, Rate>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            rates: Kind::ALL.iter().map(|k| (*k, k.default_rate())).collect(),
        }
    }
}

impl Limits {
    /// The rate of `kind`.
    pub fn rate(&self, kind: Kind) -> Rate {
        self.rates
            .get(&kind)
            .copied()
            .unwrap_or_else(|| kind.default_rate())
    }

    /// Sets the rate of `kind`.
    pub fn set(&mut self, kind: Kind, rate: Rate) {
        self.rates.insert(kind, rate);
    }

    /// Every kind at `rate` (tests use a huge one to turn limits off).
    pub fn all(rate: Rate) -> Self {
        Self {
            rates: Kind::ALL.iter().map(|k| (*k, rate)).collect(),
        }
    }
}

/// One `--limit` setting: `NAME=PER_SECOND:BURST`, such as `device_messages=10:30`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LimitSetting(pub Kind, pub Rate);

impl FromStr for LimitSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let names = || Kind::ALL.map(Kind::name).join(", ");
        let (name, rate) = text
            .split_once('=')
            .ok_or_else(|| format!("expected NAME=PER_SECOND:BURST, got {text:?}"))?;
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| format!("unknown limit {name:?}; limits are {}", names()))?;
        let (per_sec, burst) = rate
            .split_once(':')
            .ok_or_else(|| format!("expected PER_SECOND:BURST, got {rate:?}"))?;
        let number = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite() && *v > 0.0);
        match (number(per_sec), number(burst)) {
            (Some(per_sec), Some(burst)) if burst >= 1.0 => Ok(Self(kind, Rate { per_sec, burst })),
            _ => Err(format!(
                "{rate:?}: the rate must be positive and the burst at least 1"
            )),
        }
    }
}

/// One limiter per kind of action.
pub struct RateLimits {
    limiters: HashMap<Kind, Limiter>,
}

impl RateLimits {
    /// Limiters at the configured rates.
    pub fn new(limits: &Limits) -> Self {
        Self {
            limiters: Kind::ALL
                .iter()
                .map(|k| (*k, Limiter::new(*k, limits.rate(*k))))
                .collect(),
        }
    }

    /// Takes `cost` tokens of `kind` for `key`.
    ///
    /// # Errors
    /// `RateLimited`, with how long to wait.
    pub fn check(&self, kind: Kind, key: &str, cost: f64) -> Result<(), ServiceError> {
        self.limiters[&kind]
            .check(key, cost)
            .map_err(|retry_after| ServiceError::RateLimited {
                kind: kind.name(),
                retry_after,
            })
    }
}

struct Entry {
    bucket: TokenBucket,
    refused: u64,
}

/// Token buckets for one kind of action, by key.
pub struct Limiter {
    kind: Kind,
    rate: Rate,
    buckets: Mutex<HashMap<String, Entry>>,
}

/// Buckets beyond this many trigger a sweep of the full (idle) ones.
const SWEEP_AT: usize = 100_000;

impl Limiter {
    /// A limiter for `kind` at `rate`.
    pub fn new(kind: Kind, rate: Rate) -> Self {
        Self {
            kind,
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `cost` tokens for `key`, or says how long until they would be there.
    pub fn check(&self, key: &str, cost: f64) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("limiter lock poisoned");
        if buckets.len() >= SWEEP_AT {
            buckets.retain(|_, entry| !entry.bucket.is_full(now));
        }
        let entry = buckets.entry(key.to_owned()).or_insert_with(|| Entry {
            bucket: TokenBucket::new(self.rate.per_sec, self.rate.burst, now),
            refused: 0,
        });
        match entry.bucket.take_n(now, cost) {
            Ok(()) => Ok(()),
            Err(wait) => {
                entry.refused += 1;
                let refused = entry.refused;
                drop(buckets);
                metrics::counter!("natter_rate_limited_total", "kind" => self.kind.name())
                    .increment(1);
                if refused >= 10 && is_power_of_ten(refused) {
                    metrics::counter!("natter_abuse_total", "kind" => self.kind.name())
                        .increment(1);
                    // Keys are ids and addresses, never usernames or tokens.
                    tracing::warn!(
                        limit = self.kind.name(),
                        key,
                        refused,
                        "repeatedly rate limited"
                    );
                }
                Err(wait)
            }
        }
    }
}

/// Whether `n` is 1, 10, 100, ...: when to log a key that keeps being refused.
fn is_power_of_ten(mut n: u64) -> bool {
    while n % 10 == 0 && n > 1 {
        n /= 10;
    }
    n == 1
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.

/// A token bucket for one device's sends.
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        let burst = burst.max(1.0);
        Self {
            rate: rate.max(f64::MIN_POSITIVE),
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Takes a token, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.take_n(now, 1.0)
    }

    /// Takes `cost` tokens (at most a full bucket's worth is ever asked), or says how long
    /// until they are available.
    pub fn take_n(&mut self, now: Instant, cost: f64) -> Result<(), Duration> {
        self.refill(now);
        let cost = cost.min(self.burst);
        if self.tokens >= cost {
            self.tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((cost - self.tokens) / self.rate))
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
    }

    fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills_at_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2.0, 3.0, start);
        for _ in 0..3 {
            bucket.take(start).unwrap();
        }
        let wait = bucket.take(start).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        bucket.take(start + Duration::from_millis(500)).unwrap();
        assert!(bucket.take(start + Duration::from_millis(500)).is_err());
        // Idle time refills up to the burst, not beyond.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            bucket.take(later).unwrap();
        }
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn limit_settings_parse() {
        assert_eq!(
            "device_messages=2:5".parse(),
            Ok(LimitSetting(Kind::DeviceMessages, Rate::new(2.0, 5.0)))
        );
        assert!("device_messages=2".parse::<LimitSetting>().is_err());
        assert!("nonsense=1:1".parse::<LimitSetting>().is_err());
        assert!("user_bytes=0:10".parse::<LimitSetting>().is_err());
        assert!("user_bytes=1:0.5".parse::<LimitSetting>().is_err());
    }

    #[test]
    fn limiters_keep_keys_apart_and_count_refusals() {
        let limiter = Limiter::new(Kind::AccountLogins, Rate::new(0.001, 2.0));
        assert!(limiter.check("alice", 1.0).is_ok());
        assert!(limiter.check("alice", 1.0).is_ok());
        assert!(limiter.check("alice", 1.0).is_err());
        assert!(limiter.check("bob", 1.0).is_ok());
        assert!([1u64, 10, 100, 1000].into_iter().all(is_power_of_ten));
        assert!(![11u64, 20, 110].into_iter().any(is_power_of_ten));
    }
}
