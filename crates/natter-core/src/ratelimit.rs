//! Abuse controls: token buckets per key (device, user, account, source address), per
//! [`Kind`] of action, at the rates configured in [`Limits`].
//!
//! A limited request is refused with the time until it would pass (429 with `Retry-After`
//! over HTTP, an `error` frame with `retry_after_ms` over WebSocket); nobody is disconnected for
//! going too fast. Keys that keep hitting a limit are logged (at the 10th, 100th, 1000th, ...
//! refusal) and counted in `natter_abuse_total`.
//!
//! A node alone keeps its buckets in memory. In a cluster they are [`SharedBuckets`] (in
//! Redis, natter-cluster's `RedisBuckets`), so a sender gains nothing by spreading requests
//! over several nodes. When they cannot answer, each node falls back to its own buckets
//! (limits hold per node meanwhile).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::service_error::ServiceError;

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
    /// Typing notices sent by one device (each goes to every member's devices).
    DeviceTyping,
    /// Cursor moves and syncs asked for by one device (each is a write or a full read).
    DeviceEvents,
    /// One-time keys of one target device claimed by one user's devices (draining its keys).
    KeyClaims,
}

impl Kind {
    /// Every kind, in configuration order.
    pub const ALL: [Kind; 11] = [
        Kind::DeviceMessages,
        Kind::UserMessages,
        Kind::UserBytes,
        Kind::ConnectionRequests,
        Kind::AccountLogins,
        Kind::AddressLogins,
        Kind::AddressRegistrations,
        Kind::AddressConnects,
        Kind::DeviceTyping,
        Kind::DeviceEvents,
        Kind::KeyClaims,
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
            Kind::DeviceTyping => "device_typing",
            Kind::DeviceEvents => "device_events",
            Kind::KeyClaims => "key_claims",
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
            Kind::DeviceTyping => Rate::new(2.0, 10.0),
            Kind::DeviceEvents => Rate::new(100.0, 2000.0),
            Kind::KeyClaims => Rate::per_minute(1.0, 10.0),
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

/// One charge: `cost` tokens of `kind` for `key`.
pub type Charge<'a> = (Kind, &'a str, f64);

/// The limiters of every kind, in this process or shared through Redis.
pub struct RateLimits {
    limits: Limits,
    local: Mutex<Buckets>,
    shared: Option<Box<dyn SharedBuckets>>,
}

/// Buckets shared by every node of a cluster (in Redis: natter-cluster's `RedisBuckets`).
#[async_trait]
pub trait SharedBuckets: Send + Sync {
    /// The verdict on `charges` at the rates of `limits`, or `None` when the shared buckets
    /// cannot answer now (this node's own buckets then apply).
    async fn charge(&self, limits: &Limits, charges: &[Charge<'_>]) -> Option<Verdict>;
}

/// This process's buckets, by kind and key (a key is looked up without copying it).
struct Buckets {
    by_kind: HashMap<Kind, HashMap<String, Entry>>,
    /// How many buckets make the next sweep of the full (idle) ones due.
    sweep_at: usize,
}

impl Default for Buckets {
    fn default() -> Self {
        Self {
            by_kind: HashMap::new(),
            sweep_at: SWEEP_AT,
        }
    }
}

impl Buckets {
    /// How many buckets there are.
    fn len(&self) -> usize {
        self.by_kind.values().map(HashMap::len).sum()
    }

    /// The bucket of `key`, made full at `rate` if it had none.
    fn get_or_make(&mut self, (kind, key): (Kind, &str), rate: Rate, now: Instant) -> &mut Entry {
        let keys = self.by_kind.entry(kind).or_default();
        if !keys.contains_key(key) {
            let bucket = TokenBucket::new(rate.per_sec, rate.burst, now);
            keys.insert(key.to_owned(), Entry { bucket, refused: 0 });
        }
        keys.get_mut(key).expect("made above")
    }

    /// The bucket of `key`, which [`Buckets::get_or_make`] made.
    fn made(&mut self, (kind, key): (Kind, &str)) -> &mut Entry {
        self.by_kind
            .get_mut(&kind)
            .and_then(|keys| keys.get_mut(key))
            .expect("made above")
    }

    /// Drops the full buckets if enough were added since the last sweep; whether it swept.
    /// Each sweep is a pass over every bucket, so the next waits until as many again are
    /// kept: with more busy keys than [`SWEEP_AT`], charges would otherwise each sweep them all.
    fn sweep_if_due(&mut self, now: Instant) -> bool {
        if self.len() < self.sweep_at {
            return false;
        }
        for keys in self.by_kind.values_mut() {
            keys.retain(|_, entry| !entry.bucket.is_full(now));
        }
        self.sweep_at = (self.len() * 2).max(SWEEP_AT);
        true
    }
}

/// What a charge came to.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Every charge fit.
    Allowed,
    /// The charge at `index` did not fit; retry after `wait`. `refused` counts this key's
    /// refusals so far.
    Refused {
        /// Which charge did not fit.
        index: usize,
        /// How long until it would.
        wait: Duration,
        /// This key's refusals so far.
        refused: u64,
    },
}

impl RateLimits {
    /// Limiters kept in this process, at the configured rates.
    pub fn new(limits: &Limits) -> Self {
        Self {
            limits: limits.clone(),
            local: Mutex::default(),
            shared: None,
        }
    }

    /// Limiters shared through `buckets` by every node of a cluster (whenever they do not
    /// answer, this node's own buckets apply).
    pub fn shared(limits: &Limits, buckets: Box<dyn SharedBuckets>) -> Self {
        Self {
            shared: Some(buckets),
            ..Self::new(limits)
        }
    }

    /// Takes `cost` tokens of `kind` for `key`.
    ///
    /// # Errors
    /// `RateLimited`, with how long to wait.
    pub async fn check(&self, kind: Kind, key: &str, cost: f64) -> Result<(), ServiceError> {
        self.charge(&[(kind, key, cost)]).await
    }

    /// Takes every charge, or none of them when one does not fit.
    ///
    /// # Errors
    /// `RateLimited` for the first kind that is short, with how long to wait.
    pub async fn charge(&self, charges: &[Charge<'_>]) -> Result<(), ServiceError> {
        let verdict = match &self.shared {
            Some(shared) => match shared.charge(&self.limits, charges).await {
                Some(verdict) => verdict,
                None => self.charge_locally(charges),
            },
            None => self.charge_locally(charges),
        };
        match verdict {
            Verdict::Allowed => Ok(()),
            Verdict::Refused {
                index,
                wait,
                refused,
            } => {
                let (kind, key, _) = charges[index];
                note_refusal(kind, key, refused);
                Err(ServiceError::RateLimited {
                    kind: kind.name(),
                    retry_after: wait,
                })
            }
        }
    }

    /// Charges this node's own buckets: every charge or none, refusing with the longest wait
    /// among those that do not fit.
    fn charge_locally(&self, charges: &[Charge<'_>]) -> Verdict {
        let now = Instant::now();
        let mut local = self.local.lock().expect("limiter lock poisoned");
        local.sweep_if_due(now);
        let mut short: Option<(usize, Duration)> = None;
        for (index, &(kind, key, cost)) in charges.iter().enumerate() {
            let entry = local.get_or_make((kind, key), self.limits.rate(kind), now);
            if let Err(wait) = entry.bucket.can_take(now, cost)
                && short.is_none_or(|(_, longest)| wait > longest)
            {
                short = Some((index, wait));
            }
        }
        if let Some((index, wait)) = short {
            let (kind, key, _) = charges[index];
            let entry = local.made((kind, key));
            entry.refused += 1;
            return Verdict::Refused {
                index,
                wait,
                refused: entry.refused,
            };
        }
        for &(kind, key, cost) in charges {
            let entry = local.made((kind, key));
            entry.bucket.take_n(now, cost).expect("checked above");
        }
        Verdict::Allowed
    }
}

/// Counts a refusal; keys that keep being refused are logged at the 10th, 100th, ... one.
fn note_refusal(kind: Kind, key: &str, refused: u64) {
    metrics::counter!("natter_rate_limited_total", "kind" => kind.name()).increment(1);
    if refused >= 10 && is_power_of_ten(refused) {
        metrics::counter!("natter_abuse_total", "kind" => kind.name()).increment(1);
        // Keys are ids, addresses and hashes, never usernames or tokens.
        tracing::warn!(limit = kind.name(), key, refused, "repeatedly rate limited");
    }
}

/// A key's bucket, with its refusals so far (for logging repeat offenders).
struct Entry {
    bucket: TokenBucket,
    refused: u64,
}

/// Buckets beyond this many trigger a sweep of the full (idle) ones.
const SWEEP_AT: usize = 100_000;

/// Whether `n` is 1, 10, 100, ...: when to log a key that keeps being refused.
fn is_power_of_ten(mut n: u64) -> bool {
    while n.is_multiple_of(10) && n > 1 {
        n /= 10;
    }
    n == 1
}

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
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
        self.can_take(now, cost)?;
        self.tokens -= cost.min(self.burst);
        Ok(())
    }

    /// Whether `cost` tokens are there now, or how long until they would be.
    fn can_take(&mut self, now: Instant, cost: f64) -> Result<(), Duration> {
        self.refill(now);
        let cost = cost.min(self.burst);
        if self.tokens >= cost {
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
    fn a_sweep_waits_until_as_many_buckets_again_are_kept() {
        let now = Instant::now();
        let mut buckets = Buckets::default();
        // Buckets `keys` that were just used, so none is full.
        let busy = |buckets: &mut Buckets, keys: std::ops::Range<usize>| {
            for key in keys {
                let mut bucket = TokenBucket::new(1.0, 1.0, now);
                bucket.take(now).unwrap();
                let entry = Entry { bucket, refused: 0 };
                let keys = buckets.by_kind.entry(Kind::DeviceMessages).or_default();
                keys.insert(key.to_string(), entry);
            }
        };
        busy(&mut buckets, 0..SWEEP_AT - 1);
        assert!(!buckets.sweep_if_due(now));
        busy(&mut buckets, SWEEP_AT - 1..SWEEP_AT);
        assert!(buckets.sweep_if_due(now), "due at SWEEP_AT");
        assert_eq!(buckets.len(), SWEEP_AT, "busy buckets are kept");
        assert!(!buckets.sweep_if_due(now), "and not swept again at once");
        busy(&mut buckets, SWEEP_AT..2 * SWEEP_AT - 1);
        assert!(!buckets.sweep_if_due(now));
        busy(&mut buckets, 2 * SWEEP_AT - 1..2 * SWEEP_AT);
        assert!(buckets.sweep_if_due(now), "due once as many again are kept");
        // Idle long enough, every bucket is full again and goes at the next sweep.
        buckets.sweep_at = 0;
        assert!(buckets.sweep_if_due(now + Duration::from_secs(10)));
        assert_eq!(buckets.len(), 0);
        assert_eq!(buckets.sweep_at, SWEEP_AT);
    }

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
        let mut limits = Limits::default();
        limits.set(Kind::AccountLogins, Rate::new(0.001, 2.0));
        let limiter = RateLimits::new(&limits);
        let login = |key| limiter.charge_locally(&[(Kind::AccountLogins, key, 1.0)]);
        assert_eq!(login("alice"), Verdict::Allowed);
        assert_eq!(login("alice"), Verdict::Allowed);
        assert!(matches!(
            login("alice"),
            Verdict::Refused { refused: 1, .. }
        ));
        assert!(matches!(
            login("alice"),
            Verdict::Refused { refused: 2, .. }
        ));
        assert_eq!(login("bob"), Verdict::Allowed);
        assert!([1u64, 10, 100, 1000].into_iter().all(is_power_of_ten));
        assert!(![11u64, 20, 110].into_iter().any(is_power_of_ten));
    }

    #[test]
    fn one_key_has_a_bucket_per_kind() {
        let mut limits = Limits::default();
        limits.set(Kind::UserMessages, Rate::new(0.001, 2.0));
        limits.set(Kind::UserBytes, Rate::new(0.001, 1000.0));
        let limiter = RateLimits::new(&limits);
        let message = |bytes| {
            limiter.charge_locally(&[
                (Kind::UserMessages, "alice", 1.0),
                (Kind::UserBytes, "alice", bytes),
            ])
        };
        assert_eq!(message(600.0), Verdict::Allowed);
        // The bytes run out first, then the messages: each of alice's buckets on its own.
        assert!(matches!(message(600.0), Verdict::Refused { index: 1, .. }));
        assert_eq!(message(100.0), Verdict::Allowed);
        assert!(matches!(message(1.0), Verdict::Refused { index: 0, .. }));
    }

    #[test]
    fn a_charge_takes_all_its_buckets_or_none() {
        let mut limits = Limits::default();
        limits.set(Kind::DeviceMessages, Rate::new(0.001, 5.0));
        limits.set(Kind::UserMessages, Rate::new(0.001, 2.0));
        let limiter = RateLimits::new(&limits);
        let send = |device| {
            limiter.charge_locally(&[
                (Kind::DeviceMessages, device, 1.0),
                (Kind::UserMessages, "alice", 1.0),
            ])
        };
        assert_eq!(send("phone"), Verdict::Allowed);
        assert_eq!(send("laptop"), Verdict::Allowed);
        // The user's allowance is spent: refused, and the device's bucket is not charged.
        assert!(matches!(send("phone"), Verdict::Refused { index: 1, .. }));
        let only_device = limiter.charge_locally(&[(Kind::DeviceMessages, "phone", 4.0)]);
        assert_eq!(only_device, Verdict::Allowed);
    }
}
