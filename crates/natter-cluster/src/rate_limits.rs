//! Rate limits shared by the nodes of a cluster: [`RedisBuckets`] keeps every bucket in Redis,
//! where one Lua script refills and takes every bucket a request is charged to, atomically
//! and on Redis's clock.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{RETRY, Redis};
use natter_core::ratelimit::{Charge, Limits, SharedBuckets, Verdict};

/// Refills and charges every bucket in KEYS, or none. ARGV holds, per key: tokens per
/// millisecond, burst, cost. Returns {0} when all fit, else {index (from 1), milliseconds to
/// wait, refusals of that key so far}. A bucket is a hash (tokens, at, refused) that expires
/// once it would be full again.
const CHARGE_SCRIPT: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local left = {}
local worst, worst_wait = 0, 0
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1])
  local cost = math.min(tonumber(ARGV[3 * i]), burst)
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'at')
  local have = burst
  if state[1] then
    have = math.min(burst, tonumber(state[1]) + math.max(0, now - tonumber(state[2])) * rate)
  end
  left[i] = have - cost
  if have < cost and (cost - have) / rate > worst_wait then
    worst, worst_wait = i, (cost - have) / rate
  end
end
if worst > 0 then
  return {worst, math.ceil(worst_wait), redis.call('HINCRBY', KEYS[worst], 'refused', 1)}
end
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1])
  redis.call('HSET', KEYS[i], 'tokens', tostring(left[i]), 'at', now)
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst / rate) + 1000)
end
return {0}
";

/// The buckets in Redis.
pub struct RedisBuckets {
    redis: redis::aio::ConnectionManager,
    /// `<cluster>:rl`: buckets are `<prefix>:<kind>:<key>`.
    prefix: String,
    script: redis::Script,
    gate: Gate,
}

impl RedisBuckets {
    /// The buckets of the cluster named `cluster`, in `redis`.
    pub fn new(redis: &Redis, cluster: &str) -> Self {
        Self {
            redis: redis.commands(),
            prefix: format!("{cluster}:rl"),
            script: redis::Script::new(CHARGE_SCRIPT),
            gate: Gate::default(),
        }
    }

    /// Counts a fallback to this node's buckets, and warns once when Redis stops answering.
    fn fall_back(&self, error: &dyn std::fmt::Display) -> Option<Verdict> {
        metrics::counter!("natter_rate_limit_fallbacks_total").increment(1);
        if self.gate.failed(Instant::now()) {
            tracing::warn!(%error, "Redis unreachable: rate limits are per node until it is back");
        }
        None
    }
}

#[async_trait]
impl SharedBuckets for RedisBuckets {
    /// The verdict from Redis, or `None` when Redis did not answer in time.
    async fn charge(&self, limits: &Limits, charges: &[Charge<'_>]) -> Option<Verdict> {
        if !self.gate.may_ask(Instant::now()) {
            return None;
        }
        let mut invocation = self.script.prepare_invoke();
        for (kind, key, cost) in charges {
            let rate = limits.rate(*kind);
            invocation
                .key(format!("{}:{}:{key}", self.prefix, kind.name()))
                .arg(rate.per_sec / 1000.0)
                .arg(rate.burst.max(1.0))
                .arg(*cost);
        }
        // The connection's own timeouts ([`super::COMMAND_TIMEOUT`]) bound the wait.
        let mut redis = self.redis.clone();
        match invocation.invoke_async::<Vec<i64>>(&mut redis).await {
            Ok(reply) => match verdict_from(&reply, charges.len()) {
                Some(verdict) => {
                    if self.gate.answered() {
                        tracing::info!("rate limits shared through Redis again");
                    }
                    Some(verdict)
                }
                None => self.fall_back(&format!("unexpected script reply {reply:?}")),
            },
            Err(error) => self.fall_back(&error),
        }
    }
}

/// When to ask Redis: always while it answers; after a failure not for [`RETRY`]
/// (a dead Redis must not add a timeout to every request), then one request probes it while
/// the others keep to the node's buckets until the probe has an answer.
#[derive(Default)]
struct Gate {
    /// `None` while Redis answers.
    down_until: Mutex<Option<Instant>>,
}

impl Gate {
    /// Whether the request arriving `now` asks Redis.
    fn may_ask(&self, now: Instant) -> bool {
        let mut down_until = self.down_until.lock().expect("limiter lock poisoned");
        match *down_until {
            None => true,
            Some(until) if now >= until => {
                *down_until = Some(now + RETRY);
                true
            }
            Some(_) => false,
        }
    }

    /// Redis answered; true if it had been down.
    fn answered(&self) -> bool {
        self.down_until
            .lock()
            .expect("limiter lock poisoned")
            .take()
            .is_some()
    }

    /// Redis failed `now`; true if it had been answering.
    fn failed(&self, now: Instant) -> bool {
        self.down_until
            .lock()
            .expect("limiter lock poisoned")
            .replace(now + RETRY)
            .is_none()
    }
}

/// Reads the script's reply (`None` if it makes no sense).
fn verdict_from(reply: &[i64], charges: usize) -> Option<Verdict> {
    match reply {
        [0] => Some(Verdict::Allowed),
        [index, wait, refused] if (1..=charges as i64).contains(index) => Some(Verdict::Refused {
            index: (*index - 1) as usize,
            wait: Duration::from_millis(u64::try_from(*wait).unwrap_or(0).max(1)),
            refused: u64::try_from(*refused).unwrap_or(1),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_failure_one_request_probes_redis() {
        let gate = Gate::default();
        let start = Instant::now();
        assert!(gate.may_ask(start));
        assert!(gate.failed(start), "the first failure is news");
        assert!(!gate.may_ask(start + RETRY / 2));
        let later = start + RETRY;
        assert!(gate.may_ask(later), "one probe once the period is over");
        assert!(!gate.may_ask(later), "the others wait for its answer");
        assert!(!gate.failed(later), "a failed probe is not news");
        assert!(!gate.may_ask(later + RETRY / 2));
        let again = later + RETRY;
        assert!(gate.may_ask(again));
        assert!(gate.answered(), "Redis is back");
        assert!(
            gate.may_ask(again) && gate.may_ask(again),
            "everyone asks it again"
        );
    }

    #[test]
    fn script_replies_become_verdicts() {
        assert_eq!(verdict_from(&[0], 3), Some(Verdict::Allowed));
        assert_eq!(
            verdict_from(&[2, 1500, 10], 3),
            Some(Verdict::Refused {
                index: 1,
                wait: Duration::from_millis(1500),
                refused: 10
            })
        );
        assert_eq!(verdict_from(&[9, 1, 1], 3), None);
        assert_eq!(verdict_from(&[], 3), None);
    }
}
